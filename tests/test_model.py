"""The Seq2Exp model end to end: size, determinism, gradients, hard/packed modes, RC."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.model.config import CONFIG_VERSION, Seq2ExpConfig, preset
from seq2exp_plugin.model.generator import Seq2ExpGenerator
from seq2exp_plugin.model.predictor import Seq2ExpPredictor, row_groups
from seq2exp_plugin.model.seq2exp import Seq2ExpModel, seq2exp_loss
from seq2exp_plugin.nn.bimamba import reverse_complement

TINY = {"d_model": 8, "n_layers": 1, "d_state": 4}


def tiny_config(mask=None, **fields) -> Seq2ExpConfig:
    data = {"generator": dict(TINY), "predictor": dict(TINY), "pool_width": 16}
    data["mask"] = {"promoter_keep": 8, **(mask or {})}
    data.update(fields)
    return Seq2ExpConfig.from_dict(data)


def batch(length=64, size=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = F.one_hot(torch.randint(0, 4, (size, length), generator=g), 4).transpose(1, 2).float()
    signals = torch.rand(size, 3, length, generator=g) * 3
    features = torch.randn(size, 9, generator=g)
    return seq, signals, features


def expected_parameter_count(d=128, layers=4, n=16, k=4, hidden=128, n_signals=3, n_features=9):
    e, r = 2 * d, math.ceil(d / 16)
    mamba = d * 2 * e + (e * k + e) + e * (r + 2 * n) + (r * e + e) + e * n + e + e * d
    bimamba = 2 * mamba - d * 2 * e - e * d  # in/out projections tied
    stack = layers * (bimamba + d) + d
    generator = (4 * d + d) + stack + (2 * d + 2)
    predictor = (4 * d + d) + (n_signals * d + d) + stack
    predictor += (d + n_features) * hidden + hidden + hidden * hidden + hidden + hidden + 1
    return generator + predictor


def test_default_configuration_has_about_1_11_million_parameters():
    model = Seq2ExpModel()
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameter_count()
    assert 1.10e6 < count < 1.12e6


def test_config_round_trip_and_presets():
    cfg = preset("hard-packed", generator={"n_layers": 2})
    assert Seq2ExpConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.mask.mode == "hard" and cfg.mask.packed and cfg.generator.n_layers == 2
    with pytest.raises(ValueError, match="model.generatr: unknown key"):
        Seq2ExpConfig.from_dict({"generatr": {}})
    with pytest.raises(ValueError, match="signal_weights has no value for the signal track 'hic'.*"
                                         "--set model.mask.signal_weights.hic="):
        Seq2ExpConfig(mask={"signal_weights": {"h3k27ac": 1.0, "dnase": 1.0}})


def test_signal_constants_follow_the_track_names_not_their_order():
    """Tracks in another order keep their own weights and constants (the signal Beta of the
    reordered channels is that of the default order), and two tracks of the default set with
    the rest of the constants unused is fine."""
    from seq2exp_plugin.model.mask import signal_beta

    signals = torch.rand(2, 3, 16) * 5
    default = preset("soft")
    shuffled = preset("soft", signals=["dnase", "hic", "h3k27ac"])
    assert shuffled.mask.signal_constants(shuffled.signals) == ((0.4, 0.2, 0.4), (0.2, 1.0, 1.5))
    ref = signal_beta(signals, default.mask, default.signals)
    got = signal_beta(signals[:, [1, 2, 0]], shuffled.mask, shuffled.signals)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b)
    two = preset("learned", signals=["dnase", "hic"])
    assert two.mask.signal_constants(two.signals) == ((0.4, 0.2), (0.2, 1.0))
    with pytest.raises(ValueError, match="no value for the signal track 'ctcf'"):
        preset("soft", signals=["dnase", "ctcf"])
    ctcf = preset("soft", signals=["dnase", "ctcf"],
                  mask={"signal_weights": {"ctcf": 0.1}, "signal_beta": {"ctcf": 2.0}})
    assert ctcf.mask.signal_constants(ctcf.signals) == ((0.4, 0.1), (0.2, 2.0))


def test_version_1_positional_signal_constants_read_as_they_were_written():
    """A configuration written before versions (checkpoints' model_params) held the constants as
    tuples in the order of its signals: they are read by position over those signals, so the
    model computes what it computed."""
    old = preset("soft").to_dict()
    del old["version"], old["contact_rate"], old["kept_gate_rate"]
    old["signals"] = ["dnase", "hic", "h3k27ac"]
    old["mask"]["signal_weights"], old["mask"]["signal_beta"] = [0.4, 0.4, 0.2], [1.5, 0.2, 1.0]
    cfg = Seq2ExpConfig.from_dict({"version": 1, **old})
    assert cfg.version == 1
    assert cfg.mask.signal_weights == {"dnase": 0.4, "hic": 0.4, "h3k27ac": 0.2}
    assert cfg.mask.signal_beta == {"dnase": 1.5, "hic": 0.2, "h3k27ac": 1.0}
    with pytest.raises(ValueError, match="expected a mapping"):  # version 2 takes names only
        Seq2ExpConfig.from_dict(old)


def test_eval_is_deterministic_and_training_samples():
    torch.manual_seed(0)
    model = Seq2ExpModel(tiny_config())
    seq, signals, features = batch()
    model.eval()
    with torch.no_grad():
        a, b = model(seq, signals, features), model(seq, signals, features)
    assert torch.equal(a.expression, b.expression) and torch.equal(a.mask.mask, b.mask.mask)
    assert torch.allclose(a.mask.mask, a.mask.score)  # inference mask = posterior mean
    model.train()
    c, d = model(seq, signals, features), model(seq, signals, features)
    assert not torch.equal(c.mask.mask, d.mask.mask)


def test_loss_gradients_reach_generator_and_predictor():
    torch.manual_seed(1)
    model = Seq2ExpModel(tiny_config())
    seq, signals, features = batch()
    out = model(seq, signals, features)
    parts = seq2exp_loss(out, torch.tensor([0.5, 1.5]), kl_weight=0.01)
    assert parts["loss"].item() == pytest.approx(parts["task"].item() + 0.01 * parts["kl"].item(), rel=1e-6)
    parts["task"].backward()  # the prediction loss alone must train the generator
    assert model.generator.head.weight.grad.abs().sum() > 0
    assert model.predictor.seq_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("packed", [False, True])
def test_hard_mask_straight_through_reaches_the_generator(packed):
    torch.manual_seed(2)
    cfg = tiny_config(mask={"mode": "hard", "signal_scale": 1.0, "prior_alpha": 0.1,
                            "prior_beta": 0.1222, "packed": packed})
    model = Seq2ExpModel(cfg)
    seq, signals, features = batch(length=96)
    out = model(seq, signals, features)
    assert set(out.mask.mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert 0 < out.mask.kept_fraction < 1
    seq2exp_loss(out, torch.zeros(2), kl_weight=0.0)["loss"].backward()
    assert model.generator.head.weight.grad.abs().sum() > 0


def test_packed_predictor_sees_only_kept_positions():
    torch.manual_seed(3)
    cfg = tiny_config(mask={"mode": "hard", "signal_scale": 1.0, "prior_alpha": 0.1,
                            "prior_beta": 0.1222, "packed": True})
    predictor = Seq2ExpPredictor(cfg).eval()
    seq, signals, features = batch(length=80, size=1)
    mask = torch.zeros(1, 80)
    mask[0, 30:50] = 1.0
    mask[0, 5] = 1.0
    with torch.no_grad():
        base = predictor(seq, signals, features, mask)
        changed = seq.clone()
        changed[:, :, 60:] = reverse_complement(changed)[:, :, 60:]  # dropped positions
        assert torch.equal(predictor(changed, signals, features, mask), base)
        moved = torch.zeros_like(mask)
        moved[0, 30:50] = 1.0
        moved[0, 6] = 1.0  # same bases kept, one at another distance
        moved_seq = seq.clone()
        moved_seq[:, :, 6] = seq[:, :, 5]
        assert not torch.allclose(predictor(moved_seq, signals, features, moved), base)


@pytest.mark.parametrize("budget", [None, 0, 40])
def test_packed_batch_predicts_each_gene_as_alone(budget):
    """A packed batch (rows of 17-41 kept positions, one call, or one per row, or groups up to
    40 positions) gives each gene the prediction and the mask gradient it gets alone."""
    torch.manual_seed(7)
    cfg = tiny_config(mask={"mode": "hard", "signal_scale": 1.0, "prior_alpha": 0.1,
                            "prior_beta": 0.1222, "packed": True}, kept_pool=True)
    predictor = Seq2ExpPredictor(cfg).double().eval()
    predictor.cpu_packed_positions = budget
    seq, signals, features = (t.double() for t in batch(length=80, size=3))
    mask = torch.zeros(3, 80, dtype=torch.float64)
    mask[:, 36:44] = 1.0
    mask[0, 2:30] = 1.0
    mask[1, 60:69] = 1.0
    mask[2, 50:53] = 1.0
    mask.requires_grad_(True)
    together = predictor(seq, signals, features, mask)
    together.sum().backward()
    for b in range(3):
        alone_mask = mask[b:b + 1].detach().clone().requires_grad_(True)
        alone = predictor(seq[b:b + 1], signals[b:b + 1], features[b:b + 1], alone_mask)
        alone.sum().backward()
        torch.testing.assert_close(together[b], alone[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mask.grad[b], alone_mask.grad[0], rtol=1e-10, atol=1e-12)
    assert mask.grad[:, 36:44].abs().sum() > 0


def test_row_groups_fill_a_budget_of_positions():
    assert row_groups([5, 7, 3], None) == [slice(0, 3)]
    assert row_groups([5, 7, 3], 0) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert row_groups([5, 7, 3, 9, 1], 12) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert row_groups([20, 1], 12) == [slice(0, 1), slice(1, 2)]  # a long row runs alone


def test_generator_and_predictor_work_alone():
    torch.manual_seed(4)
    cfg = tiny_config()
    generator, predictor = Seq2ExpGenerator(cfg).eval(), Seq2ExpPredictor(cfg).eval()
    seq, signals, features = batch()
    with torch.no_grad():
        mask = generator(seq, signals)
        assert mask.score.shape == (2, 64) and mask.distribution.alpha.shape == (2, 64)
        peaks = (signals[:, 1] > 1.5).float()  # e.g. a peak mask
        assert predictor(seq, signals, features, peaks).shape == (2,)
        assert predictor(seq, signals, features).shape == (2,)  # no mask: seq + signals baseline


def test_rc_equivariant_model_is_strand_symmetric():
    torch.manual_seed(5)
    rc = dict(TINY, rc_equivariant=True)
    model = Seq2ExpModel(tiny_config(generator=rc, predictor=rc)).eval()
    seq, signals, features = batch(length=64)
    with torch.no_grad():
        out = model(seq, signals, features)
        out_rc = model(reverse_complement(seq), signals.flip(-1), features)
    assert torch.allclose(out_rc.mask.score, out.mask.score.flip(-1), atol=1e-6)
    assert torch.allclose(out_rc.expression, out.expression, atol=1e-5)


def test_blacklist_and_promoter_in_the_full_model():
    torch.manual_seed(6)
    model = Seq2ExpModel(tiny_config()).eval()
    seq, signals, features = batch()
    blacklist = torch.zeros(2, 64, dtype=torch.bool)
    blacklist[:, :10] = True
    with torch.no_grad():
        out = model(seq, signals, features, blacklist)
    assert (out.mask.mask[:, :10] == 0).all()
    assert (out.mask.mask[:, 28:36] == 1).all()


def test_mask_token_makes_a_soft_mask_visible_to_the_pre_norm_stack():
    # The first block normalises each position: m * E(x) and E(x) look the same to its mixer.
    # With the mask token, masked-out positions move towards e_mask instead.
    torch.manual_seed(0)
    seq = F.one_hot(torch.randint(0, 4, (2, 300)), 4).float().transpose(1, 2)
    signals = torch.rand(2, 3, 300)
    normed = {}
    for token in (False, True):
        predictor = Seq2ExpPredictor(Seq2ExpConfig(mask={"mask_token": token}))
        if token:
            with torch.no_grad():
                predictor.mask_token.normal_()
            assert torch.equal(predictor.embed(seq, signals, torch.ones(2, 300)),
                               predictor.embed(seq, signals))  # m = 1 keeps E(x) as it is
        norm = predictor.backbone.layers[0].norm
        normed[token] = [norm(predictor.embed(seq, signals, torch.full((2, 300), m)))
                         for m in (1.0, 0.1)]
    def gap(pair):
        return ((pair[0] - pair[1]).abs().max() / pair[0].abs().max()).item()

    assert gap(normed[False]) < 0.01  # the paper's mask: (nearly) invisible after the norm
    assert gap(normed[True]) > 0.5


def test_paper_presets_keep_the_paper_generator():
    """The options beyond the paper default to the paper: soft/hard presets are unchanged."""
    for name in ("soft", "hard", "hard-packed", "public-soft", "public-hard"):
        cfg = preset(name)
        assert (cfg.mask.sequence_term, cfg.mask.kept_target, cfg.generator_signal_transform) == (
            "additive", None, None)
    assert not preset("soft").generator_signals and not preset("hard").generator_signals
    torch.manual_seed(5)
    generator = Seq2ExpGenerator(tiny_config())
    assert generator.signal_embedding is None
    assert generator.head.weight.abs().sum() > 0  # the default (random) initialisation
    learned = preset("learned").mask
    assert learned.sequence_term == "multiplicative" and learned.kept_target is not None
    assert learned.packed and preset("learned").kept_pool


def test_learned_generator_starts_at_the_signal_posterior_and_learns():
    torch.manual_seed(6)
    cfg = tiny_config(mask={"sequence_term": "multiplicative", "kept_target": 0.1, "kl_weight": 1.0,
                            "mask_token": True},
                      generator_signals=True, generator_signal_transform="relative")
    model = Seq2ExpModel(cfg)
    seq, signals, features = batch()
    model.eval()
    with torch.no_grad():
        dist = model.generator.distribution(seq, signals)
    assert torch.equal(dist.alpha, dist.alpha2) and torch.equal(dist.beta, dist.beta2)  # factors 1
    model.train()
    out = model(seq, signals, features)
    seq2exp_loss(out, torch.tensor([0.5, 1.5]), kl_weight=0.0)["loss"].backward()
    assert model.generator.head.weight.grad.abs().sum() > 0
    # the generator reads the signals: changing a track changes its own term
    with torch.no_grad():
        model.generator.head.weight.normal_()
        model.eval()
        a = model.generator.distribution(seq, signals).sequence_mean
        b = model.generator.distribution(seq, signals * torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1)).sequence_mean
    assert not torch.allclose(a, b)


def test_contact_exponent_scales_the_odds_by_relative_contact():
    torch.manual_seed(7)
    cfg = tiny_config(mask={"sequence_term": "multiplicative", "kept_target": 0.1, "kl_weight": 1.0},
                      contact_exponent="hic")
    model = Seq2ExpModel(cfg)
    seq, signals, features = batch()
    with torch.no_grad():
        start = model.generator.distribution(seq, signals)
        assert torch.equal(start.alpha, start.alpha2)  # gamma = 0: the signal posterior
        model.generator.contact_gamma_raw.fill_(1.5 / cfg.contact_rate)
        dist = model.generator.distribution(seq, signals)
    contact = signals[:, 2].double()
    relative = (contact + 1e-6) / (contact.mean(-1, keepdim=True) + 1e-6)
    odds = (dist.alpha / dist.beta).double()
    torch.testing.assert_close(odds, (start.alpha / start.beta).double() * relative ** 1.5, rtol=1e-5, atol=0)
    model.train()
    seq2exp_loss(model(seq, signals, features), torch.tensor([0.5, 1.5]), kl_weight=1.0)["loss"].backward()
    assert model.generator.contact_gamma_raw.grad is not None and model.generator.contact_gamma_raw.grad != 0
    with pytest.raises(ValueError, match="contact_exponent 'x' is not one of the signals"):
        tiny_config(mask={"sequence_term": "multiplicative"}, contact_exponent="x")
    with pytest.raises(ValueError, match="needs mask.sequence_term: multiplicative"):
        tiny_config(contact_exponent="hic")


@pytest.mark.parametrize("packed", [False, True])
def test_kept_pool_head_reads_the_mask_weighted_sum_of_the_window(packed):
    """The head's input is [centre mean, gate * sum_l m_l h_l / pool_width, features], recomputed
    here from the predictor's own modules; positions the mask drops stay out of the kept sum."""
    torch.manual_seed(8)
    mask_cfg = {"mode": "hard", "signal_scale": 1.0, "prior_alpha": 0.1, "prior_beta": 0.1222,
                "packed": packed}
    predictor = Seq2ExpPredictor(tiny_config(mask=mask_cfg, kept_pool=True)).eval()
    assert predictor.kept_gate.item() == 0.0  # closed at the start of training
    with torch.no_grad():
        predictor.kept_gate.fill_(0.7 / predictor.config.kept_gate_rate)
    seq, signals, features = batch(length=80, size=2)
    mask = torch.zeros(2, 80)
    mask[:, 32:48] = 1.0  # the central 16 bp pooled
    mask[0, 5:9] = 1.0
    mask[1, 60:70] = 1.0
    with torch.no_grad():
        got = predictor(seq, signals, features, mask)
        for b in range(2):
            kept = torch.nonzero(mask[b]).squeeze(-1) if packed else torch.arange(80)
            hidden = predictor.embed(seq[b:b + 1, :, kept], signals[b:b + 1, :, kept], mask[b:b + 1, kept],
                                     positions=kept)
            if packed:
                hidden = hidden + predictor.position(kept - 79 / 2)
            hidden = predictor.backbone(hidden)[0]
            centre = (kept >= 32) & (kept < 48)
            kept_sum = (hidden * mask[b, kept, None]).sum(0) / 16
            assert not torch.allclose(kept_sum, hidden[centre].mean(0))
            expected = predictor.head(torch.cat([hidden[centre].mean(0), 0.7 * kept_sum, features[b]]))[0]
            assert float(got[b]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    # the generator's gradient reaches every kept position through the sum, not only the centre
    model = Seq2ExpModel(tiny_config(mask=mask_cfg, kept_pool=True))
    with torch.no_grad():
        model.predictor.kept_gate.fill_(1 / model.predictor.config.kept_gate_rate)
    model.train()
    seq2exp_loss(model(seq, signals, features), torch.tensor([0.5, 1.5]), kl_weight=0.0)["loss"].backward()
    assert model.generator.head.weight.grad.abs().sum() > 0


def test_kept_pool_gate_starts_closed_and_old_checkpoints_load_it_open():
    """A new model's head reads the centre only; a version-1 state dict written before the gate
    existed loads with the gate at 1, so old checkpoints predict as they did; a current-version
    state dict without the gate is refused, not patched."""
    torch.manual_seed(10)
    config = tiny_config(kept_pool=True)
    predictor = Seq2ExpPredictor(config).eval()
    seq, signals, features = batch(length=64)
    with torch.no_grad():
        centre = predictor.encode(seq, signals)[:, 24:40].mean(1)
        zeros = torch.zeros_like(centre)
        torch.testing.assert_close(predictor(seq, signals, features),
                                   predictor.head(torch.cat([centre, zeros, features], -1))[:, 0])
        old = {k: v for k, v in predictor.state_dict().items() if k != "kept_gate"}
        with pytest.raises(RuntimeError, match='Missing key.*"kept_gate"'):
            Seq2ExpPredictor(config).load_state_dict(old)
        reloaded = Seq2ExpPredictor(dataclasses.replace(config, version=1)).eval()
        reloaded.load_state_dict(old)
        assert reloaded.config.kept_gate_rate * reloaded.kept_gate.item() == pytest.approx(1.0)
        predictor.kept_gate.fill_(1 / predictor.config.kept_gate_rate)
        torch.testing.assert_close(reloaded(seq, signals, features), predictor(seq, signals, features))


def test_rates_multiplying_parameters_are_in_the_configuration():
    """The contact exponent's and the kept gate's rates are stored with the model: a changed rate
    is a changed configuration (the code's defaults do not rewrite what a checkpoint computes)."""
    cfg = tiny_config(mask={"sequence_term": "multiplicative"}, contact_exponent="hic",
                      kept_pool=True, contact_rate=5.0, kept_gate_rate=2.0)
    assert Seq2ExpConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["version"] == CONFIG_VERSION
    model = Seq2ExpModel(cfg)
    with torch.no_grad():
        model.generator.contact_gamma_raw.fill_(0.3)
    assert model.generator.contact_gamma.item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="contact_rate and kept_gate_rate must be > 0"):
        tiny_config(kept_gate_rate=0.0)
    with pytest.raises(ValueError, match="reads versions 1 to"):
        tiny_config(version=CONFIG_VERSION + 1)


def test_kept_pool_without_a_mask_reads_the_window_mean_and_stays_strand_symmetric():
    torch.manual_seed(9)
    predictor = Seq2ExpPredictor(tiny_config(kept_pool=True)).eval()
    seq, signals, features = batch(length=64)
    with torch.no_grad():
        predictor.kept_gate.fill_(1 / predictor.config.kept_gate_rate)
        hidden = predictor.encode(seq, signals)
        expected = predictor.head(torch.cat([hidden[:, 24:40].mean(1), hidden.mean(1), features], -1))[:, 0]
        torch.testing.assert_close(predictor(seq, signals, features), expected, rtol=1e-5, atol=1e-6)
    rc = dict(TINY, rc_equivariant=True)
    model = Seq2ExpModel(tiny_config(generator=rc, predictor=rc, kept_pool=True)).eval()
    with torch.no_grad():
        out = model(seq, signals, features)
        out_rc = model(reverse_complement(seq), signals.flip(-1), features)
    assert torch.allclose(out_rc.expression, out.expression, atol=1e-5)


def test_promoter_path_adds_the_fitted_ridge_to_a_head_that_starts_at_zero():
    """With ``promoter_linear`` the untrained predictor is exactly the linear map of the promoter
    design (log1p of each signal's mean over the central width, then the features); the path
    takes no gradient; without the field (the paper, older checkpoints) there is no path."""
    torch.manual_seed(11)
    config = tiny_config(promoter_linear=8)
    predictor = Seq2ExpPredictor(config).eval()
    assert Seq2ExpPredictor(tiny_config()).promoter_linear is None
    assert Seq2ExpPredictor(config, use_signals=False).promoter_linear is None
    assert not any(p.requires_grad for p in predictor.promoter_linear.parameters())
    seq, signals, features = batch(length=64, size=3)
    weight = torch.randn(1, 3 + 9)
    with torch.no_grad():
        predictor.promoter_linear.weight.copy_(weight)
        predictor.promoter_linear.bias.fill_(0.5)
        by_hand = torch.cat([torch.log1p(signals[..., 28:36].mean(-1)), features], 1) @ weight[0] + 0.5
        torch.testing.assert_close(predictor(seq, signals, features), by_hand)
    predictor.train()
    predictor(seq, signals, features).sum().backward()
    assert predictor.promoter_linear.weight.grad is None
    assert predictor.head[-1].weight.grad.abs().sum() > 0  # the head learns the residual
    with pytest.raises(ValueError, match="promoter_linear must be a width >= 1"):
        tiny_config(promoter_linear=0)
