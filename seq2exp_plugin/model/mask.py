"""The mask distribution of Seq2Exp (paper sections 3.4-3.5 and 4.2).

Per base pair:

- sequence part (eq. 8): ``alpha1, beta1 = softplus(f_theta(X_seq)) + b_min`` (the generator);
- signal part (eq. 9, weighted over tracks as in the public implementation), no parameters:
  ``alpha2 = k * sum_i w_i (s_i + b_min)``, ``beta2 = k * sum_i w_i (c_i + b_min)``;
- posterior, their product (Proposition 2, eq. 6): ``Beta(alpha1 + alpha2 - 1, beta1 + beta2 - 1)``
  ("paper") or ``Beta(alpha1 + alpha2, beta1 + beta2)`` ("sum", the public implementation);
- the sparse prior r(m) = ``Beta(alpha3, beta3)`` (eq. 7) enters the loss through a closed-form KL
  (eq. 3);
- optionally (``sequence_term="multiplicative"``, not the paper): ``alpha1, beta1 =
  softplus(h) / ln 2`` scale the signal Beta, ``Beta(alpha1 * alpha2, beta1 * beta2)``, and a
  budget on the expected kept fraction (``kept_target``) replaces the per-position KL;
- the mask: a reparameterised sample in training (Beta as a Dirichlet, implicit gradients), the
  posterior mean ``alpha / (alpha + beta)`` at inference; hard mode thresholds it at C_m with a
  straight-through gradient; the central promoter is always kept, blacklisted positions never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Beta, kl_divergence

from .config import MaskConfig

#: softplus underflows to exactly 0 in float32 for inputs below about -104; this floor keeps
#: alpha1, beta1 > 0 (a valid Beta) when b_min = 0 (the "sum" posterior).
_POSITIVE_FLOOR = 1e-6


@dataclass
class MaskDistribution:
    """Beta parameters of the mask distribution per position, each ``(batch, L)``.

    Args:
        alpha1: sequence factor's alpha (eq. 8), from the generator, ``(batch, L)``.
        beta1: sequence factor's beta (eq. 8), ``(batch, L)``.
        alpha2: signal factor's alpha (eq. 9), ``(batch, L)``.
        beta2: signal factor's beta (eq. 9), one constant per window, ``(batch, L)``.
        alpha: posterior alpha (Proposition 2, eq. 6), ``(batch, L)``.
        beta: posterior beta (Proposition 2, eq. 6), ``(batch, L)``.
    """

    alpha1: Tensor
    beta1: Tensor
    alpha2: Tensor
    beta2: Tensor
    alpha: Tensor
    beta: Tensor

    @property
    def mean(self) -> Tensor:
        """Posterior mean ``alpha / (alpha + beta)``.

        Returns:
            Mean mask value per position, in [0, 1], ``(batch, L)``.
        """
        return self.alpha / (self.alpha + self.beta)

    @property
    def sequence_mean(self) -> Tensor:
        """Mean of the generator's own Beta(alpha1, beta1): what the DNA says alone.

        Returns:
            ``alpha1 / (alpha1 + beta1)``, ``(batch, L)``.
        """
        return self.alpha1 / (self.alpha1 + self.beta1)

    @property
    def signal_mean(self) -> Tensor:
        """Mean of the signal Beta(alpha2, beta2). Ranks positions as the posterior of any
        position-constant generator does (beta2 is one constant per window).

        Returns:
            ``alpha2 / (alpha2 + beta2)``, ``(batch, L)``.
        """
        return self.alpha2 / (self.alpha2 + self.beta2)


@dataclass
class MaskOutput:
    """What the generator hands to the predictor and to the loss.

    Args:
        mask: the mask the predictor multiplies by, ``(batch, L)``.
        score: posterior mean E[m] with the same constraints, ``(batch, L)``.
        kl: the unweighted regulariser (eq. 3's second term), a scalar.
        distribution: the Beta parameters behind the mask.
    """

    #: The mask the predictor multiplies by, ``(batch, length)``: soft values, or 0/1 with a
    #: straight-through gradient in hard mode; promoter kept, blacklist removed.
    mask: Tensor
    #: Posterior mean E[m] with the same constraints: the per-bp score users look at.
    score: Tensor
    #: The regulariser, unweighted: mean KL(posterior || prior) over positions and batch (eq. 3's
    #: second term), or the kept-fraction budget's KL (``MaskConfig.kept_target``).
    kl: Tensor
    distribution: MaskDistribution

    @property
    def kept_fraction(self) -> Tensor:
        """Fraction of positions with a non-zero mask (the paper's mask ratio for hard masks).

        Returns:
            Share of mask values above 0.5 over batch and positions, a scalar (no gradient).
        """
        return (self.mask.detach() > 0.5).float().mean()


def sequence_beta(logits: Tensor, config: MaskConfig,
                  softplus: Callable[[Tensor], Tensor] = F.softplus) -> tuple[Tensor, Tensor]:
    """Eq. 8: ``alpha1, beta1`` from the generator's two output channels;
    with ``sequence_term="multiplicative"`` the factors ``softplus(h) / ln 2`` instead.

    Args:
        logits: the generator head's output, channels-last ``(batch, L, 2)``.
        config: mask settings (``b_min``, ``sequence_term``).
        softplus: the activation, ``F.softplus`` or an ``nn.Softplus()`` module (the generator
            passes its module so that attribution rules, e.g. DeepLIFT's, can attach to it).

    Returns:
        ``(alpha1, beta1)``, each ``(batch, L)``, > 0, in :func:`beta_dtype` of the logits.
    """
    if config.sequence_term == "multiplicative":
        params = (softplus(logits.to(beta_dtype(logits.dtype))) / math.log(2.0)).clamp_min(_POSITIVE_FLOOR)
        return params[..., 0], params[..., 1]
    params = softplus(logits.to(beta_dtype(logits.dtype))) + config.b_min
    if config.b_min < _POSITIVE_FLOOR:
        params = params.clamp_min(_POSITIVE_FLOOR)
    return params[..., 0], params[..., 1]


def beta_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the Beta parameters: the model's precision, and at least float32
    (bf16/fp16 activations are upcast; a float64 model stays float64).

    Args:
        dtype: the activations' dtype.

    Returns:
        ``dtype`` promoted with float32.
    """
    return torch.promote_types(dtype, torch.float32)


def signal_beta(signals: Tensor, config: MaskConfig, names: tuple[str, ...],
                dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Eq. 9 with a fixed weighted mix of tracks: the parameter-free ``alpha2, beta2``.

    Signals are coverage-like and enter as Beta weights, so negative values (possible in some
    fold-change tracks) count as 0.

    Args:
        signals: signal tracks ``(batch, n_signals, L)``, after the fitted scaling.
        config: mask settings (``signal_scale``, ``b_min``, per-track weights and constants).
        names: the track name of each signal channel; each track's constants are taken by name.
        dtype: compute in :func:`beta_dtype` of this; None: the signals' dtype.

    Returns:
        ``(alpha2, beta2)``, each ``(batch, L)``; ``beta2`` is one constant per window.
    """
    if signals.shape[1] != len(names):
        raise ValueError(f"signal Beta: {signals.shape[1]} signal tracks given for the "
                         f"{len(names)} named {list(names)}")
    weights, constants = config.signal_constants(tuple(names))
    signals = signals.to(beta_dtype(signals.dtype if dtype is None else dtype))
    w = signals.new_tensor(weights).view(1, -1, 1)
    alpha2 = config.signal_scale * (w * (signals.clamp_min(0) + config.b_min)).sum(1)
    beta2_value = config.signal_scale * sum(wi * (c + config.b_min) for wi, c in zip(weights, constants))
    return alpha2, torch.full_like(alpha2, beta2_value)


class BetaMean(nn.Module):
    """The posterior mean ``alpha / (alpha + beta)`` of stacked parameters ``(..., 2)``.

    The same arithmetic as :attr:`MaskDistribution.mean`, as a single-input module so that an
    attribution method can give it a rule (it is the generator's one non-linear step between the
    Beta parameters and the mask; see ``seq2exp_plugin.adapters.grelu.deepshap_ops``)."""

    def forward(self, params: Tensor) -> Tensor:
        """Args: params ``(..., 2)``, alpha then beta on the last axis.
        Returns: the mean ``(...)``, e.g. ``(batch, L)``."""
        return params[..., 0] / params.sum(-1)


def posterior(alpha1: Tensor, beta1: Tensor, alpha2: Tensor, beta2: Tensor,
              config: MaskConfig) -> MaskDistribution:
    """Proposition 2 (eq. 6): the posterior, the product of the sequence and signal Betas.

    With the paper's form both parameters stay > 0 by construction: ``alpha1 > b_min >= 1``
    (checked in :class:`MaskConfig`) and ``alpha2, beta2 >= 0``. With
    ``sequence_term="multiplicative"``: ``Beta(alpha1 * alpha2, beta1 * beta2)``.

    Args:
        alpha1, beta1: sequence factor (eq. 8), each ``(batch, L)``.
        alpha2, beta2: signal factor (eq. 9), each ``(batch, L)``.
        config: mask settings (``posterior``: "paper" or "sum"; ``sequence_term``).

    Returns:
        The factors and the posterior ``alpha, beta``, each ``(batch, L)``.
    """
    if config.sequence_term == "multiplicative":
        return MaskDistribution(alpha1, beta1, alpha2, beta2,
                                (alpha1 * alpha2).clamp_min(_POSITIVE_FLOOR),
                                (beta1 * beta2).clamp_min(_POSITIVE_FLOOR))
    shift = 1.0 if config.posterior == "paper" else 0.0
    return MaskDistribution(alpha1, beta1, alpha2, beta2,
                            alpha1 + alpha2 - shift, beta1 + beta2 - shift)


def kl_to_prior(dist: MaskDistribution, config: MaskConfig) -> Tensor:
    """Closed-form KL( Beta(alpha, beta) || Beta(alpha3, beta3) ) to the sparse prior (eq. 7),
    eq. 3's second term.

    Args:
        dist: the posterior per position, ``(batch, L)`` parameters.
        config: mask settings (``prior_alpha``, ``prior_beta``).

    Returns:
        The mean KL over all positions and sequences, a scalar (the authors' choice:
        ``MaskConfig.kl_weight`` weighs one base pair's KL).
    """
    prior = Beta(dist.alpha.new_tensor(config.prior_alpha), dist.alpha.new_tensor(config.prior_beta))
    return kl_divergence(Beta(dist.alpha, dist.beta), prior).mean()


def kept_fraction_kl(mean: Tensor, config: MaskConfig, blacklist: Tensor | None = None) -> Tensor:
    """The kept-fraction target: Bernoulli ``KL(q || kept_target)``, ``q`` the mean of ``mean``
    over the batch's free positions (not the promoter, not blacklisted). Two-sided: a
    generator cannot meet it by scaling every position down alike (the Beta sample's noise
    pushes the task loss that way), it must choose where the kept mass goes.

    Args:
        mean: the posterior mean (soft mode), or the hard 0/1 mask with its straight-through
            gradient (hard mode), so that the target is the share of positions the predictor
            reads; ``(batch, L)``.
        config: mask settings (``kept_target``, ``promoter_keep`` in bp).
        blacklist: positions never kept, ``(batch, L)`` bool; None: none.

    Returns:
        The KL, a scalar (0 when the promoter covers the whole window).
    """
    free = torch.ones_like(mean, dtype=torch.bool)
    free[..., central_slice(mean.shape[-1], config.promoter_keep)] = False
    if blacklist is not None:
        free &= ~blacklist.bool()
    if not bool(free.any()):  # the promoter covers the window: nothing to choose
        return mean.new_zeros(())
    q = mean[free].mean()
    # the value is kept inside (0, 1) without cutting the gradient: a hard mask can keep
    # nothing, and q = 0 must still be pushed up
    q = q + (q.clamp(1e-6, 1 - 1e-6) - q).detach()
    rho = config.kept_target
    return q * torch.log(q / rho) + (1 - q) * torch.log((1 - q) / (1 - rho))


def straight_through(soft: Tensor, threshold: float) -> Tensor:
    """``1[soft >= threshold]`` forward; identity gradient to ``soft`` backward (STE).

    Args:
        soft: soft mask values in [0, 1], e.g. ``(batch, L)``.
        threshold: the cut C_m.

    Returns:
        Exactly 0 or 1 in value, shaped as ``soft``, with ``soft``'s gradient.
    """
    hard = (soft >= threshold).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly 0 or 1 in value


def constrain(mask: Tensor, promoter_keep: int, blacklist: Tensor | None = None,
              promoter_over_blacklist: bool = False) -> Tensor:
    """Keep the central ``promoter_keep`` bp (set to 1) and drop blacklisted positions (0).

    Where the two overlap, the blacklist wins by default; ``promoter_over_blacklist`` keeps the
    whole promoter instead (the authors' order). See ``MaskConfig.promoter_over_blacklist``.

    Args:
        mask: mask values ``(batch, L)``.
        promoter_keep: width of the always-kept centre, in bp.
        blacklist: positions to drop, ``(batch, L)`` bool; None: none.
        promoter_over_blacklist: where both apply, keep the promoter.

    Returns:
        The constrained mask, ``(batch, L)``.
    """
    length = mask.shape[-1]
    keep = torch.zeros(length, dtype=torch.bool, device=mask.device)
    keep[central_slice(length, promoter_keep)] = True
    ones = torch.where(keep, torch.ones_like(mask), mask)
    if blacklist is None:
        return ones
    if promoter_over_blacklist:
        return torch.where(blacklist.bool() & ~keep, torch.zeros_like(mask), ones)
    return torch.where(blacklist.bool(), torch.zeros_like(mask), ones)


def central_slice(length: int, width: int) -> slice:
    """The central ``width`` positions of a window (the promoter / pooling region).

    Args:
        length: window length, in bp.
        width: width of the central region, in bp (clipped to the window).

    Returns:
        A slice over the window's positions.
    """
    start = max(0, (length - width) // 2)
    return slice(start, min(length, start + width))


def top_fraction(score: Tensor, fraction: float) -> Tensor:
    """0/1 mask of the ``fraction`` highest-scoring positions of each sequence.

    Args:
        score: per-position scores ``(batch, L)``.
        fraction: share of positions to keep, in (0, 1]; at least one is kept.

    Returns:
        The 0/1 mask ``(batch, L)`` in ``score``'s dtype (ties at the cut are all kept).
    """
    k = max(1, round(fraction * score.shape[-1]))
    threshold = score.topk(k, dim=-1).values[:, -1:]
    return (score >= threshold).to(score.dtype)


def make_mask(dist: MaskDistribution, config: MaskConfig, training: bool,
              blacklist: Tensor | None = None, mean: Tensor | None = None) -> MaskOutput:
    """Sample (training) or take the mean (inference), harden if asked, apply constraints.

    "top" mode is deterministic: it ranks the posterior mean of a frozen generator.

    Args:
        dist: the posterior per position, ``(batch, L)`` parameters.
        config: mask settings (``mode``, ``sample``, ``threshold``, ``promoter_keep``, ...).
        training: draw a reparameterised sample (if ``config.sample``); False: the mean.
        blacklist: positions never kept, ``(batch, L)`` bool; None: none.
        mean: ``dist.mean`` computed by the caller (the generator's :class:`BetaMean`); None:
            computed here.

    Returns:
        A :class:`MaskOutput`: mask and score ``(batch, L)``, the regulariser (a scalar).
    """
    mean = dist.mean if mean is None else mean
    if config.mode == "top":
        mask = top_fraction(mean.detach(), config.top_fraction)
    else:
        soft = Beta(dist.alpha, dist.beta).rsample() if training and config.sample else mean
        mask = straight_through(soft, config.threshold) if config.mode == "hard" else soft
    score = constrain(mean.detach(), config.promoter_keep, blacklist, config.promoter_over_blacklist)
    return MaskOutput(
        mask=constrain(mask, config.promoter_keep, blacklist, config.promoter_over_blacklist),
        score=score,
        kl=(kl_to_prior(dist, config) if config.kept_target is None
            else kept_fraction_kl(mask if config.mode == "hard" else mean, config, blacklist)),
        distribution=dist,
    )
