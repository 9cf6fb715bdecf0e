"""Input/target scaling: fitted on training genes only, stored in the checkpoint, applied by the
model's forward (so predict, Kipoi, gReLU, ISM and variants see the same numbers)."""

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch

from seq2exp_plugin.data.tracks import BigWigTrack
from seq2exp_plugin.model.config import ScalingConfig, Seq2ExpConfig
from seq2exp_plugin.model.scaling import InputScaling
from seq2exp_plugin.model.seq2exp import Seq2ExpModel
from seq2exp_plugin.train.config import load_config
from seq2exp_plugin.train.fit import make_dataset
from seq2exp_plugin.train.scaling import fit_feature_scaling, fit_target_scaling, with_fitted_scaling

from conftest import TINY_STACK, write_bigwig_per_bp, write_train_config


def test_input_scaling_against_numpy():
    cfg = ScalingConfig(signal_background=(2.0, 4.0), feature_log1p=(True, False, False),
                        feature_mean=(1.0, 2.0, 0.0), feature_std=(2.0, 4.0, 1.0),
                        target_mean=1.5, target_std=0.5, target_low=0.0, target_high=2.0)
    scaling = InputScaling(cfg).eval()
    rng = np.random.default_rng(0)
    signals = rng.uniform(0, 10, (2, 2, 5))
    features = np.array([[100.0, -3.0, 0.5], [0.0, 5.0, -0.5]])
    got = scaling.signals(torch.tensor(signals)).numpy()
    np.testing.assert_allclose(got, signals / np.array([2.0, 4.0])[None, :, None])
    expected = np.stack([np.log1p(features[:, 0]), features[:, 1], features[:, 2]], axis=1)
    expected = (expected - [1.0, 2.0, 0.0]) / [2.0, 4.0, 1.0]
    np.testing.assert_allclose(scaling.features(torch.tensor(features)).numpy(), expected, rtol=1e-12)
    raw = torch.tensor([-10.0, 0.0, 10.0], dtype=torch.float64)
    assert scaling.output(raw).tolist() == [0.0, 1.5, 2.0]  # eval: un-standardised, clamped
    assert scaling.train().output(raw).tolist() == [-3.5, 1.5, 6.5]  # training: no clamp
    assert scaling.standardise(np.array([1.5, 2.0])).tolist() == [0.0, 1.0]


def test_identity_by_default_and_for_old_configurations():
    config = Seq2ExpConfig(generator=TINY_STACK, predictor=TINY_STACK)
    old = config.to_dict()
    del old["scaling"]  # a checkpoint written before the field existed
    assert Seq2ExpConfig.from_dict(old).scaling == ScalingConfig()
    torch.manual_seed(0)
    model = Seq2ExpModel(config).eval()
    x = (torch.eye(4)[torch.randint(0, 4, (1, 300))].transpose(1, 2), torch.rand(1, 3, 300) * 50,
         torch.rand(1, 9) * 100)
    for scaling in (model.generator.scaling, model.predictor.scaling):
        assert torch.equal(scaling.signals(x[1]), x[1]) and torch.equal(scaling.features(x[2]), x[2])
        assert torch.equal(scaling.output(x[2][0]), x[2][0])
    with pytest.raises(ValueError, match="signal_background has 2 values for 3 signals"):
        Seq2ExpConfig(scaling={"signal_background": [1.0, 2.0]})


def test_feature_and_target_fits_follow_their_rules():
    rng = np.random.default_rng(1)
    features = np.column_stack([rng.normal(size=50), rng.uniform(0, 1, 50), rng.exponential(500, 50)])
    fitted = fit_feature_scaling(features)
    assert fitted["feature_log1p"] == [False, False, True]  # z-score, fraction, signal product
    transformed = features.copy()
    transformed[:, 2] = np.log1p(transformed[:, 2])
    np.testing.assert_allclose(fitted["feature_mean"], transformed.mean(0))
    np.testing.assert_allclose(fitted["feature_std"], transformed.std(0))
    target = fit_target_scaling(np.array([1.0, 2.0, 3.0, np.nan]))
    assert target == pytest.approx({"target_mean": 2.0, "target_std": np.std([1, 2, 3]),
                                    "target_low": 0.8, "target_high": 3.2})


def test_bigwig_background_is_the_mean_over_chromosomes_with_data(tmp_path):
    sizes = {"chr1": 5_000, "chr2": 3_000, "chr3": 2_000}
    rng = np.random.default_rng(2)
    chr1 = np.ma.masked_array(rng.uniform(0, 20, 5_000), mask=rng.uniform(size=5_000) < 0.5)  # gaps = 0
    chr2 = np.ma.masked_array(rng.uniform(0, 5, 3_000), mask=np.zeros(3_000, bool))
    path = write_bigwig_per_bp(tmp_path / "x.bw", {"chr1": chr1, "chr2": chr2}, sizes)  # chr3: no data
    expected = (chr1.filled(0).sum() + chr2.sum()) / (5_000 + 3_000)
    assert BigWigTrack(path).background() == pytest.approx(expected, rel=1e-3)  # float32 summaries


def _with_test_genes_changed(genes: Path, out: Path) -> Path:
    """The gene table with every non-training gene's target and features made extreme."""
    adata = anndata.read_h5ad(genes)
    held = (adata.obs["split"] != "train").to_numpy()
    adata.X[held] = 99.0
    features = adata.obsm["features"].copy()
    features.loc[held, :] = 1e6
    adata.obsm["features"] = features
    adata.write_h5ad(out)
    return out


def test_scaling_is_fitted_on_training_genes_only(tiny_synth, tmp_path):
    run = load_config(write_train_config(tiny_synth, tmp_path / "a"))
    fitted = with_fitted_scaling(run, make_dataset(run, "train", require_target=True))
    changed = _with_test_genes_changed(tiny_synth / "genes.h5ad", tmp_path / "changed.h5ad")
    run2 = load_config(write_train_config(tiny_synth, tmp_path / "b", **{"data.genes": str(changed)}))
    fitted2 = with_fitted_scaling(run2, make_dataset(run2, "train", require_target=True))
    assert fitted.model["scaling"] == fitted2.model["scaling"]
    scaling = fitted.model["scaling"]
    train = make_dataset(run, "train", require_target=True)
    assert scaling["target_mean"] == pytest.approx(float(np.mean(train.targets)), rel=1e-6)
    assert list(run.data.signals)[2] == "hic"  # Hi-C: its mean over the training windows
    assert scaling["signal_background"][2] == pytest.approx(
        np.mean([train.get_numpy(i)["signals"][2].mean() for i in range(len(train))]), rel=1e-6)
    assert scaling["signal_background"][:2] == pytest.approx(
        [BigWigTrack(path).background() for path in list(run.data.signals.values())[:2]])
    assert scaling["feature_log1p"][-1]  # promoter activity
    # explicit values and `scaling: none` are left alone
    assert with_fitted_scaling(fitted, train) is fitted
    none = load_config(write_train_config(tiny_synth, tmp_path / "c", scaling="none"))
    assert "scaling" not in with_fitted_scaling(none, train).model


def test_checkpoint_stores_the_scaling_and_predict_applies_it(tiny_synth, tiny_checkpoint, tmp_path):
    from seq2exp_plugin.discover.predict import predict_to_directory
    from seq2exp_plugin.train.evaluate import load_run

    module, run = load_run(str(tiny_checkpoint))
    stored = module.net.config.scaling
    refit = with_fitted_scaling(_as_written(run), make_dataset(run, "train", require_target=True))
    assert stored == ScalingConfig(**refit.model["scaling"])  # restored from the checkpoint
    assert stored.target_std != 1.0 and stored.signal_background
    genes = list(make_dataset(run, "test").gene_ids)
    out = predict_to_directory(str(tiny_checkpoint), tmp_path / "pred", gene_ids=genes, max_plots=0,
                               progress=False)
    table = pd.read_csv(out / "expression.tsv", sep="\t").set_index("gene_id")
    # reference: the same weights with identity scaling, fed inputs scaled by hand (numpy)
    raw = Seq2ExpConfig.from_dict({**module.net.config.to_dict(), "scaling": {}})
    reference = Seq2ExpModel(raw).eval()
    reference.load_state_dict(module.net.state_dict())
    dataset = make_dataset(run, None, gene_ids=genes)
    for i, gene in enumerate(genes):
        item = dataset.get_numpy(i)
        signals = item["signals"] / np.array(stored.signal_background, dtype=np.float32)[:, None]
        features = np.where(stored.feature_log1p, np.log1p(np.clip(item["features"], 0, None)), item["features"])
        features = (features - np.array(stored.feature_mean)) / np.array(stored.feature_std)
        with torch.no_grad():
            out_std = reference(torch.from_numpy(item["seq"])[None], torch.from_numpy(signals)[None],
                                torch.from_numpy(features.astype(np.float32))[None],
                                torch.from_numpy(item["blacklist"])[None]).expression.item()
        expected = np.clip(out_std * stored.target_std + stored.target_mean, stored.target_low, stored.target_high)
        assert table.loc[gene, "predicted"] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def _as_written(run):
    """The run as the user wrote it: the fitted ``model.scaling`` removed."""
    from seq2exp_plugin.train.config import RunConfig

    data = run.to_dict()
    data["model"] = {k: v for k, v in data["model"].items() if k != "scaling"}
    return RunConfig.from_dict(data)


def _rescaled_bigwig(source: Path, out: Path, factor: float) -> Path:
    """``source`` with every value multiplied by ``factor`` (the same track in other units)."""
    import pyBigWig

    with pyBigWig.open(str(source)) as bw:
        chroms = bw.chroms()
        entries = {c: bw.intervals(c) or [] for c in chroms}
    with pyBigWig.open(str(out), "w") as bw:
        bw.addHeader(list(chroms.items()))
        for chrom, intervals in entries.items():
            if intervals:
                bw.addEntries([chrom] * len(intervals), [s for s, _, _ in intervals],
                              ends=[e for _, e, _ in intervals],
                              values=[v * factor for _, _, v in intervals])
    return out


@pytest.mark.parametrize("scaling", ["auto", "none"])
def test_a_track_in_other_units_trains_the_same_model(tiny_synth, tmp_path, scaling):
    """DNase x 1000 and H3K27ac x 0.01 (as p-value vs fold-change vs RPM bigWigs differ): with the
    fitted scaling the run's weights are those of the original files; with ``scaling: none``
    (the paper's raw values) they are not."""
    from seq2exp_plugin.train.fit import fit

    signals = {"h3k27ac": str(_rescaled_bigwig(tiny_synth / "synthA" / "h3k27ac.bw",
                                               tmp_path / "h3k27ac.bw", 0.01)),
               "dnase": str(_rescaled_bigwig(tiny_synth / "synthA" / "dnase.bw",
                                             tmp_path / "dnase.bw", 1000.0)),
               "hic": str(tiny_synth / "synthA" / "hic.cool")}
    options = {"train.max_steps": 3, "train.val_every_steps": 3, "train.lr": 0.01, "scaling": scaling}
    weights = []
    for name, extra in (("original", {}), ("rescaled", {"data.signals": signals})):
        run = load_config(write_train_config(tiny_synth, tmp_path / name, **options, **extra))
        fit(run)
        weights.append(torch.load(Path(run.out_dir) / "checkpoints" / "last.ckpt",
                                  weights_only=True)["state_dict"])
    largest = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    if scaling == "auto":
        assert largest < 1e-4
    else:
        assert largest > 1e-3
