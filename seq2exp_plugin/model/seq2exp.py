"""Seq2Exp: generator -> mask -> predictor, trained with the information-bottleneck loss (eq. 3).

``loss = task_loss(y_hat, y) + kl_weight * KL(p(m | X) || Beta(alpha3, beta3))``, the task loss
being smooth-L1 (the public implementation) or MSE (the paper's text) on log10(CAGE + 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Seq2ExpConfig
from .generator import Seq2ExpGenerator
from .mask import MaskOutput
from .predictor import Seq2ExpPredictor


@dataclass
class Seq2ExpOutput:
    """What :class:`Seq2ExpModel` returns.

    Args:
        expression: predicted log10(expression + 1), ``(batch,)``.
        mask: the generator's :class:`MaskOutput` (mask and score ``(batch, L)``, KL a scalar);
            None for a model without a generator.
    """

    #: Predicted log10(expression + 1), ``(batch,)``.
    expression: Tensor
    #: None for a model without a generator (a baseline, or a predictor given its mask).
    mask: MaskOutput | None


class Seq2ExpModel(nn.Module):
    """The full Seq2Exp model: generator -> mask -> predictor.

    Build it from a :class:`Seq2ExpConfig`, a dict of its fields, or keyword fields
    (``Seq2ExpModel(mask={"mode": "hard"})``), as gReLU's ``model_params`` do.

    Args:
        config: a :class:`Seq2ExpConfig` or a dict of its fields; None: the defaults and
            ``fields``.
        **fields: configuration fields, when no config object is given.
    """

    def __init__(self, config: Seq2ExpConfig | dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__()
        if isinstance(config, dict):
            fields = {**config, **fields}
            config = None
        if config is None:
            config = Seq2ExpConfig.from_dict(fields)
        elif fields:
            raise TypeError("Seq2ExpModel: pass either a config or keyword fields, not both")
        self.config = config
        self.generator = Seq2ExpGenerator(config)
        self.predictor = Seq2ExpPredictor(config)
        if config.shared_embedding:
            for name in ("signal_embedding", "positions"):
                if getattr(self.generator, name) is not None:
                    setattr(self.predictor, name, getattr(self.generator, name))
            self.predictor.seq_embedding = self.generator.embedding
        if config.shared_stack:
            self.predictor.backbone = self.generator.backbone

    def forward(self, seq: Tensor, signals: Tensor, features: Tensor,
                blacklist: Tensor | None = None, cell_type: Tensor | None = None) -> Seq2ExpOutput:
        """Mask the window with the generator, then predict expression from it.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: raw signal tracks ``(batch, n_signals, L)``.
            features: raw extra gene features ``(batch, n_features)``.
            blacklist: positions never kept, ``(batch, L)`` bool; None: none.
            cell_type: each example's output of a per-cell-type head ``(batch,)`` int64; None
                with the shared head.

        Returns:
            A :class:`Seq2ExpOutput`: expression ``(batch,)`` and the mask ``(batch, L)``.
        """
        mask = self.generator(seq, signals, blacklist)
        return Seq2ExpOutput(self.predictor(seq, signals, features, mask.mask, cell_type), mask)


def seq2exp_loss(output: Seq2ExpOutput, target: Tensor, kl_weight: float,
                 task_loss: Literal["smooth_l1", "mse"] = "smooth_l1") -> dict[str, Tensor]:
    """Eq. 3: the information-bottleneck loss, task loss + ``kl_weight`` * KL to the prior.

    The one loss of training, validation and the benchmarks. Computed in float32 at least:
    under bf16 autocast the prediction is bfloat16, and rounding the targets to it would cost
    them three significant digits.

    Args:
        output: the model's output (expression ``(batch,)``, mask or None).
        target: log10(expression + 1) targets ``(batch,)``.
        kl_weight: weight of the KL term (per base pair's KL).
        task_loss: "smooth_l1" (the public implementation) or "mse" (the paper's text).

    Returns:
        ``{"loss": total, "task": task term, "kl": unweighted KL}``, scalars (KL 0 without a
        mask).
    """
    dtype = torch.promote_types(output.expression.dtype, torch.float32)
    expression, target = output.expression.to(dtype), target.to(dtype)
    if task_loss == "smooth_l1":
        task = F.smooth_l1_loss(expression, target)
    elif task_loss == "mse":
        task = F.mse_loss(expression, target)
    else:
        raise ValueError(f"task_loss must be 'smooth_l1' or 'mse', got {task_loss!r}")
    kl = output.mask.kl if output.mask is not None else task.new_zeros(())
    return {"loss": task + kl_weight * kl, "task": task, "kl": kl}
