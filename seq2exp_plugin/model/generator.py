"""The generator: the mask distribution p(m | X) from DNA and signals (paper section 4.1).

``f_theta`` (eq. 8) embeds the one-hot DNA, runs a bidirectional Mamba stack and maps each
position to ``(alpha1, beta1)``; the signals give the parameter-free ``(alpha2, beta2)`` (eq. 9);
their product is the posterior (Proposition 2). See :mod:`seq2exp_plugin.model.mask`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.bimamba import BiMambaStack, rc_symmetrize
from .config import Seq2ExpConfig
from .mask import (BetaMean, MaskDistribution, MaskOutput, make_mask, posterior, sequence_beta,
                   signal_beta)
from .scaling import InputScaling


class Seq2ExpGenerator(nn.Module):
    """DNA ``(B, 4, L)`` + signals ``(B, d, L)`` -> the mask distribution and the mask.

    Usable alone: ``generator(seq, signals).score`` is the per-bp posterior mean that
    ``seq2exp predict`` writes as a bigWig.
    """

    def __init__(self, config: Seq2ExpConfig | None = None) -> None:
        super().__init__()
        self.config = config or Seq2ExpConfig()
        d_model = self.config.generator.d_model
        self.embedding = nn.Linear(4, d_model)
        self.backbone = BiMambaStack(self.config.generator)
        self.head = nn.Linear(d_model, 2)
        # Non-linear steps as modules (no parameters): attribution rules attach to modules.
        self.softplus = nn.Softplus()
        self.posterior_mean = BetaMean()
        self.scaling = InputScaling(self.config.scaling)

    def encode(self, seq: Tensor) -> Tensor:
        """``(B, 4, L)`` one-hot -> ``(B, L, d_model)`` hidden states."""
        return self.backbone(self.embedding(seq.transpose(1, 2)))

    def distribution(self, seq: Tensor, signals: Tensor) -> MaskDistribution:
        """The posterior Beta(alpha, beta) per position, with its two factors."""
        if self.config.generator.rc_equivariant:
            hidden = rc_symmetrize(self.encode, seq)
        else:
            hidden = self.encode(seq)
        alpha1, beta1 = sequence_beta(self.head(hidden), self.config.mask, self.softplus)
        alpha2, beta2 = signal_beta(self.scaling.signals(signals), self.config.mask)
        return posterior(alpha1, beta1, alpha2, beta2, self.config.mask)

    def forward(self, seq: Tensor, signals: Tensor, blacklist: Tensor | None = None) -> MaskOutput:
        """Sample (training) or take the mean (eval) of the posterior; see :func:`make_mask`."""
        dist = self.distribution(seq, signals)
        mean = self.posterior_mean(torch.stack([dist.alpha, dist.beta], dim=-1))
        return make_mask(dist, self.config.mask, self.training, blacklist, mean=mean)
