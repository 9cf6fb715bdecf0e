"""Presets are what they say: the paper presets are pinned bit for bit, the public presets have
the structure of the authors' public runs (AIRS OpenBio/Seq2Exp, Seq2Exp.sh)."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.model.config import Seq2ExpConfig, StackConfig, preset
from seq2exp_plugin.model.mask import central_slice
from seq2exp_plugin.model.seq2exp import Seq2ExpModel, seq2exp_loss
from seq2exp_plugin.nn.bimamba import BiMambaStack

TINY = {"d_model": 8, "n_layers": 2, "d_state": 4}
LENGTH, CENTRE = 64, 16


def tiny(name: str, **overrides) -> Seq2ExpModel:
    torch.manual_seed(0)
    if name == "public-hard":
        overrides.setdefault("position_table", LENGTH)
    return Seq2ExpModel(preset(name, generator=TINY, predictor=TINY, pool_width=CENTRE,
                               mask={"promoter_keep": CENTRE}, **overrides))


def inputs(batch: int = 2):
    g = torch.Generator().manual_seed(1)
    seq = torch.eye(4)[torch.randint(0, 4, (batch, LENGTH), generator=g)].transpose(1, 2)
    signals = torch.rand(batch, 3, LENGTH, generator=g) * 3
    features = torch.randn(batch, 9, generator=g)
    blacklist = torch.zeros(batch, LENGTH, dtype=torch.bool)
    blacklist[0, 5:9] = True
    blacklist[-1, 30:34] = True  # inside the central 16 bp (24..40)
    return seq, signals, features, blacklist


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a shared parameter counts once


# --------------------------------------------------------------------------- paper presets
#: Recorded before the public presets were added (tiny models, seed 0, the inputs above).
PINNED = {
    "soft": dict(n_params=23347, sha256="10c4e68283220f01a9f0a156a01af78885dafe4aaab24cd94c09cc81be577a1b",
                 eval_expression=[0.08425582945346832, 0.10930408537387848], eval_kl=51.0989990234375,
                 eval_score_sum=80.28895568847656, train_expression=[0.08425668627023697, 0.10930807888507843],
                 train_kl=51.0989990234375, train_mask_sum=79.34832000732422, grad_abs_sum=32.92073437572029),
    "hard": dict(n_params=23347, sha256="10c4e68283220f01a9f0a156a01af78885dafe4aaab24cd94c09cc81be577a1b",
                 eval_expression=[0.08425835520029068, 0.10930922627449036], eval_kl=1.705739140510559,
                 eval_score_sum=83.96128845214844, train_expression=[0.08426356315612793, 0.10921600461006165],
                 train_kl=1.705739140510559, train_mask_sum=94.0, grad_abs_sum=32.70104859447349),
    "hard-packed": dict(n_params=23611, sha256="0f7b705646c74ccd4bb480961f183c64eb3d6955159100df0964eff2433c1714",
                        eval_expression=[-0.052814215421676636, -0.027898259460926056], eval_kl=1.705739140510559,
                        eval_score_sum=83.96128845214844, train_expression=[-0.052790068089962006, -0.02793392911553383],
                        train_kl=1.705739140510559, train_mask_sum=94.0, grad_abs_sum=36.532256237105635),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_paper_presets_are_unchanged(name):
    """Same weights bit for bit (hash of the state dict), same outputs and gradients (to 1e-5:
    the scan kernels may change summation order)."""
    pinned = PINNED[name]
    model = tiny(name)
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().numpy().tobytes())
    assert n_params(model) == pinned["n_params"]
    assert digest.hexdigest() == pinned["sha256"]
    seq, signals, features, blacklist = inputs()
    model.eval()
    with torch.no_grad():
        ev = model(seq, signals, features, blacklist)
    model.train()
    torch.manual_seed(2)
    tr = model(seq, signals, features, blacklist)
    seq2exp_loss(tr, torch.tensor([0.5, -0.2]), 0.01)["loss"].backward()
    got = dict(eval_expression=ev.expression.tolist(), eval_kl=float(ev.mask.kl),
               eval_score_sum=float(ev.mask.score.sum()), train_expression=tr.expression.detach().tolist(),
               train_kl=float(tr.mask.kl.detach()), train_mask_sum=float(tr.mask.mask.detach().sum()),
               grad_abs_sum=sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None))
    for key, value in got.items():
        assert value == pytest.approx(pinned[key], rel=1e-5, abs=1e-7), key


def test_full_size_parameter_counts():
    for name, count in (("soft", 1_114_883), ("hard", 1_114_883), ("hard-packed", 1_119_107),
                        ("public-soft", 1_114_243), ("learned", 1_136_018)):
        assert n_params(Seq2ExpModel(preset(name))) == count, name


# -------------------------------------------------------------------------- public presets
def _caduceus_initialised(model: Seq2ExpModel) -> None:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None:
            if name.endswith("dt_proj"):
                assert module.bias.abs().min() > 0, name  # the step-size bias keeps its init
            else:
                assert torch.all(module.bias == 0), name


def test_public_soft_structure():
    model = tiny("public-soft")
    cfg = model.config
    gen, pred = model.generator, model.predictor
    assert pred.seq_embedding is gen.embedding  # one DNA embedding
    assert pred.backbone is not gen.backbone and gen.signal_embedding is None
    assert gen.positions is None and pred.positions is None and pred.position is None
    assert n_params(model) == n_params(tiny("soft")) - (4 * 8 + 8)
    assert cfg.mask.posterior == "sum" and cfg.mask.promoter_over_blacklist and cfg.mask.b_min == 1.0
    assert (cfg.mask.prior_alpha, cfg.mask.prior_beta, cfg.mask.signal_scale) == (10.0, 90.0, 10.0)
    _caduceus_initialised(model)
    # the generator reads the DNA alone: the signals move alpha2, not alpha1
    seq, signals, _, _ = inputs()
    one, two = gen.distribution(seq, signals), gen.distribution(seq, 2 * signals)
    assert torch.equal(one.alpha1, two.alpha1) and not torch.equal(one.alpha2, two.alpha2)


def test_public_hard_structure():
    model = tiny("public-hard")
    cfg = model.config
    gen, pred = model.generator, model.predictor
    assert pred.backbone is gen.backbone  # one stack
    assert pred.seq_embedding is gen.embedding and pred.signal_embedding is gen.signal_embedding
    assert pred.positions is gen.positions and gen.positions.weight.shape == (LENGTH, 8)
    assert pred.position is None  # no sinusoidal offsets: the table gives positions
    stack = sum(p.numel() for p in gen.backbone.parameters())
    embeddings = (4 * 8 + 8) + (3 * 8 + 8) + LENGTH * 8
    heads = (8 * 2 + 2) + (17 * 128 + 128) + (128 * 128 + 128) + (128 + 1)  # mask head, MLP
    assert n_params(model) == stack + embeddings + heads
    m = cfg.mask
    assert (m.mode, m.posterior, m.b_min, m.signal_scale, m.packed) == ("hard", "sum", 0.0, 1.0, True)
    assert m.prior_alpha == 0.1 and m.prior_beta == 0.1 * 0.55 / 0.45 and m.promoter_over_blacklist
    _caduceus_initialised(model)
    # the generator reads signals and positions: both move alpha1
    seq, signals, _, _ = inputs()
    base = gen.distribution(seq, signals).alpha1
    assert not torch.allclose(base, gen.distribution(seq, 2 * signals).alpha1)
    with torch.no_grad():
        gen.positions.weight[10] += 1.0
    assert not torch.allclose(base, gen.distribution(seq, signals).alpha1)


def test_public_hard_full_size_parameter_count():
    """25.6 M of them are the 200,000 x 128 position table."""
    assert n_params(Seq2ExpModel(preset("public-hard"))) == 26_174_979


def test_public_hard_wiring_matches_the_authors_forward():
    """Eval-mode prediction recomposed from the model's own modules in the order of the authors'
    forward (embed DNA + positions + signals; shared stack; hard mean mask; blacklist, then the
    promoter set to 1; the kept rows packed and run through the same stack; the promoter rows
    pooled; MLP), one gene at a time."""
    model = tiny("public-hard").eval()
    with torch.no_grad():
        model.generator.positions.weight.normal_()  # make positions matter
    seq, signals, features, blacklist = inputs()
    gen, pred = model.generator, model.predictor
    with torch.no_grad():
        got = model(seq, signals, features, blacklist).expression
        for b in range(seq.shape[0]):
            x = gen.embedding(seq[b].T) + gen.positions.weight + gen.signal_embedding(signals[b].T)
            logits = gen.head(gen.backbone(x[None]))[0]
            alpha = F.softplus(logits[:, 0]) + (torch.tensor([0.4, 0.4, 0.2])[:, None] * signals[b]).sum(0)
            beta = F.softplus(logits[:, 1]) + (0.4 * 1.5 + 0.4 * 0.2 + 0.2 * 1.0)
            mask = (alpha / (alpha + beta) >= 0.5).float()
            mask[blacklist[b]] = 0.0
            mask[central_slice(LENGTH, CENTRE)] = 1.0
            packed = x[mask == 1]
            start = int(mask[: LENGTH // 2].sum()) - CENTRE // 2  # first promoter row
            pooled = gen.backbone(packed[None])[0, start : start + CENTRE].mean(0)
            expected = pred.head(torch.cat([pooled, features[b]]))[0]
            assert float(got[b]) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


def test_public_soft_wiring_matches_the_authors_forward():
    model = tiny("public-soft").eval()
    seq, signals, features, blacklist = inputs()
    gen, pred = model.generator, model.predictor
    with torch.no_grad():
        got = model(seq, signals, features, blacklist).expression
        dna = gen.embedding(seq.transpose(1, 2))
        logits = gen.head(gen.backbone(dna))
        weights = torch.tensor([0.4, 0.4, 0.2])[None, :, None]
        alpha = F.softplus(logits[..., 0]) + 1 + 10 * (weights * (signals + 1)).sum(1)
        beta = F.softplus(logits[..., 1]) + 1 + 10 * (0.4 * 2.5 + 0.4 * 1.2 + 0.2 * 2.0)
        mask = alpha / (alpha + beta)
        mask[blacklist] = 0.0
        mask[:, central_slice(LENGTH, CENTRE)] = 1.0
        x = (dna + pred.signal_embedding(signals.transpose(1, 2))) * mask[..., None]
        pooled = pred.backbone(x)[:, central_slice(LENGTH, CENTRE)].mean(1)
        expected = pred.head(torch.cat([pooled, features], -1))[:, 0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_public_hard_departures_from_the_authors_code():
    """The two fixed defects: the task loss reaches the mask head through the packed rows, and
    a gene's prediction does not depend on the rest of its batch."""
    model = tiny("public-hard")
    seq, signals, features, blacklist = inputs(batch=3)
    model.train()
    torch.manual_seed(3)
    model(seq, signals, features, blacklist).expression.sum().backward()  # no KL in this loss
    assert model.generator.head.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        batch = model(seq, signals, features, blacklist)
        alone = model(seq[1:2], signals[1:2], features[1:2], blacklist[1:2])
        # the other genes keep far more positions: zero-padding gene 1 would change its result
        signals[0], signals[2] = 3.0, 3.0
        other = model(seq, signals, features, blacklist)
    kept = (other.mask.mask > 0.5).sum(1)
    assert kept[0] > kept[1] and kept[2] > kept[1], kept
    for out in (batch, other):
        torch.testing.assert_close(out.expression[1:2], alone.expression, rtol=1e-6, atol=1e-7)


def test_position_table_must_match_the_window():
    model = tiny("public-hard")
    seq, signals, features, _ = inputs()
    with pytest.raises(ValueError, match="position_table must equal the window length"):
        model(seq[..., :32], signals[..., :32], features)


def test_caduceus_init_scales_out_proj_by_sqrt_layers():
    for n_layers in (1, 4):
        torch.manual_seed(0)
        plain = BiMambaStack(StackConfig(d_model=8, n_layers=n_layers, d_state=4))
        torch.manual_seed(0)
        scaled = BiMambaStack(StackConfig(d_model=8, n_layers=n_layers, d_state=4, caduceus_init=True))
        for a, b in zip(plain.layers, scaled.layers):
            torch.testing.assert_close(b.mixer.mamba_fwd.out_proj.weight,
                                       a.mixer.mamba_fwd.out_proj.weight / math.sqrt(n_layers))
            assert b.mixer.mamba_rev.out_proj.weight is b.mixer.mamba_fwd.out_proj.weight
            assert torch.equal(a.mixer.mamba_fwd.dt_proj.bias, b.mixer.mamba_fwd.dt_proj.bias)


def test_sharing_is_validated():
    other = {**TINY, "n_layers": 3}
    with pytest.raises(ValueError, match="shared_stack needs the same"):
        Seq2ExpConfig(generator=TINY, predictor=other, shared_stack=True)
    with pytest.raises(ValueError, match="freezes the generator"):
        preset("public-soft", mask={"mode": "top"})
    with pytest.raises(ValueError, match="reverse-complement"):
        Seq2ExpConfig(position_table=8, generator={"rc_equivariant": True})


def test_an_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'hard-public'; choose from \[.*'public-hard'"):
        preset("hard-public")


def test_float64_model_keeps_float64_beta_parameters():
    model = tiny("soft").double()
    seq, signals, _, _ = inputs()
    dist = model.generator.distribution(seq.double(), signals.double())
    assert dist.alpha1.dtype == dist.alpha2.dtype == dist.alpha.dtype == torch.float64


def test_training_run_sizes_the_position_table_to_its_windows():
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.variants import model_config

    assert model_config(RunConfig(preset="public-hard", data={"window": 4000})).position_table == 4000
    assert model_config(RunConfig(preset="soft", data={"window": 4000})).position_table == 0


# ------------------------------------------------------------------------- the paper's inputs
@pytest.mark.parametrize("name", ["soft", "hard", "hard-packed", "public-soft", "public-hard"])
def test_paper_presets_read_raw_inputs_unless_asked(name):
    """A paper/public preset trains on the inputs as the authors read them (no fitted scaling),
    and says so at the start; ``scaling: auto`` still scales."""
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import run_inputs

    run = RunConfig(preset=name, data={"window": 200_000})
    assert run.scaling_mode() == "none"
    assert any("scaling: none" in line for line in run_inputs(run))
    scaled = RunConfig(preset=name, scaling="auto", data={"window": 200_000})
    assert scaled.scaling_mode() == "auto" and any("scaling: auto" in line for line in run_inputs(scaled))


def test_other_runs_keep_the_fitted_scaling():
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import run_inputs

    assert RunConfig().scaling_mode() == "auto" and run_inputs(RunConfig()) == []  # learned
    assert RunConfig(variant="ridge").scaling_mode() == "auto"  # baselines (preset soft by default)
    assert RunConfig(variant="seq-signals", preset="soft").scaling_mode() == "auto"


def test_cv_folds_of_a_paper_preset_keep_the_baselines_scaled():
    """The preset decides per run: ``cv --set preset=soft`` trains Seq2Exp-soft on raw inputs
    and its baselines on scaled ones, unless ``scaling`` is set."""
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.cv import fold_run

    base = RunConfig(preset="soft", data={"window": 200_000})
    modes = {v: fold_run(base, v, 0, 3, "out").scaling_mode() for v in ("seq2exp", "ridge", "seq-signals")}
    assert modes == {"seq2exp": "none", "ridge": "auto", "seq-signals": "auto"}
    forced = RunConfig(preset="soft", scaling="auto", data={"window": 200_000})
    assert fold_run(forced, "seq2exp", 0, 3, "out").scaling_mode() == "auto"


@pytest.mark.parametrize("recipe", ["K562", "GM12878"])
def test_recipes_exclude_the_bundled_hg38_blacklist(recipe):
    """The K562/GM12878 recipes exclude the ENCODE GRCh38 blacklist as the authors do, from the
    file bundled with the package (ABC's copy; its chr16 rows are the chr16 fixture's)."""
    from pathlib import Path

    from seq2exp_plugin.data.blacklist import Blacklist
    from seq2exp_plugin.train.config import load_config

    root = Path(__file__).resolve().parents[1]
    run = load_config(root / "model_zoo" / "Seq2Exp" / recipe / "train.yaml")
    assert run.data.blacklist == "hg38"
    bl = Blacklist(run.data.blacklist)
    assert sum(len(s) for s in (bl.intervals(c)[0] for c in bl.chroms)) > 800 and len(bl.chroms) == 24
    # chr16:3,367,430-3,368,546 is the first chr16 row of GRCh38_unified_blacklist.bed
    assert bl.mask("16", 3_367_429, 3_368_547).tolist() == [False] + [True] * 1116 + [False]


def test_bundled_blacklist_matches_the_fixture(real_k562_chr16):
    from seq2exp_plugin.data.blacklist import BUNDLED

    rows = [line for line in BUNDLED["hg38"].read_text().splitlines() if line.startswith("chr16\t")]
    assert rows == (real_k562_chr16 / "blacklist.bed").read_text().splitlines()
