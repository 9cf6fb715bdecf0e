"""The optimisation recipe (paper appendix A.4): AdamW without decay on biases, norms, A_log
and D; linear warm-up from ``warmup_start_lr`` then cosine decay to ``min_lr``."""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                     generator_lr: float | None = None) -> list[dict]:
    """Trainable parameters split into decayed (matrices) and not decayed (biases, norm
    weights, and parameters marked ``_no_weight_decay`` such as Mamba's A_log and D).

    With ``generator_lr`` (and ``lr``), a Seq2Exp generator's own parameters (those it does not
    share with the predictor) form groups of their own at that learning rate."""
    own = set()
    core = getattr(model, "net", model)  # gReLU's wrapper holds the library model as .net
    if generator_lr is not None and hasattr(core, "generator"):
        shared = {id(p) for p in core.predictor.parameters()}
        own = {id(p) for p in core.generator.parameters() if id(p) not in shared}
    groups = {key: [] for key in ((False, True), (False, False), (True, True), (True, False))}
    for param in model.parameters():  # shared (tied) parameters are listed once
        if not param.requires_grad:
            continue
        decayed = not (param.ndim < 2 or getattr(param, "_no_weight_decay", False))
        groups[id(param) in own, decayed].append(param)
    rate = {False: {"lr": lr}, True: {"lr": generator_lr}} if own else {False: {}, True: {}}
    return [{"params": params, "weight_decay": weight_decay if decayed else 0.0, **rate[generator]}
            for (generator, decayed), params in groups.items() if params or not generator]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    generator_lr = cfg.lr * cfg.generator_lr_scale if cfg.generator_lr_scale != 1.0 else None
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay, cfg.lr, generator_lr),
                             lr=cfg.lr, betas=cfg.betas)


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
