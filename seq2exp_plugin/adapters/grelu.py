"""Seq2Exp as gReLU model classes.

gReLU builds models by name: ``LightningModel(model_params={"model_type": "Seq2ExpModel", ...})``
looks ``model_type`` up as an attribute of ``grelu.model.models``. :func:`register` puts
:class:`Seq2ExpModel`, :class:`Seq2ExpGenerator`, :class:`Seq2ExpPredictor` and the baselines
there; call it (or :func:`seq2exp_plugin.register_grelu_models`) before gReLU builds one by
name. :class:`seq2exp_plugin.train.module.Seq2ExpLightning` does so itself.

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
with :func:`bind_locus` (a gReLU ``LightningModel`` around :class:`BoundSignals`); DeepSHAP needs
:func:`deepshap_ops`.
"""

from __future__ import annotations

from typing import Any, Sequence

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


def _refuse_grelu_training(module: nn.Module, inputs: Any) -> None:
    """Forward pre-hook of the gReLU faces: a forward pass that records gradients in training
    mode is gReLU's own training loop (``seq2exp train`` calls the library model in ``.net``),
    whose loss is ``train_params["loss"]`` alone."""
    if module.training and torch.is_grad_enabled():
        raise RuntimeError(
            f"{type(module).__name__}: gReLU's training loop (train_on_dataset, tune_on_dataset) "
            "would train it with gReLU's loss alone ('mse': no KL term of eq. 3, no smooth-L1) "
            "and gReLU's optimizer; train or fine-tune with `seq2exp train` (a run configuration; "
            "variant retrain to reuse a trained generator). Gradients for attributions: put the "
            "model in eval mode (model.eval()).")


class _GreluModel(nn.Module):
    """Shared plumbing: the library model in ``.net``, gReLU's ``head.n_tasks``; gReLU's own
    training loop is refused (:func:`_refuse_grelu_training`)."""

    head = _TaskCount()

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        # model_params without a version were written before configurations had one
        self.config = Seq2ExpConfig.from_dict({"version": 1, **fields})
        self.register_forward_pre_hook(_refuse_grelu_training)

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
                                             n_features=self.config.n_features,
                                             scaling=self.config.scaling,
                                             n_outputs=self.config.n_outputs, **(cnn or {}))

    def forward(self, x: Tensor) -> Tensor:
        _, signals, features = self.split(x)
        return self.net(signals, features)[:, None, None]


class ExpectoRidge(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.baselines.ExpectoRidge`."""

    def __init__(self, ridge: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self.net = baselines.ExpectoRidge(self.config.n_signals, self.config.n_features,
                                          scaling=self.config.scaling, **(ridge or {}))

    def forward(self, x: Tensor) -> Tensor:
        _, signals, features = self.split(x)
        return self.net(signals, features)[:, None, None]


MODEL_CLASSES = (Seq2ExpModel, Seq2ExpGenerator, Seq2ExpPredictor, HierarchicalCNN, ExpectoRidge)


class BoundSignals(nn.Module):
    """A 4-channel DNA model: one locus's signals, features (blacklist, and optionally a fixed
    mask) bound to a gReLU model class, so that gReLU's ISM and attribution tools run unchanged.

    ``forward(seq (N, 4, L)) -> (N, 1, 1)``; the bound tracks are broadcast over the batch.

    - :class:`Seq2ExpModel` without ``mask``: the full model; the generator sees each input
      sequence, so a mutation can change the mask (what ISM of Seq2Exp should measure by default).
      With ``mask``: that mask is held fixed (e.g. the reference sequence's) and only the
      predictor runs - the effect of the mutation through the predictor alone.
    - :class:`Seq2ExpPredictor`: the predictor with ``mask`` (or none).
    - baselines read signals only: their output does not depend on ``seq``.
    """

    def __init__(self, model: _GreluModel, signals: Tensor, features: Tensor,
                 mask: Tensor | None = None, blacklist: Tensor | None = None,
                 cell_type_index: int = 0) -> None:
        super().__init__()
        self.model = model
        self.cell_type_index = int(cell_type_index)
        length = signals.shape[-1]
        self.register_buffer("signals", torch.as_tensor(signals).float().reshape(-1, length),
                             persistent=False)
        self.register_buffer("features", torch.as_tensor(features).float().reshape(-1),
                             persistent=False)
        for name, track in (("mask", mask), ("blacklist", blacklist)):
            if track is not None:
                track = torch.as_tensor(track).reshape(-1)
                if track.shape[0] != length:
                    raise ValueError(f"BoundSignals: {name} has {track.shape[0]} positions, the "
                                     f"signals {length}")
                track = track.bool() if name == "blacklist" else track.float()
            self.register_buffer(name, track, persistent=False)
        self.head = model.head
        self.register_forward_pre_hook(_refuse_grelu_training)

    @property
    def length(self) -> int:
        return self.signals.shape[-1]

    def forward(self, seq: Tensor) -> Tensor:
        from ..model.batch import cpu_rows_per_call, predict_batch

        if seq.ndim != 3 or seq.shape[1] != 4 or seq.shape[2] != self.length:
            raise ValueError(f"BoundSignals: expected one-hot DNA (N, 4, {self.length}), got "
                             f"{tuple(seq.shape)}")
        per_call = cpu_rows_per_call(self.length, seq.device)
        if per_call is not None and seq.shape[0] > per_call:  # gReLU's batches, in calls the CPU takes
            return torch.cat([self(seq[lo:lo + per_call]) for lo in range(0, seq.shape[0], per_call)])
        n, dtype = seq.shape[0], seq.dtype
        batch = {"seq": seq, "signals": self.signals.to(dtype).expand(n, -1, -1),
                 "features": self.features.to(dtype).expand(n, -1),
                 "cell_type_index": torch.full((n,), self.cell_type_index, device=seq.device)}
        if self.blacklist is not None:
            batch["blacklist"] = self.blacklist.expand(n, -1)
        if self.mask is not None:
            batch["mask"] = self.mask.to(dtype).expand(n, -1)
        net = self.model.net
        if isinstance(net, seq2exp_module.Seq2ExpModel) and self.mask is not None:
            prediction = net.predictor(seq, batch["signals"], batch["features"], batch["mask"],
                                       batch["cell_type_index"])
        else:
            prediction, _ = predict_batch(net, batch)
        return prediction[:, None, None]


def bind_locus(model: Any, signals: Tensor, features: Tensor, signal_names: Sequence[str],
               blacklist: Tensor | None = None, mask: Tensor | None = None,
               task_name: str = "expression", cell_type_index: int = 0):
    """A gReLU ``LightningModel`` that reads 4-channel DNA of one locus (see :class:`BoundSignals`).

    ``model``: a ``grelu.lightning.LightningModel`` holding one of this module's classes (e.g.
    ``LightningModel.load_from_checkpoint`` of a ``seq2exp train`` checkpoint, or the training
    module itself), or such a class directly. ``signals (n_signals, L)``, ``features
    (n_features,)``, ``blacklist (L,)`` and ``mask (L,)`` are the locus's arrays in the model's
    window orientation (a window-dataset item's, as ``cell_type_index``: the output of a
    per-cell-type head it reads); ``signal_names`` names the rows of
    ``signals`` (a window dataset's ``signal_names``), checked against the model's tracks. The result shares the trained weights (a view,
    not a copy), is in eval mode, predicts ``(N, 1, 1)`` and works with
    ``grelu.interpret.score.ISM_predict``, ``get_attributions`` and ``predict_on_dataset``. It is
    for in-memory use: its hyper-parameters describe the unbound model, so do not save it.
    """
    from grelu.lightning import LightningModel

    face = getattr(model, "model", model)
    if isinstance(face, BoundSignals):
        raise ValueError("bind_locus: the model is already bound to a locus")
    if not isinstance(face, _GreluModel):
        raise TypeError(f"bind_locus: expected a gReLU LightningModel of a Seq2Exp class or one of "
                        f"{[c.__name__ for c in MODEL_CLASSES]}, got {type(face).__name__}")
    face.config.check_tracks(signal_names, "bind_locus")
    params = getattr(model, "model_params", None)
    if params is None:
        extra = {"use_signals": face.use_signals} if isinstance(face, Seq2ExpPredictor) else {}
        if isinstance(face, HierarchicalCNN):
            extra = {"window": face.window}
        params = {"model_type": type(face).__name__, **face.config.to_dict(), **extra}
    # a throwaway build of the unbound class (cheap, by name), then the bound view of the trained
    # weights; num_workers 0: gReLU's prediction loaders run in this process
    register()
    bound = LightningModel(dict(params), {"task": "regression", "loss": "mse", "num_workers": 0})
    bound.model = BoundSignals(face, signals, features, mask=mask, blacklist=blacklist,
                               cell_type_index=cell_type_index)
    bound.data_params = {"tasks": {"name": [task_name]}}
    device = next(face.parameters(), torch.empty(0)).device
    return bound.to(device).eval()  # the bound tracks go where the weights are


def deepshap_ops(k: int = 8) -> dict:
    """``additional_nonlinear_ops`` for tangermeme's DeepLIFT/SHAP (gReLU's ``method="deepshap"``).

    tangermeme has rules for ``nn`` activations and ``RMSNorm``, but none for the selective scan
    (a custom autograd Function with input-dependent decays), for the posterior mean
    ``alpha / (alpha + beta)`` or for the mask product. All three get tangermeme's layer-wise
    integrated-gradients rule (``k`` Gauss-Legendre nodes; exact for the product, whose Jacobian
    is linear along the path): each bidirectional Mamba mixer as a whole,
    :class:`~seq2exp_plugin.model.mask.BetaMean` and
    :class:`~seq2exp_plugin.model.predictor.MaskProduct`. Pass as
    ``get_attributions(..., method="deepshap", additional_nonlinear_ops=deepshap_ops())``.
    """
    from tangermeme.deep_lift_shap import integrated_gradients_op

    from ..model.mask import BetaMean
    from ..model.predictor import MaskProduct
    from ..nn.bimamba import BiMamba

    return {BiMamba: integrated_gradients_op(k, name="bimamba"),
            BetaMean: integrated_gradients_op(k, name="beta_mean"),
            MaskProduct: integrated_gradients_op(k, name="mask_product")}


def register() -> None:
    """Make the classes buildable by name from ``grelu.model.models`` (idempotent)."""
    import grelu.model.models as grelu_models

    for cls in MODEL_CLASSES:
        setattr(grelu_models, cls.__name__, cls)
