"""Seq2Exp as gReLU model classes.

gReLU builds models by name: ``LightningModel(model_params={"model_type": "Seq2ExpModel", ...})``
looks ``model_type`` up as an attribute of ``grelu.model.models``. :func:`register` puts
:class:`Seq2ExpModel`, :class:`Seq2ExpGenerator`, :class:`Seq2ExpPredictor` and the baselines
there. Importing ``seq2exp_plugin`` registers them as soon as ``grelu.model.models`` is imported
(a post-import hook in :mod:`seq2exp_plugin.adapters.registry`, so that ``import seq2exp_plugin``
stays fast - no torch, no gReLU - when gReLU is not used).

gReLU's convention is one input tensor ``(N, channels, L)`` and one output ``(N, tasks, L_out)``.
These classes keep the model itself in ``.net`` (the library's classes, which take named inputs
and return the mask too) and read stacked channels in ``forward``:

- ``Seq2ExpModel``: ``(N, 4 + n_signals + n_features, L)`` -> expression ``(N, 1, 1)``; the
  feature channels are constant along L (a gene's features broadcast).
- ``Seq2ExpGenerator``: ``(N, 4 + n_signals, L)`` -> mask score ``(N, 1, L)``.
- ``Seq2ExpPredictor``: ``(N, 4 + n_signals + n_features + 1, L)``, the last channel the mask
  -> ``(N, 1, 1)``.
- ``HierarchicalCNN``, ``ExpectoRidge``: as ``Seq2ExpModel`` (the DNA channels are ignored).

For gReLU's ISM and attribution tools, which pass 4-channel DNA only, bind one locus's signals
with :func:`bind_signals`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..model import baselines
from ..model import generator as generator_module
from ..model import predictor as predictor_module
from ..model import seq2exp as seq2exp_module
from ..model.config import Seq2ExpConfig


class _TaskCount:
    """What gReLU reads from ``model.head``: the number of tasks."""

    n_tasks = 1


class _GreluModel(nn.Module):
    """Shared plumbing: the library model in ``.net``, gReLU's ``head.n_tasks``."""

    head = _TaskCount()

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.config = Seq2ExpConfig.from_dict(fields)

    def split(self, x: Tensor, with_mask: bool = False) -> tuple[Tensor, ...]:
        """Stacked channels -> ``seq, signals, features[, mask]``."""
        n_signals, n_features = self.config.n_signals, self.config.n_features
        expected = 4 + n_signals + n_features + int(with_mask)
        if x.ndim != 3 or x.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {expected}, L) = DNA 4 + "
                f"{n_signals} signals + {n_features} features" + (" + 1 mask" if with_mask else "")
                + f" channels, got {tuple(x.shape)}"
            )
        seq, signals, features = x[:, :4], x[:, 4 : 4 + n_signals], x[:, 4 + n_signals : expected - int(with_mask)]
        parts = (seq, signals, features.mean(-1))
        return parts + ((x[:, -1],) if with_mask else ())


class Seq2ExpModel(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.seq2exp.Seq2ExpModel`."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self.net = seq2exp_module.Seq2ExpModel(self.config)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(*self.split(x)).expression[:, None, None]


class Seq2ExpGenerator(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.generator.Seq2ExpGenerator`."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self.net = generator_module.Seq2ExpGenerator(self.config)

    def forward(self, x: Tensor) -> Tensor:
        expected = 4 + self.config.n_signals
        if x.ndim != 3 or x.shape[1] != expected:
            raise ValueError(f"Seq2ExpGenerator: expected input (N, {expected}, L), got {tuple(x.shape)}")
        return self.net(x[:, :4], x[:, 4:]).score[:, None, :]


class Seq2ExpPredictor(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.predictor.Seq2ExpPredictor`."""

    def __init__(self, use_signals: bool = True, **fields: Any) -> None:
        super().__init__(**fields)
        self.use_signals = use_signals
        self.net = predictor_module.Seq2ExpPredictor(self.config, use_signals=use_signals)

    def forward(self, x: Tensor) -> Tensor:
        seq, signals, features, mask = self.split(x, with_mask=True)
        return self.net(seq, signals, features, mask)[:, None, None]


class HierarchicalCNN(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.baselines.HierarchicalCNN`."""

    def __init__(self, window: int, cnn: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self.window = window
        self.net = baselines.HierarchicalCNN(self.config.n_signals, window,
                                             n_features=self.config.n_features, **(cnn or {}))

    def forward(self, x: Tensor) -> Tensor:
        _, signals, features = self.split(x)
        return self.net(signals, features)[:, None, None]


class ExpectoRidge(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.baselines.ExpectoRidge`."""

    def __init__(self, ridge: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self.net = baselines.ExpectoRidge(self.config.n_signals, self.config.n_features, **(ridge or {}))

    def forward(self, x: Tensor) -> Tensor:
        _, signals, features = self.split(x)
        return self.net(signals, features)[:, None, None]


MODEL_CLASSES = (Seq2ExpModel, Seq2ExpGenerator, Seq2ExpPredictor, HierarchicalCNN, ExpectoRidge)


class BoundSignals(nn.Module):
    """A 4-channel DNA model: one locus's signals, features (and mask) bound to a gReLU model.

    ``forward(seq (N, 4, L)) -> (N, 1, 1)``: the bound tracks are broadcast over the batch and
    stacked after the DNA, so gReLU's ISM and attribution tools run on Seq2Exp unchanged.
    """

    def __init__(self, model: _GreluModel, signals: Tensor, features: Tensor,
                 mask: Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        length = signals.shape[-1]
        tracks = [signals.reshape(-1, length), features.reshape(-1, 1).expand(-1, length)]
        if mask is not None:
            tracks.append(mask.reshape(1, length))
        self.register_buffer("tracks", torch.cat(tracks).float(), persistent=False)
        self.head = model.head

    def forward(self, seq: Tensor) -> Tensor:
        tracks = self.tracks.to(seq.dtype).expand(seq.shape[0], -1, -1)
        return self.model(torch.cat([seq, tracks], dim=1))


def register() -> None:
    """Make the classes buildable by name from ``grelu.model.models`` (idempotent)."""
    import grelu.model.models as grelu_models

    for cls in MODEL_CLASSES:
        setattr(grelu_models, cls.__name__, cls)
