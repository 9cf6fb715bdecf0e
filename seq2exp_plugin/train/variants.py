"""Each training variant as a gReLU model type plus how it reads a batch.

A batch is the window dataset's dict: ``seq (B, 4, L)``, ``signals (B, d, L)``,
``features (B, n_features)``, ``target (B,)``, ``blacklist (B, L)`` and, for the peak-mask
variant, ``mask (B, L)``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..model.baselines import ExpectoRidge, HierarchicalCNN
from ..model.config import preset
from ..model.mask import MaskOutput, constrain
from ..model.predictor import Seq2ExpPredictor
from ..model.seq2exp import Seq2ExpModel
from .config import RunConfig

#: Width (bp) of the promoter the promoter-ridge baseline reads (the gene table's promoter-
#: activity window, TSS +/- 500 bp).
PROMOTER_WIDTH = 1000


def model_config(run: RunConfig):
    """The Seq2Exp configuration of a run: preset + overrides, signals named by the data."""
    overrides = dict(run.model)
    if run.data.signals:
        overrides.setdefault("signals", list(run.data.signals))
    if run.variant == "retrain":
        mask = dict(overrides.get("mask", {}))
        mask.setdefault("mode", "top")
        mask.setdefault("kl_weight", 0.0)  # the generator is frozen: no bottleneck to train
        overrides["mask"] = mask
    return preset(run.preset, **overrides)


def model_params(run: RunConfig) -> dict[str, Any]:
    """gReLU ``model_params`` for the run's variant (see seq2exp_plugin.adapters.grelu)."""
    fields = model_config(run).to_dict()
    if run.variant in ("seq2exp", "retrain"):
        return {"model_type": "Seq2ExpModel", **fields}
    if run.variant in ("seq-only", "seq-signals", "peak-mask"):
        return {"model_type": "Seq2ExpPredictor", "use_signals": run.variant != "seq-only", **fields}
    if run.variant == "hierarchical-cnn":
        return {"model_type": "HierarchicalCNN", "window": run.data.window, "cnn": dict(run.cnn), **fields}
    if run.variant == "ridge":
        return {"model_type": "ExpectoRidge", **fields}
    if run.variant == "promoter-ridge":
        return {"model_type": "ExpectoRidge", "ridge": {"promoter_width": PROMOTER_WIDTH}, **fields}
    raise ValueError(f"unknown variant {run.variant!r}")


def predict_batch(net: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, MaskOutput | None]:
    """Expression ``(B,)`` and, for Seq2Exp, the mask, from a dataset batch."""
    seq, signals, features = batch["seq"], batch["signals"], batch["features"]
    if isinstance(net, Seq2ExpModel):
        out = net(seq, signals, features, batch.get("blacklist"))
        return out.expression, out.mask
    if isinstance(net, Seq2ExpPredictor):
        return net(seq, signals, features, given_mask(net, batch)), None
    if isinstance(net, (HierarchicalCNN, ExpectoRidge)):
        return net(signals, features), None
    raise TypeError(f"no batch rule for {type(net).__name__}")


def given_mask(net: nn.Module, batch: dict[str, Tensor]) -> Tensor | None:
    """The batch's own mask (MACS3 peaks), constrained as the generator's masks are: the
    central promoter kept (the packed predictor pools it, so it must never be empty) and
    blacklisted positions removed. None without one."""
    mask = batch.get("mask")
    if mask is None or not isinstance(net, Seq2ExpPredictor):
        return mask
    return constrain(mask, net.config.mask.promoter_keep, batch.get("blacklist"))


def freeze_generator(net: Seq2ExpModel, checkpoint: str) -> None:
    """Seq2Exp-retrain: copy a trained model's generator into ``net`` and freeze it."""
    from .module import load_network

    trained = load_network(checkpoint)
    if not isinstance(trained, Seq2ExpModel):
        raise ValueError(f"{checkpoint}: retrain needs a Seq2Exp checkpoint, got {type(trained).__name__}")
    try:
        net.generator.load_state_dict(trained.generator.state_dict())
    except RuntimeError as err:
        raise ValueError(f"{checkpoint}: its generator does not fit this configuration: {err}") from None
    net.generator.requires_grad_(False)
    net.generator.eval()
