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

A model with a per-cell-type head (``model.celltype_head``, one output per training cell type)
reads one cell type's output in ``forward``: name it once, ``cell_type="K562"`` in
``model_params`` (the stacked signal channels must be that cell type's), or load a checkpoint with
:func:`seq2exp_plugin.train.module.load_grelu_model`, which names it.

For gReLU's ISM and attribution tools, which pass 4-channel DNA only, bind one locus's signals
with :func:`bind_locus` (a gReLU ``LightningModel`` around :class:`BoundSignals`); DeepSHAP needs
:func:`deepshap_ops`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import InputError
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


def _name_a_cell_type(where: str, cell_types: Sequence[str], how: str | None = None) -> str:
    """What to do when a per-cell-type head of several outputs is given no cell type."""
    how = how or (f"cell_type={cell_types[0]!r} in model_params; for a checkpoint "
                  "seq2exp_plugin.train.module.load_grelu_model(path, cell_type=...)")
    return (f"{where}: the model's per-cell-type head (model.celltype_head) has an output for each "
            f"of {list(cell_types)}: name the one to read ({how}); the signal channels must be "
            "that cell type's")


class _GreluModel(nn.Module):
    """Shared plumbing: the library model in ``.net``, gReLU's ``head.n_tasks``, the output a
    per-cell-type head reads; gReLU's own training loop is refused (:func:`_refuse_grelu_training`).

    ``cell_type``: the cell type whose output ``forward`` reads from a per-cell-type head (a head
    of several outputs needs one, a name it has an output for); ignored by the shared head, which
    serves any cell type. ``batch_cell_types``: the caller gives ``.net`` each example's cell
    type itself (the training module, from its batches' ``cell_type_index``), so none is needed
    here; ``forward`` then asks for one.
    """

    head = _TaskCount()
    #: Whether the network ends in the head that may have one output per cell type.
    has_celltype_head = False

    def __init__(self, cell_type: str | None = None, batch_cell_types: bool = False,
                 **fields: Any) -> None:
        super().__init__()
        # model_params without a version were written before configurations had one
        self.config = Seq2ExpConfig.from_dict({"version": 1, **fields})
        self.cell_type = cell_type
        #: The head output ``forward`` reads (None: the only one, or none named).
        self.cell_type_index = None
        if self.has_celltype_head and cell_type is not None:
            self.cell_type_index = self.config.celltype_index(cell_type)
        elif self.has_celltype_head and self.config.n_outputs > 1 and not batch_cell_types:
            raise InputError(_name_a_cell_type(type(self).__name__, self.config.cell_types))
        self.register_forward_pre_hook(_refuse_grelu_training)

    def cell_type_indices(self, x: Tensor) -> Tensor | None:
        """The named cell type's output index for each example of ``x`` (None: a one-output head)."""
        if self.config.n_outputs == 1:
            return None
        if self.cell_type_index is None:
            raise InputError(_name_a_cell_type(type(self).__name__, self.config.cell_types))
        return torch.full((x.shape[0],), self.cell_type_index, device=x.device)

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

    has_celltype_head = True

    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)
        self.net = seq2exp_module.Seq2ExpModel(self.config)

    def forward(self, x: Tensor) -> Tensor:
        seq, signals, features = self.split(x)
        return self.net(seq, signals, features, None, self.cell_type_indices(x)).expression[:, None, None]


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

    has_celltype_head = True

    def __init__(self, use_signals: bool = True, **fields: Any) -> None:
        super().__init__(**fields)
        self.use_signals = use_signals
        self.net = predictor_module.Seq2ExpPredictor(self.config, use_signals=use_signals)

    def forward(self, x: Tensor) -> Tensor:
        seq, signals, features, mask = self.split(x, with_mask=True)
        return self.net(seq, signals, features, mask, self.cell_type_indices(x))[:, None, None]


class HierarchicalCNN(_GreluModel):
    """gReLU face of :class:`seq2exp_plugin.model.baselines.HierarchicalCNN`."""

    has_celltype_head = True

    def __init__(self, window: int, cnn: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        self.window = window
        self.net = baselines.HierarchicalCNN(self.config.n_signals, window,
                                             n_features=self.config.n_features,
                                             scaling=self.config.scaling,
                                             n_outputs=self.config.n_outputs, **(cnn or {}))

    def forward(self, x: Tensor) -> Tensor:
        _, signals, features = self.split(x)
        return self.net(signals, features, self.cell_type_indices(x))[:, None, None]


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
               task_name: str = "expression", cell_type_index: int | None = None):
    """A gReLU ``LightningModel`` that reads 4-channel DNA of one locus (see :class:`BoundSignals`).

    ``model``: a ``grelu.lightning.LightningModel`` holding one of this module's classes (e.g.
    ``LightningModel.load_from_checkpoint`` of a ``seq2exp train`` checkpoint, or the training
    module itself), or such a class directly. ``signals (n_signals, L)``, ``features
    (n_features,)``, ``blacklist (L,)`` and ``mask (L,)`` are the locus's arrays in the model's
    window orientation (a window-dataset item's, as ``cell_type_index``: the output of a
    per-cell-type head it reads; by default the one the model's ``cell_type`` names, and a head
    of several outputs needs one or the other); ``signal_names`` names the rows of
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
    cell_type_index = _bound_output(face, cell_type_index)
    params = getattr(model, "model_params", None)
    if params is None:
        extra = {"use_signals": face.use_signals} if isinstance(face, Seq2ExpPredictor) else {}
        if isinstance(face, HierarchicalCNN):
            extra = {"window": face.window}
        params = {"model_type": type(face).__name__, **face.config.to_dict(), **extra}
    if face.has_celltype_head and face.config.n_outputs > 1:  # the throwaway build names it too
        params = {**params, "cell_type": face.config.cell_types[cell_type_index]}
    # a throwaway build of the unbound class (cheap, by name), then the bound view of the trained
    # weights; num_workers 0: gReLU's prediction loaders run in this process
    register()
    bound = LightningModel(dict(params), {"task": "regression", "loss": "mse", "num_workers": 0})
    bound.model = BoundSignals(face, signals, features, mask=mask, blacklist=blacklist,
                               cell_type_index=cell_type_index)
    bound.data_params = {"tasks": {"name": [task_name]}}
    device = next(face.parameters(), torch.empty(0)).device
    return bound.to(device).eval()  # the bound tracks go where the weights are


def _bound_output(face: _GreluModel, cell_type_index: int | None) -> int:
    """The head output a locus-bound model reads: ``cell_type_index`` (the locus's) or the one
    the model's ``cell_type`` names; the two must agree, as the locus's signals are one cell
    type's."""
    n_outputs = face.config.n_outputs if face.has_celltype_head else 1
    own = face.cell_type_index
    if cell_type_index is None:
        if own is None and n_outputs > 1:
            raise InputError(_name_a_cell_type("bind_locus", face.config.cell_types,
                                               "the locus's cell_type_index, or a model made "
                                               "with cell_type=..."))
        return own or 0
    cell_type_index = int(cell_type_index)
    if n_outputs > 1 and not 0 <= cell_type_index < n_outputs:
        raise InputError(f"bind_locus: cell_type_index {cell_type_index}, but the per-cell-type head "
                         f"has outputs 0 to {n_outputs - 1} ({list(face.config.cell_types)})")
    if own is not None and n_outputs > 1 and own != cell_type_index:
        raise InputError(f"bind_locus: cell_type_index {cell_type_index} is the output of "
                         f"{face.config.cell_types[cell_type_index]!r}, but the model was made to "
                         f"read that of {face.cell_type!r} ({own}): bind a locus of that cell type")
    return cell_type_index


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
