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
    #: Predicted log10(expression + 1), ``(batch,)``.
    expression: Tensor
    #: None for a model without a generator (a baseline, or a predictor given its mask).
    mask: MaskOutput | None


class Seq2ExpModel(nn.Module):
    """The full model. Build it from a :class:`Seq2ExpConfig`, a dict of its fields, or keyword
    fields (``Seq2ExpModel(mask={"mode": "hard"})``), as gReLU's ``model_params`` do."""

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
                blacklist: Tensor | None = None) -> Seq2ExpOutput:
        """``seq (B, 4, L)``, ``signals (B, d, L)``, ``features (B, n_features)``,
        ``blacklist (B, L)`` bool (optional)."""
        mask = self.generator(seq, signals, blacklist)
        return Seq2ExpOutput(self.predictor(seq, signals, features, mask.mask), mask)


def seq2exp_loss(output: Seq2ExpOutput, target: Tensor, kl_weight: float,
                 task_loss: Literal["smooth_l1", "mse"] = "smooth_l1") -> dict[str, Tensor]:
    """Eq. 3: ``{"loss": total, "task": task term, "kl": unweighted KL}`` (KL 0 without a mask).

    The one loss of training, validation and the benchmarks. Computed in float32 at least:
    under bf16 autocast the prediction is bfloat16, and rounding the targets to it would cost
    them three significant digits."""
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
