"""The generator: the mask distribution p(m | X) from DNA and signals (paper section 4.1).

``f_theta`` (eq. 8) embeds the one-hot DNA, runs a bidirectional Mamba stack and maps each
position to ``(alpha1, beta1)``; the signals give the parameter-free ``(alpha2, beta2)`` (eq. 9);
their product is the posterior (Proposition 2). See :mod:`seq2exp_plugin.model.mask`.
With ``Seq2ExpConfig.contact_exponent`` (not the paper) ``alpha1`` also carries a learned power
of the Hi-C contact to the TSS, relative to its window mean: activity x contact, as in ABC.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.bimamba import BiMambaStack, rc_symmetrize, zero_linear_biases_
from .config import Seq2ExpConfig
from .embedding import PositionTable, signal_input
from .mask import (BetaMean, MaskDistribution, MaskOutput, make_mask, posterior, sequence_beta,
                   signal_beta)
from .scaling import InputScaling



class Seq2ExpGenerator(nn.Module):
    """The generator: DNA + signals -> the mask distribution p(m | X) and the mask.

    Usable alone: ``generator(seq, signals).score`` is the per-bp posterior mean that
    ``seq2exp predict`` writes as a bigWig.

    Args:
        config: the model configuration (``generator`` stack, ``mask``, ``signals``,
            ``scaling``, ...); None: the defaults.
    """

    def __init__(self, config: Seq2ExpConfig | None = None) -> None:
        super().__init__()
        self.config = config or Seq2ExpConfig()
        cfg = self.config
        d_model = cfg.generator.d_model
        self.embedding = nn.Linear(4, d_model)
        self.signal_embedding = nn.Linear(cfg.n_signals, d_model) if cfg.generator_signals else None
        self.positions = PositionTable(cfg.position_table, d_model) if cfg.position_table else None
        self.backbone = BiMambaStack(cfg.generator)
        self.head = nn.Linear(d_model, 2)
        #: ``Seq2ExpConfig.contact_exponent``: gamma = contact_rate * this parameter, 0 at start
        #: (the contact does not enter yet)
        self.contact_gamma_raw = nn.Parameter(torch.zeros(())) if cfg.contact_exponent else None
        if self.config.mask.sequence_term == "multiplicative":
            # factors of 1: training starts from the signal posterior
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        # Non-linear steps as modules (no parameters): attribution rules attach to modules.
        self.softplus = nn.Softplus()
        self.posterior_mean = BetaMean()
        self.scaling = InputScaling(self.config.scaling)
        if cfg.generator.caduceus_init:
            zero_linear_biases_(self)

    @property
    def contact_gamma(self) -> Tensor | None:
        """The learned exponent of the relative contact (``Seq2ExpConfig.contact_exponent``).

        Returns:
            ``contact_rate * contact_gamma_raw``, a scalar; None without a contact exponent.
        """
        if self.contact_gamma_raw is None:
            return None
        return self.config.contact_rate * self.contact_gamma_raw

    def encode(self, seq: Tensor, signals: Tensor | None = None) -> Tensor:
        """Embed the DNA (and signals, if the generator reads them) and run the Mamba stack.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: scaled signal tracks ``(batch, n_signals, L)``; only read with
                ``generator_signals``.

        Returns:
            Hidden states, channels-last ``(batch, L, d_model)``.
        """
        hidden = self.embedding(seq.transpose(1, 2))
        if self.positions is not None:
            hidden = hidden + self.positions(seq.shape[-1])
        if self.signal_embedding is not None:
            signals = signal_input(signals, self.config.generator_signal_transform
                                   or self.config.signal_transform)
            hidden = hidden + self.signal_embedding(signals.transpose(1, 2))
        return self.backbone(hidden)

    def distribution(self, seq: Tensor, signals: Tensor) -> MaskDistribution:
        """The posterior Beta(alpha, beta) per position (Proposition 2), with its two factors.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: raw signal tracks ``(batch, n_signals, L)``; the fitted scaling is applied
                here.

        Returns:
            A :class:`MaskDistribution`, each parameter ``(batch, L)``.
        """
        signals = self.scaling.signals(signals)
        tracks = (signals,) if self.signal_embedding is not None else ()
        if self.config.generator.rc_equivariant:
            hidden = rc_symmetrize(self.encode, seq, *tracks)
        else:
            hidden = self.encode(seq, *tracks)
        alpha1, beta1 = sequence_beta(self.head(hidden), self.config.mask, self.softplus)
        if self.contact_gamma_raw is not None:
            contact = signals[:, self.config.signals.index(self.config.contact_exponent)]
            contact = contact.to(alpha1.dtype).clamp_min(0)
            relative = (contact + 1e-6) / (contact.mean(-1, keepdim=True) + 1e-6)
            alpha1 = alpha1 * torch.exp(self.contact_gamma * torch.log(relative))
        alpha2, beta2 = signal_beta(signals, self.config.mask, self.config.signals, dtype=alpha1.dtype)
        return posterior(alpha1, beta1, alpha2, beta2, self.config.mask)

    def forward(self, seq: Tensor, signals: Tensor, blacklist: Tensor | None = None) -> MaskOutput:
        """Sample (training) or take the mean (eval) of the posterior; see :func:`make_mask`.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: raw signal tracks ``(batch, n_signals, L)``.
            blacklist: positions never kept, ``(batch, L)`` bool; None: none.

        Returns:
            A :class:`MaskOutput`: ``mask`` and ``score`` ``(batch, L)``, ``kl`` a scalar.
        """
        dist = self.distribution(seq, signals)
        mean = self.posterior_mean(torch.stack([dist.alpha, dist.beta], dim=-1))
        return make_mask(dist, self.config.mask, self.training, blacklist, mean=mean)
