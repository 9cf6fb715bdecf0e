"""How each model reads a batch of the window dataset.

A batch is the dataset's dict: ``seq (B, 4, L)``, ``signals (B, d, L)``, ``features
(B, n_features)``, ``target (B,)``, ``blacklist (B, L)``, ``cell_type_index (B,)`` (the output of
a per-cell-type head each example reads) and, for the peak-mask variant, ``mask (B, L)``. Training, evaluation and the framework adapters all predict through
:func:`predict_batch`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .baselines import ExpectoRidge, HierarchicalCNN
from .mask import MaskOutput, constrain
from .predictor import Seq2ExpPredictor
from .seq2exp import Seq2ExpModel


#: No-gradient model calls on the CPU take windows up to this many positions in all (one 200 kb
#: window, or 13 of 20 kb): a larger call costs more per gene there (fresh pages from the
#: allocator, caches: benchmarks/README.md, "Speed (CPU)"), and gReLU's default ISM batch of
#: 64 windows of 200 kb would need about 100 GiB at once.
CPU_INFERENCE_POSITIONS = 2**18


def cpu_rows_per_call(length: int, device: torch.device | str) -> int | None:
    """How many windows of ``length`` bp one no-gradient model call on the CPU takes.

    Args:
        length: window length, in bp.
        device: the device the model runs on.

    Returns:
        Windows per call (at least one); None where no limit applies (a GPU, or gradients being
        recorded).
    """
    if torch.device(device).type != "cpu" or torch.is_grad_enabled():
        return None
    return max(1, CPU_INFERENCE_POSITIONS // length)


def predict_batch(net: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, MaskOutput | None]:
    """Expression and, for Seq2Exp, the mask, from a dataset batch.

    Args:
        net: a :class:`Seq2ExpModel`, :class:`Seq2ExpPredictor`, :class:`HierarchicalCNN` or
            :class:`ExpectoRidge`.
        batch: the dataset's dict: ``seq (batch, 4, L)``, ``signals (batch, n_signals, L)``,
            ``features (batch, n_features)``, optional ``blacklist (batch, L)``,
            ``mask (batch, L)`` and ``cell_type_index (batch,)`` (needed by a per-cell-type head).

    Returns:
        ``(expression, mask)``: expression ``(batch,)``; the :class:`MaskOutput` for Seq2Exp,
        else None.
    """
    seq, signals, features = batch["seq"], batch["signals"], batch["features"]
    cell_type = batch.get("cell_type_index")
    if isinstance(net, Seq2ExpModel):
        out = net(seq, signals, features, batch.get("blacklist"), cell_type)
        return out.expression, out.mask
    if isinstance(net, Seq2ExpPredictor):
        return net(seq, signals, features, given_mask(net, batch), cell_type), None
    if isinstance(net, HierarchicalCNN):
        return net(signals, features, cell_type), None
    if isinstance(net, ExpectoRidge):
        return net(signals, features), None
    raise TypeError(f"no batch rule for {type(net).__name__}")


def given_mask(net: nn.Module, batch: dict[str, Tensor]) -> Tensor | None:
    """The batch's own mask (MACS3 peaks), constrained as the generator's masks are: the
    central promoter kept (the packed predictor pools it, so it must never be empty) and
    blacklisted positions removed.

    Args:
        net: the model; only a :class:`Seq2ExpPredictor`'s mask is constrained.
        batch: the dataset's dict, with optional ``mask`` and ``blacklist``, each ``(batch, L)``.

    Returns:
        The mask ``(batch, L)``; None without one.
    """
    mask = batch.get("mask")
    if mask is None or not isinstance(net, Seq2ExpPredictor):
        return mask
    cfg = net.config.mask
    return constrain(mask, cfg.promoter_keep, batch.get("blacklist"), cfg.promoter_over_blacklist)
