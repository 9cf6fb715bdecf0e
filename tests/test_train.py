"""Training: the recipe, exact resume, DDP on CPU, the gReLU checkpoint round trip, evaluate."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from seq2exp_plugin.model.config import StackConfig
from seq2exp_plugin.nn.bimamba import BiMambaStack
from seq2exp_plugin.train.config import RunConfig, TrainConfig, load_config
from seq2exp_plugin.train.fit import StepBatchSampler, fit, make_dataset, training_length
from seq2exp_plugin.train.metrics import regression_metrics
from seq2exp_plugin.train.recipe import make_optimizer, make_scheduler, parameter_groups

from conftest import TINY_STACK, TINY_WINDOW, write_train_config as write_config


def last_weights(run_dir) -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_weight_decay_groups_follow_the_recipe():
    stack = BiMambaStack(StackConfig(**TINY_STACK))
    decay, no_decay = parameter_groups(stack, 1e-6)
    names = {id(p): n for n, p in stack.named_parameters()}
    assert decay["weight_decay"] == 1e-6 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"layers.0.mixer.mamba_fwd.A_log", "layers.0.mixer.mamba_fwd.D", "norm_f.weight",
            "layers.0.mixer.mamba_fwd.dt_proj.bias"} <= no_decay_names
    assert all(names[id(p)].endswith("weight") and p.ndim >= 2 for p in decay["params"])
    n_unique = len({id(p) for p in stack.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique


def test_generator_lr_scale_gives_the_generator_its_own_rate():
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    model = Seq2ExpModel(generator=TINY_STACK, predictor=TINY_STACK, shared_embedding=True)
    cfg = TrainConfig(max_steps=20, warmup_steps=2, lr=1e-3, warmup_start_lr=1e-4, min_lr=0.0,
                      generator_lr_scale=10.0)
    optimizer = make_optimizer(model, cfg)
    own = {id(p) for p in model.generator.parameters()} - {id(p) for p in model.predictor.parameters()}
    listed = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(listed) == sorted({id(p) for p in model.parameters()})  # each once
    for group in optimizer.param_groups:
        in_generator = {id(p) in own for p in group["params"]}
        assert len(in_generator) == 1  # a group is the generator's or not, never mixed
        group["expected"] = 1e-3 * (10.0 if in_generator.pop() else 1.0)
        assert group["lr"] == pytest.approx(group["expected"])
    assert id(model.generator.embedding.weight) not in own  # shared with the predictor: base rate
    scheduler = make_scheduler(optimizer, cfg)  # warm-up starts every group at 1/10 of its rate
    assert all(g["lr"] == pytest.approx(g["expected"] / 10) for g in optimizer.param_groups)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1e-3, 1e-2])
    # scale 1: the two recipe groups, as before
    assert len(make_optimizer(model, TrainConfig(max_steps=20, warmup_steps=2)).param_groups) == 2


def test_warmup_defaults_to_a_tenth_of_the_run():
    assert TrainConfig().warmup_steps == 5_000  # the paper: 5,000 of 50,000 steps
    assert TrainConfig(max_steps=300).warmup_steps == 30
    assert RunConfig.from_dict({"train": {"max_steps": 40}}).to_dict()["train"]["warmup_steps"] == 4
    with pytest.raises(ValueError, match=r"warmup_steps \(500\) .*max_steps \(100\); leave it out"):
        TrainConfig(max_steps=100, warmup_steps=500)


def test_epochs_set_the_steps_from_the_number_of_training_genes():
    cfg = TrainConfig(epochs=25, batch_size=8)
    assert cfg.warmup_steps is None and cfg.val_every_steps is None  # the genes decide
    run = cfg.for_genes(240)  # the paper's budget on a 240-gene fold: 25 passes of 30 steps
    assert (run.max_steps, run.warmup_steps, run.val_every_steps) == (750, 75, 30)
    assert run.for_genes(240) == run  # resolving a resolved recipe changes nothing
    assert TrainConfig(epochs=2.5, batch_size=8).for_genes(17).max_steps == 6  # ceil(2.5 * 17 / 8)
    explicit = TrainConfig(epochs=1, batch_size=4, warmup_steps=0, val_every_steps=7).for_genes(100)
    assert (explicit.max_steps, explicit.warmup_steps, explicit.val_every_steps) == (25, 0, 7)
    assert TrainConfig(max_steps=300).for_genes(10) == TrainConfig(max_steps=300)  # no epochs: as set
    assert TrainConfig().val_every_steps == 1_000  # the paper's interval
    assert TrainConfig().for_genes(16_021).epochs is None
    assert training_length(TrainConfig(max_steps=100), 240) == (
        "100 steps of 8 = 3.33 passes over 240 training genes (the paper's recipe: 25; train.epochs "
        "sets the length in passes), warm-up 10, validation every 100")
    assert TrainConfig(epochs=25).for_genes(16_021).max_steps == 50_066  # ~ the paper's 50,000 steps
    with pytest.raises(ValueError, match="train.epochs must be > 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"warmup_steps \(40\) exceeds the 13 steps of 1 passes over 100"):
        TrainConfig(epochs=1, warmup_steps=40).for_genes(100)


def test_an_epochs_run_trains_its_passes_and_stores_the_steps(tiny_synth, tmp_path, capsys):
    config = write_config(tiny_synth, tmp_path, **{"train.epochs": 0.5, "train.max_steps": 50_000,
                                                   "train.warmup_steps": None, "train.val_every_steps": None})
    run = load_config(config)
    n_train = len(make_dataset(run, "train", require_target=True))
    steps = math.ceil(0.5 * n_train / run.train.batch_size)
    fit(run)
    assert f"{steps} steps of 2 = {steps * 2 / n_train:.3g} passes over {n_train} training genes " \
           f"(train.epochs=0.5)" in capsys.readouterr().out
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == steps
    stored = load_config(tmp_path / "run" / "config.yaml").train
    assert (stored.epochs, stored.max_steps, stored.warmup_steps) == (0.5, steps, steps // 10)
    assert stored.val_every_steps == math.ceil(n_train / run.train.batch_size)
    assert fit(load_config(config)) is None  # the same recipe again: already finished


def test_a_run_with_paths_relative_to_the_working_directory_loads_from_its_checkpoint(
        tiny_synth, tmp_path, monkeypatch):
    """A run configuration built in Python with relative paths (the working directory's) stores
    them absolute: load_run reads a checkpoint's relative paths from the checkpoint's folder."""
    import yaml

    from seq2exp_plugin.train.evaluate import load_run

    raw = yaml.safe_load(write_config(tiny_synth, tmp_path / "yaml", **{"train.max_steps": 2}).read_text())
    monkeypatch.chdir(tiny_synth.parent)
    data = raw["data"]
    for name in ("genes", "genome", "blacklist"):
        data[name] = os.path.relpath(data[name])
    data["signals"] = {k: os.path.relpath(v) for k, v in data["signals"].items()}
    assert not Path(data["genes"]).is_absolute()
    run = RunConfig.from_dict({**raw, "out_dir": str(tmp_path / "run")})
    fit(run)
    monkeypatch.chdir(tmp_path)
    _, loaded = load_run(str(tmp_path / "run" / "checkpoints" / "best.ckpt"))
    assert loaded.data.genes == str(tiny_synth / "genes.h5ad")
    assert len(make_dataset(loaded, "test")) > 0


def test_learning_rate_schedule_is_warmup_then_cosine():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=5e-4, warmup_start_lr=1e-5, min_lr=1e-4)
    optimizer = make_optimizer(torch.nn.Linear(2, 2), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[5] == pytest.approx(1e-5 + (5e-4 - 1e-5) * 5 / 10)
    assert lrs[10] == pytest.approx(5e-4)
    for step in (30, 55, 99):
        expected = 1e-4 + (5e-4 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (step - 10) / 90))
        assert lrs[step] == pytest.approx(expected, rel=1e-6)


def test_step_sampler_is_a_seeded_stream_split_across_ranks():
    full = list(StepBatchSampler(5, 4, seed=7, total_steps=5))
    assert len(full) == 5 and all(len(b) == 4 for b in full)
    stream = [i for b in full for i in b]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert stream[:5] != stream[5:10]  # a new permutation per epoch
    assert list(StepBatchSampler(5, 4, seed=7, total_steps=5, start_step=3)) == full[3:]
    ranks = [list(StepBatchSampler(5, 4, 7, 5, rank=r, world=2)) for r in (0, 1)]
    for step, batch in enumerate(full):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        StepBatchSampler(5, 4, 7, 5, world=3)


def test_config_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("variant: seq2exp\ntrain: {max_step: 3}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: train.max_step: unknown key"):
        load_config(path)
    path.write_text("variant: retrain\n")
    with pytest.raises(ValueError, match="generator_checkpoint"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    for key, what in (("pool_width", "pooled"), ("promoter_linear", "read by the promoter path")):
        path.write_text(f"variant: seq2exp\npreset: learned\ndata: {{window: 3000}}\nmodel: {{{key}: 3001}}\n")
        with pytest.raises(ValueError, match=rf"model.{key}: 3001 bp {what} at the centre of a data.window of 3000 bp"):
            load_config(path)


class _Interrupt(pl.Callback):
    """Stops a run just before it trains step ``at`` (as a kill at that moment would)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise RuntimeError("simulated interruption")


class _CtrlC(pl.Callback):
    """Ctrl-C just before step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_in_training_raises_as_elsewhere_and_leaves_ctrl_c_working(tiny_synth, tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1) with Ctrl-C ignored from then on; fit raises
    KeyboardInterrupt (seq2exp exits 130) and a rerun resumes."""
    import signal

    run = load_config(write_config(tiny_synth, tmp_path, **RESUME_RUN))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(run, callbacks=[_CtrlC(7)])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert torch.load(Path(run.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    fit(run)
    assert torch.load(Path(run.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12


class _StepTrace(pl.Callback):
    """The examples each global step trains on."""

    def __init__(self) -> None:
        self.batches: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches[trainer.global_step] = list(batch["gene_id"])


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _val_logs(run_dir) -> int:
    import pandas as pd

    frames = [pd.read_csv(p) for p in Path(run_dir).glob("logs/version_*/metrics.csv")]
    return sum(int(f["val_mse"].notna().sum()) for f in frames if "val_mse" in f)


# 12 steps, validation (and last.ckpt) at steps 5 and 10, last.ckpt again at the end (12):
# interrupted right after a checkpoint (5, 10), mid-interval (7) and after the last validation (11)
RESUME_RUN = {"train.max_steps": 12, "train.val_every_steps": 5, "train.warmup_steps": 3}


def test_resume_from_any_point_gives_the_same_weights(tiny_synth, tmp_path):
    whole = load_config(write_config(tiny_synth, tmp_path / "whole", **RESUME_RUN))
    reference = _StepTrace()
    fit(whole, callbacks=[reference])
    assert sorted(reference.batches) == list(range(12))
    final = last_weights(whole.out_dir)
    assert torch.load(Path(whole.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    for stop, saved_step in ((5, 5), (7, 5), (10, 10), (11, 10)):
        parts = load_config(write_config(tiny_synth, tmp_path / f"stop{stop}", **RESUME_RUN))
        with pytest.raises(RuntimeError, match="simulated interruption"):
            fit(parts, callbacks=[_Interrupt(stop)])
        saved = torch.load(Path(parts.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["global_step"] == saved_step
        trace = _StepTrace()
        fit(parts, callbacks=[trace])  # same command again: resumes from last.ckpt
        assert trace.batches == {s: reference.batches[s] for s in range(saved_step, 12)}, stop
        _assert_same_weights(final, last_weights(parts.out_dir))
    logs = _val_logs(whole.out_dir)
    assert fit(whole) is None  # a finished run: nothing trained, nothing logged
    assert _val_logs(whole.out_dir) == logs
    _assert_same_weights(final, last_weights(whole.out_dir))


def test_last_checkpoint_holds_the_final_weights(tiny_synth, tmp_path):
    """last.ckpt is rewritten at every validation, improved or not, and at the end."""
    from seq2exp_plugin.train.checkpoint_io import AtomicCheckpointIO
    from seq2exp_plugin.train.module import load_network

    run = load_config(write_config(tiny_synth, tmp_path, **RESUME_RUN))
    trainer = fit(run)
    checkpoint = torch.load(Path(run.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 12
    live = {k: v for k, v in trainer.lightning_module.state_dict().items()}
    _assert_same_weights(live, checkpoint["state_dict"])
    assert load_network(str(Path(run.out_dir) / "checkpoints" / "last.ckpt")) is not None
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # best.ckpt too: whole or not at all


def test_a_run_directory_refuses_another_configuration(tiny_synth, tmp_path):
    from seq2exp_plugin.cli import main

    config = write_config(tiny_synth, tmp_path, **{"train.max_steps": 2, "train.val_every_steps": 2})
    assert main(["train", str(config)]) == 0
    stored = (tmp_path / "run" / "config.yaml").read_text()
    before = last_weights(tmp_path / "run")
    with pytest.raises(ValueError, match=r"different configuration: data.window \(2000 -> 4000\)"):
        fit(load_config(config, {"data.window": 4000}))
    with pytest.raises(ValueError, match=r"model.generator.d_model \(8 -> 16\)"):
        fit(load_config(config, {"model.generator.d_model": 16}))
    assert (tmp_path / "run" / "config.yaml").read_text() == stored  # nothing was written
    _assert_same_weights(before, last_weights(tmp_path / "run"))
    assert main(["train", str(config), "--set", "train.max_steps=3", "train.val_every_steps=3",
                 "--restart"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert "max_steps: 3" in (tmp_path / "run" / "config.yaml").read_text()


def test_ddp_on_cpu_matches_one_process(tiny_synth, tmp_path):
    """Two gloo processes with one example each = one process with both (seq + signals
    baseline: no sampling, so the runs are comparable to float precision)."""
    single = write_config(tiny_synth, tmp_path / "single", variant="seq-signals")
    ddp = write_config(tiny_synth, tmp_path / "ddp", variant="seq-signals")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, "-m", "seq2exp_plugin.cli", "train"]
    subprocess.run([*cli, str(single)], check=True, env=env, capture_output=True, timeout=600)
    result = subprocess.run(
        [*cli, str(ddp), "--set", "train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # Lightning's DDP start-up line
    a, b = last_weights(tmp_path / "single" / "run"), last_weights(tmp_path / "ddp" / "run")
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key


def test_checkpoint_loads_in_grelu_and_evaluates(tiny_synth, tiny_checkpoint):
    from grelu.lightning import LightningModel

    from seq2exp_plugin.train.evaluate import evaluate, load_run
    from seq2exp_plugin.train.fit import make_dataset

    best = tiny_checkpoint
    grelu_model = LightningModel.load_from_checkpoint(best, map_location="cpu").eval()  # default weights_only
    module, run = load_run(str(best))
    assert type(grelu_model.model).__name__ == "Seq2ExpModel" and run.variant == "seq2exp"
    dataset = make_dataset(run, "test")
    item = dataset[0]
    stacked = torch.cat([torch.from_numpy(np.asarray(item["seq"])), torch.from_numpy(np.asarray(item["signals"])),
                         torch.from_numpy(np.asarray(item["features"]))[:, None].expand(-1, TINY_WINDOW)])[None]
    with torch.no_grad():
        via_grelu = grelu_model(stacked)
        direct = module.net(*(torch.as_tensor(np.asarray(item[k]))[None] for k in ("seq", "signals", "features")))
    assert via_grelu.shape == (1, 1, 1)
    assert torch.allclose(via_grelu[0, 0, 0], direct.expression[0], atol=1e-6)
    metrics = evaluate(module.net, dataset, progress=False)
    assert metrics["n_genes"] == len(dataset)
    assert set(metrics) >= {"mse", "mae", "pearson", "spearman", "mask_ratio"}


def test_regression_metrics_against_numpy():
    rng = np.random.default_rng(0)
    target = rng.normal(size=50)
    prediction = target + rng.normal(scale=0.5, size=50)
    metrics = regression_metrics(prediction, target)
    assert metrics["mse"] == pytest.approx(np.mean((prediction - target) ** 2), rel=1e-5)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(prediction - target)), rel=1e-5)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(prediction, target)[0, 1], rel=1e-5)
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert metrics["spearman"] == pytest.approx(np.corrcoef(ranks(prediction), ranks(target))[0, 1], rel=1e-5)


@pytest.mark.parametrize("variant", ["hierarchical-cnn", "ridge", "peak-mask", "seq-only"])
def test_every_baseline_trains_and_evaluates(tiny_synth, tmp_path, variant):
    from seq2exp_plugin.train.evaluate import evaluate, load_run
    from seq2exp_plugin.train.fit import make_dataset

    extra = {"variant": variant, "train.max_steps": 2, "train.val_every_steps": 2}
    if variant == "peak-mask":  # the synthetic DNase peaks stand in for MACS3's
        peaks = tmp_path / "peaks.bed"
        truth = (tiny_synth / "truth" / "elements.bed").read_text().splitlines()
        peaks.write_text("".join("\t".join(line.split("\t")[:3]) + "\n" for line in truth if not line.startswith("#")))
        extra["data.peaks"] = str(peaks)
    run = load_config(write_config(tiny_synth, tmp_path, **extra))
    fit(run)
    module, loaded = load_run(str(Path(run.out_dir) / "checkpoints" / "best.ckpt"))
    assert loaded.variant == variant
    dataset = make_dataset(loaded, "test")
    metrics = evaluate(module.net, dataset, progress=False)
    assert metrics["n_genes"] == len(dataset) and np.isfinite(metrics["mse"])
    assert ("mask_ratio" in metrics) == (variant == "peak-mask")
    if variant == "peak-mask":
        assert 0 < metrics["mask_ratio"] < 1
    if variant == "ridge":  # the folded Linear layer reproduces scikit-learn's standardised ridge
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from torch.utils.data import default_collate

        train = make_dataset(loaded, "train", require_target=True)
        batch = default_collate([train[i] for i in range(len(train))])
        x = module.net.design(batch["signals"], batch["features"]).numpy()
        reference = make_pipeline(StandardScaler(), Ridge(alpha=float(module.net.alpha)))
        reference.fit(x, batch["target"].numpy())
        with torch.no_grad():
            ours = module.net(batch["signals"], batch["features"]).numpy()
        np.testing.assert_allclose(ours, reference.predict(x), rtol=1e-3, atol=1e-3)


def test_peak_mask_keeps_the_promoter_and_drops_the_blacklist():
    # A window with no peak at all (MACS3 finds none near a silent gene): the packed predictor
    # still pools the promoter, instead of averaging an empty centre into NaN.
    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.model.predictor import Seq2ExpPredictor
    from seq2exp_plugin.model.batch import given_mask, predict_batch

    config = preset("hard-packed", predictor={"d_model": 8, "n_layers": 1, "d_state": 4},
                    pool_width=100, mask={"promoter_keep": 100})
    net = Seq2ExpPredictor(config).eval()
    L = 1000
    blacklist = torch.zeros(2, L, dtype=torch.bool)
    blacklist[:, :50] = True
    batch = {"seq": torch.nn.functional.one_hot(torch.randint(0, 4, (2, L)), 4).float().transpose(1, 2),
             "signals": torch.rand(2, 3, L), "features": torch.randn(2, 9),
             "mask": torch.zeros(2, L), "blacklist": blacklist}
    batch["mask"][:, :60] = 1.0  # a "peak" inside the blacklist
    mask = given_mask(net, batch)
    assert mask[:, 450:550].eq(1).all() and mask[:, :50].eq(0).all() and mask[:, 50:60].eq(1).all()
    assert mask.sum() == 2 * (100 + 10)
    with torch.no_grad():
        prediction, _ = predict_batch(net, batch)
    assert torch.isfinite(prediction).all()


def test_the_learned_preset_starts_as_the_promoter_ridge_and_keeps_it_fixed(tiny_synth, tmp_path):
    """``seq2exp train`` fits the promoter path before training exactly as the promoter-ridge
    variant is fitted (same windows, same penalty choice): before any step the network predicts
    what that baseline predicts; training moves the head, never the fitted path."""
    from torch.utils.data import default_collate

    from seq2exp_plugin.train.evaluate import load_run
    from seq2exp_plugin.train.module import Seq2ExpLightning
    from seq2exp_plugin.train.ridge import fit_promoter_linear
    from seq2exp_plugin.train.scaling import with_fitted_scaling

    common = {"preset": "learned", "train.max_steps": 3, "train.val_every_steps": 3}
    ridge_run = load_config(write_config(tiny_synth, tmp_path / "ridge", variant="promoter-ridge", **common))
    fit(ridge_run)
    ridge, _ = load_run(str(Path(ridge_run.out_dir) / "checkpoints" / "best.ckpt"))

    run = load_config(write_config(tiny_synth, tmp_path / "s2e", **common))
    train_set = make_dataset(run, "train", require_target=True)
    run = with_fitted_scaling(run, train_set)
    module = Seq2ExpLightning.from_run_config(run)
    assert fit_promoter_linear(module.net, run, train_set, make_dataset(run, "valid", require_target=True)) \
        == pytest.approx(float(ridge.net.alpha))
    test = make_dataset(run, "test")
    batch = default_collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        module.net.eval()
        ours = module.net(batch["seq"], batch["signals"], batch["features"], blacklist=batch.get("blacklist")).expression
        theirs = ridge.net(batch["signals"], batch["features"])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)

    fitted = module.net.predictor.promoter_linear.weight.clone()
    fit(run)
    trained = last_weights(run.out_dir)
    torch.testing.assert_close(trained["model.net.predictor.promoter_linear.weight"], fitted)
    assert trained["model.net.predictor.head.4.weight"].abs().sum() > 0  # started at 0, trained
