"""The mask distribution's math against independent computations (paper eq. 3, 6-9)."""

import math

import pytest
import torch
from torch.distributions import Beta

from seq2exp_plugin.model.config import DEFAULT_SIGNALS, MaskConfig
from seq2exp_plugin.model.mask import (
    constrain,
    kept_fraction_kl,
    kl_to_prior,
    make_mask,
    posterior,
    sequence_beta,
    signal_beta,
    straight_through,
)


def _log_beta_pdf(x, a, b):
    return (a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - (
        math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    )


@pytest.mark.parametrize("a1,b1,a2,b2", [(2.5, 1.3, 0.7, 4.0), (1.2, 1.1, 3.0, 9.0), (5.0, 2.0, 1.5, 1.5)])
def test_paper_posterior_is_the_normalised_product_of_densities(a1, b1, a2, b2):
    n = 200_000
    xs = [(i + 0.5) / n for i in range(n)]  # midpoint rule on (0, 1)
    product = [math.exp(_log_beta_pdf(x, a1, b1) + _log_beta_pdf(x, a2, b2)) for x in xs]
    z = sum(product) / n
    dist = posterior(*(torch.tensor([v], dtype=torch.float64) for v in (a1, b1, a2, b2)), MaskConfig())
    a, b = dist.alpha.item(), dist.beta.item()
    assert (a, b) == pytest.approx((a1 + a2 - 1, b1 + b2 - 1))
    for x in (0.05, 0.3, 0.5, 0.77, 0.95):
        numeric = math.exp(_log_beta_pdf(x, a1, b1) + _log_beta_pdf(x, a2, b2)) / z
        assert numeric == pytest.approx(math.exp(_log_beta_pdf(x, a, b)), rel=1e-4)


def test_sum_posterior_drops_the_minus_one():
    cfg = MaskConfig(posterior="sum", b_min=0.0)
    dist = posterior(torch.tensor([0.3]), torch.tensor([0.2]), torch.tensor([0.0]), torch.tensor([0.1]), cfg)
    assert dist.alpha.item() == pytest.approx(0.3) and dist.beta.item() == pytest.approx(0.3)


def test_paper_posterior_is_valid_by_construction_for_extreme_inputs():
    cfg = MaskConfig()  # paper posterior, b_min = 1
    logits = torch.tensor([[[-500.0, -500.0], [0.0, 0.0], [80.0, -80.0]]])
    alpha1, beta1 = sequence_beta(logits, cfg)
    signals = torch.tensor([[[0.0, -3.0, 1e4], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])  # (1, 3, 3)
    alpha2, beta2 = signal_beta(signals, cfg, DEFAULT_SIGNALS)
    dist = posterior(alpha1, beta1, alpha2, beta2, cfg)
    assert (dist.alpha > 0).all() and (dist.beta > 0).all()
    with pytest.raises(ValueError, match="b_min >= 1"):
        MaskConfig(b_min=0.0)


def test_signal_beta_is_the_weighted_mix():
    cfg = MaskConfig()  # w = (0.4, 0.4, 0.2), c = (1.5, 0.2, 1.0), k = 10, b_min = 1
    signals = torch.tensor([[[2.0, 0.0], [1.0, 4.0], [0.5, -1.0]]])
    alpha2, beta2 = signal_beta(signals, cfg, DEFAULT_SIGNALS)
    expected_alpha = [10 * (0.4 * 3.0 + 0.4 * 2.0 + 0.2 * 1.5), 10 * (0.4 * 1.0 + 0.4 * 5.0 + 0.2 * 1.0)]
    assert alpha2[0].tolist() == pytest.approx(expected_alpha)
    assert beta2[0].tolist() == pytest.approx([10 * (0.4 * 2.5 + 0.4 * 1.2 + 0.2 * 2.0)] * 2)
    with pytest.raises(ValueError, match="2 signal tracks given for the 3 named"):
        signal_beta(signals[:, :2], cfg, DEFAULT_SIGNALS)


@pytest.mark.parametrize("prior", [(10.0, 90.0), (0.1, 0.1222), (1.0, 9.0)])
def test_kl_closed_form_matches_monte_carlo(prior):
    torch.manual_seed(0)
    cfg = MaskConfig(prior_alpha=prior[0], prior_beta=prior[1])
    alpha = torch.tensor([2.0, 11.0, 0.8], dtype=torch.float64)
    beta = torch.tensor([5.0, 3.0, 1.7], dtype=torch.float64)
    dist = posterior(alpha, beta, torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), cfg)
    closed = kl_to_prior(dist, cfg)
    q = Beta(dist.alpha, dist.beta)
    r = Beta(torch.tensor(prior[0], dtype=torch.float64), torch.tensor(prior[1], dtype=torch.float64))
    samples = q.sample((400_000,)).clamp(1e-12, 1 - 1e-12)
    log_ratio = q.log_prob(samples) - r.log_prob(samples)
    monte_carlo = log_ratio.mean()
    stderr = log_ratio.mean(1).std() / math.sqrt(samples.shape[0])
    assert abs(closed.item() - monte_carlo.item()) < 5 * stderr.item() + 1e-3


def test_reparameterised_sample_gradient_is_the_gradient_of_the_mean():
    """E[d m / d alpha] over rsamples equals d E[m] / d alpha = beta / (alpha + beta)^2."""
    torch.manual_seed(1)
    cfg = MaskConfig()
    a1 = torch.full((200_000,), 3.0, dtype=torch.float64, requires_grad=True)
    b1 = torch.full((200_000,), 4.0, dtype=torch.float64, requires_grad=True)
    a2 = torch.ones_like(a1)  # posterior = Beta(a1, b1)
    dist = posterior(a1, b1, a2, a2, cfg)
    out = make_mask(dist, MaskConfig(promoter_keep=0), training=True)
    out.mask.sum().backward()
    assert a1.grad.mean().item() == pytest.approx(4.0 / 49.0, rel=0.03)
    assert b1.grad.mean().item() == pytest.approx(-3.0 / 49.0, rel=0.03)


def test_straight_through_is_hard_forward_identity_backward():
    soft = torch.tensor([0.1, 0.5, 0.49, 0.9], requires_grad=True)
    hard = straight_through(soft, 0.5)
    assert hard.tolist() == [0.0, 1.0, 0.0, 1.0]
    (hard * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert soft.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_constraints_keep_the_promoter_and_drop_the_blacklist():
    mask = torch.full((2, 10), 0.3, requires_grad=True)
    blacklist = torch.zeros(2, 10, dtype=torch.bool)
    blacklist[0, 0] = blacklist[1, 5] = True  # (1, 5) is inside the promoter: blacklist wins
    out = constrain(mask, promoter_keep=4, blacklist=blacklist)
    assert out[0].tolist() == pytest.approx([0, 0.3, 0.3, 1, 1, 1, 1, 0.3, 0.3, 0.3])
    assert out[1, 3:7].tolist() == [1, 1, 0, 1]
    out.sum().backward()
    assert mask.grad[0].tolist() == [0, 1, 1, 0, 0, 0, 0, 1, 1, 1]


def test_promoter_over_blacklist_keeps_the_whole_promoter():
    """The authors' order: the blacklist is removed first, then the promoter is set to 1."""
    mask = torch.full((2, 10), 0.3, requires_grad=True)
    blacklist = torch.zeros(2, 10, dtype=torch.bool)
    blacklist[0, 0] = blacklist[1, 5] = True
    out = constrain(mask, promoter_keep=4, blacklist=blacklist, promoter_over_blacklist=True)
    assert out[0].tolist() == pytest.approx([0, 0.3, 0.3, 1, 1, 1, 1, 0.3, 0.3, 0.3])
    assert out[1].tolist() == pytest.approx([0.3, 0.3, 0.3, 1, 1, 1, 1, 0.3, 0.3, 0.3])
    out.sum().backward()
    assert mask.grad[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("promoter_wins", [False, True])
def test_make_mask_applies_the_configured_order(promoter_wins):
    cfg = MaskConfig(promoter_keep=2, promoter_over_blacklist=promoter_wins)
    alpha = torch.full((1, 6), 3.0)
    dist = posterior(alpha, alpha, torch.ones_like(alpha), torch.ones_like(alpha), cfg)
    blacklist = torch.tensor([[False, False, True, False, False, False]])  # centre = (2, 3)
    out = make_mask(dist, cfg, training=False, blacklist=blacklist)
    expected = 1.0 if promoter_wins else 0.0
    assert float(out.mask[0, 2]) == float(out.score[0, 2]) == expected
    assert float(out.mask[0, 3]) == 1.0


def test_hard_mask_at_inference_thresholds_the_mean():
    cfg = MaskConfig(mode="hard", signal_scale=1.0, prior_alpha=0.1, prior_beta=0.1222, promoter_keep=0)
    alpha = torch.tensor([[3.0, 1.0, 2.0]])
    beta = torch.tensor([[1.0, 3.0, 2.0]])
    dist = posterior(alpha, beta, torch.ones_like(alpha), torch.ones_like(beta), cfg)
    out = make_mask(dist, cfg, training=False)
    assert out.mask.tolist() == [[1.0, 0.0, 1.0]]
    assert out.score[0].tolist() == pytest.approx([0.75, 0.25, 0.5])


def test_top_mode_keeps_the_highest_posterior_means():
    cfg = MaskConfig(mode="top", top_fraction=0.25, promoter_keep=0)
    alpha = torch.tensor([[1.0, 9.0, 2.0, 5.0, 3.0, 1.5, 8.0, 2.5]])
    dist = posterior(alpha, torch.full_like(alpha, 5.0), torch.ones_like(alpha), torch.ones_like(alpha), cfg)
    for training in (True, False):  # deterministic: a frozen generator ranks positions
        assert make_mask(dist, cfg, training=training).mask.tolist() == [[0, 1, 0, 0, 0, 0, 1, 0]]


# --------------------------------------------------- options beyond the paper (MaskConfig)
def test_multiplicative_term_scales_the_signal_beta():
    cfg = MaskConfig(sequence_term="multiplicative")
    logits = torch.tensor([[[0.0, 0.0], [2.0, -3.0], [-10.0, 5.0]]], dtype=torch.float64)
    alpha1, beta1 = sequence_beta(logits, cfg)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    want = [(softplus(a) / math.log(2), softplus(b) / math.log(2)) for a, b in logits[0].tolist()]
    assert alpha1[0].tolist() == pytest.approx([w[0] for w in want])
    assert beta1[0].tolist() == pytest.approx([w[1] for w in want])
    assert (alpha1[0, 0].item(), beta1[0, 0].item()) == pytest.approx((1.0, 1.0))  # h = 0: factors 1
    alpha2, beta2 = torch.tensor([[20.0, 30.0, 12.0]]), torch.tensor([[18.8, 18.8, 18.8]])
    dist = posterior(alpha1.float(), beta1.float(), alpha2, beta2, cfg)
    assert dist.alpha[0].tolist() == pytest.approx([a * w[0] for a, w in zip([20.0, 30.0, 12.0], want)], rel=1e-5)
    assert dist.beta[0].tolist() == pytest.approx([18.8 * w[1] for w in want], rel=1e-5)
    # the two terms the metrics rank by
    assert dist.signal_mean[0].tolist() == pytest.approx([a / (a + 18.8) for a in (20.0, 30.0, 12.0)])
    assert dist.sequence_mean[0].tolist() == pytest.approx([w[0] / (w[0] + w[1]) for w in want], rel=1e-5)
    with pytest.raises(ValueError, match="sequence_term"):
        MaskConfig(sequence_term="product")


def _bernoulli_kl(q, rho):
    return q * math.log(q / rho) + (1 - q) * math.log((1 - q) / (1 - rho))


def test_kept_fraction_budget_hand_computed():
    cfg = MaskConfig(kept_target=0.2, promoter_keep=2)
    mean = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.3, 0.7], [0.2, 0.0, 0.9, 0.9, 0.4, 0.8]],
                        dtype=torch.float64, requires_grad=True)
    blacklist = torch.zeros(2, 6, dtype=torch.bool)
    blacklist[1, 5] = True
    # free: columns 0, 1, 4, 5 (2-3 are the promoter), minus (1, 5): 7 values
    q = (0.1 + 0.9 + 0.3 + 0.7 + 0.2 + 0.0 + 0.4) / 7
    kl = kept_fraction_kl(mean, cfg, blacklist)
    assert kl.item() == pytest.approx(_bernoulli_kl(q, 0.2))
    kl.backward()
    dq = math.log(q / 0.2) - math.log((1 - q) / 0.8)  # d KL / d q
    free = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 0]], dtype=torch.float64)
    assert torch.allclose(mean.grad, free * dq / 7)
    # two-sided: keeping too little costs too
    assert kept_fraction_kl(torch.full((1, 6), 0.1), cfg).item() == pytest.approx(_bernoulli_kl(0.1, 0.2))
    assert kept_fraction_kl(torch.full((1, 6), 0.2), cfg).item() == pytest.approx(0.0, abs=1e-7)
    # the regulariser make_mask reports
    dist = posterior(torch.ones(1, 6), torch.ones(1, 6), torch.full((1, 6), 3.0), torch.ones(1, 6), cfg)
    out = make_mask(dist, cfg, training=False)
    assert out.kl.item() == pytest.approx(_bernoulli_kl(0.75, 0.2), rel=1e-5)
    with pytest.raises(ValueError, match="kept_target"):
        MaskConfig(kept_target=1.0)
