"""The optimisation recipe (paper appendix A.4): AdamW without decay on biases, norms, A_log
and D; linear warm-up from ``warmup_start_lr`` then cosine decay to ``min_lr``."""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (matrices) and not decayed (biases, norm
    weights, and parameters marked ``_no_weight_decay`` such as Mamba's A_log and D)."""
    decay, no_decay = [], []
    for param in model.parameters():  # shared (tied) parameters are listed once
        if not param.requires_grad:
            continue
        if param.ndim < 2 or getattr(param, "_no_weight_decay", False):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: ``warmup_start_lr -> lr`` linearly, then cosine ``lr -> min_lr``."""
    sched = torch.optim.lr_scheduler
    cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, cfg.max_steps - cfg.warmup_steps),
                                     eta_min=cfg.min_lr)
    if cfg.warmup_steps == 0:
        return cosine
    warmup = sched.LinearLR(optimizer, start_factor=cfg.warmup_start_lr / cfg.lr, end_factor=1.0,
                            total_iters=cfg.warmup_steps)
    return sched.SequentialLR(optimizer, [warmup, cosine], milestones=[cfg.warmup_steps])
