"""Kipoi: the Seq2Exp group through the real `kipoi` command line, and the writer shim.

The `kipoi` runs are subprocesses in model_zoo/ with `--source dir`, a temporary HOME (kipoi's
~/.kipoi/config.yaml names only local sources, so nothing can reach the network; the weights
config file lives there too) and the user's compiled-kernel cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "model_zoo"
GROUP = ZOO / "Seq2Exp"
DEMO = GROUP / "Demo"
DATA = DEMO / "data"
WINDOW = 10_000
CELL = "synthA"


def demo_args(**extra) -> dict:
    args = {"fasta_file": str(DATA / "genome.fa"), "genes": str(DATA / "genes.h5ad"),
            "h3k27ac": str(DATA / CELL / "h3k27ac.bw"), "dnase": str(DATA / CELL / "dnase.bw"),
            "hic": str(DATA / CELL / "hic.cool"), "blacklist": str(DATA / "blacklist.bed"),
            "cell_type": CELL, "window": WINDOW}
    args.update(extra)
    return args


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A HOME for kipoi (config with local sources only) and for ~/.config/seq2exp."""
    home = tmp_path_factory.mktemp("home")
    (home / ".kipoi").mkdir()
    (home / ".kipoi" / "config.yaml").write_text(
        "model_sources:\n"
        f"  kipoi:\n    type: local\n    local_path: {ZOO}\n")
    return home


@pytest.fixture(scope="module")
def env(home):
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("SEQ2EXP_") and k.endswith("_WEIGHTS")) and k != "XDG_CONFIG_HOME"}
    env.update(HOME=str(home), XDG_CACHE_HOME=cache, PWD=str(ZOO), PYTHONWARNINGS="ignore")
    return env


def kipoi(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("kipoi", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "kipoi"]
    result = subprocess.run([*cmd, *map(str, args)], cwd=ZOO, env=env, capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"kipoi {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def read_h5(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def direct():
    """Predictions of the Demo checkpoint called directly (load_module + predict_batch) on the
    windows of the Demo gene table, in table order."""
    import torch
    from torch.utils.data import DataLoader

    from seq2exp_plugin.data.windows import WindowDataset
    from seq2exp_plugin.train.module import load_module
    from seq2exp_plugin.model.batch import predict_batch

    module = load_module(str(DEMO / "best.ckpt"))
    a = demo_args()
    dataset = WindowDataset(a["genes"], a["fasta_file"], {s: a[s] for s in ("h3k27ac", "dnase", "hic")},
                            CELL, window=WINDOW, blacklist=a["blacklist"])
    expression, mask, blacklist, ids = [], [], [], []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=8):
            e, m = predict_batch(module.net, batch)
            expression.append(e.numpy())
            mask.append(m.score.numpy())
            blacklist.append(batch["blacklist"].numpy())
            ids += list(batch["gene_id"])
    return {"expression": np.concatenate(expression), "mask": np.concatenate(mask),
            "blacklist": np.concatenate(blacklist), "gene_id": ids, "dataset": dataset}


# --------------------------------------------------------------------------- the group
def test_group_renders_one_entry_per_row(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    import torch
    from kipoi.sources import LocalSource

    source = LocalSource(str(ZOO))
    assert sorted(source.list_models()["model"]) == ["Seq2Exp/Demo", "Seq2Exp/GM12878", "Seq2Exp/K562"]
    for entry, window in (("K562", 200_000), ("GM12878", 200_000), ("Demo", WINDOW)):
        d = source.get_model_descr(f"Seq2Exp/{entry}")
        assert d.defined_as == "seq2exp_kipoi.Seq2ExpKipoiModel" and d.args["entry"] == entry
        assert d.args["weights_env"] == f"SEQ2EXP_{entry.upper()}_WEIGHTS"
        assert (GROUP / d.args["train_config"]).is_file()
        assert d.schema.inputs["seq"].shape == (4, window) and d.schema.targets["mask"].shape == (window,)
        assert d.default_dataloader.default_args["window"] == window
        assert d.writers["hdf5_chunk_size"] == 16
        assert set(d.schema.inputs) == {"seq", "signals", "features", "blacklist"}
    assert source.get_model_descr("Seq2Exp/K562").args["weights"] is None
    # the dataloader finds the checkpoint the model loads (it says how to read the windows)
    for entry in ("K562", "GM12878", "Demo"):
        d = source.get_model_descr(f"Seq2Exp/{entry}")
        assert d.default_dataloader.default_args["entry"] == entry
        assert d.default_dataloader.default_args.get("weights") == d.args["weights"]
        # a per-cell-type head gives the output of the entry's cell type, the dataloader's
        assert d.args["cell_type"] == d.default_dataloader.default_args["cell_type"]
    demo = source.get_model_descr("Seq2Exp/Demo")
    for key, value in demo.default_dataloader.default_args.items():
        if key not in ("cell_type", "window", "entry"):
            assert (GROUP / value).is_file(), key  # bundled files, relative to the group folder
    assert (ZOO / demo.test.expect).is_file()  # kipoi reads it from the working directory
    saved = torch.load(GROUP / demo.args["weights"], map_location="cpu", weights_only=True)
    data = saved["hyper_parameters"]["train_params"]["seq2exp"]["data"]
    assert data["window"] == WINDOW and data["cell_type"] == CELL


def test_dataloader_is_a_kipoi_component_of_its_own(home, monkeypatch):
    """dataloaders/ loads as Kipoi loads a dataloader folder (yaml args = the class's arguments);
    its yaml examples are the Demo files and four of its genes."""
    monkeypatch.setenv("HOME", str(home))
    import kipoi
    from kipoi.sources import LocalSource

    Dl = kipoi.get_dataloader_factory("dataloaders", LocalSource(str(ROOT)))
    batch = next(Dl.init_example().batch_iter(batch_size=8))
    assert Dl.get_output_schema().compatible_with_batch(batch, verbose=False)
    assert batch["inputs"]["seq"].shape == (4, 4, WINDOW) and batch["inputs"]["signals"].shape == (4, 3, WINDOW)
    assert batch["inputs"]["features"].shape == (4, 9) and batch["inputs"]["blacklist"].dtype == bool
    np.testing.assert_array_equal(batch["inputs"]["seq"].sum(1).max(), 1.0)  # one-hot (N = zeros)
    assert list(batch["metadata"]["ranges"]["id"]) == ["SYNG00001", "SYNG00005", "SYNG00017", "SYNG00030"]
    assert np.isfinite(batch["metadata"]["measured_expression"]).all()


# ----------------------------------------------------------------------------- the CLI
def test_kipoi_test_demo_passes_against_its_expectation(env):
    result = kipoi(["test", "Seq2Exp/Demo", "--source", "dir"], env)
    assert "All predictions match" in result.stdout
    assert "not compatible" not in result.stdout + result.stderr  # schemas agree
    assert "false for key" not in result.stdout  # kipoi's comparison now checks every output
    with h5py.File(DEMO / "test_expect.h5", "r") as f:
        assert set(f["preds"]) == {"expression", "mask"}


def test_kipoi_predict_demo_matches_the_model_called_directly(env, direct, tmp_path):
    out = tmp_path / "demo.h5"
    kipoi(["predict", "Seq2Exp/Demo", "--source", "dir", "-o", out, "--keep_metadata"], env)
    h5 = read_h5(out)
    n = len(direct["gene_id"])
    assert h5["preds/expression"].shape == (n,) and h5["preds/expression"].dtype == np.float32
    assert h5["preds/mask"].shape == (n, WINDOW) and h5["preds/mask"].dtype == np.float32
    assert [g.decode() for g in h5["metadata/ranges/id"]] == direct["gene_id"]
    np.testing.assert_allclose(h5["preds/expression"], direct["expression"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h5["preds/mask"], direct["mask"], rtol=1e-5, atol=1e-5)
    # the mask: a probability, the promoter kept, blacklisted positions removed
    mask = h5["preds/mask"]
    assert np.all((mask >= 0) & (mask <= 1))
    from seq2exp_plugin.train.config import load_config
    from seq2exp_plugin.train.variants import model_config

    keep = model_config(load_config(DEMO / "train.yaml")).mask.promoter_keep
    assert 0 < keep < WINDOW
    centre = np.zeros(WINDOW, dtype=bool)
    centre[WINDOW // 2 - keep // 2: WINDOW // 2 - keep // 2 + keep] = True
    assert np.all(mask[:, centre][~direct["blacklist"][:, centre]] == 1.0)
    assert direct["blacklist"].any() and np.all(mask[direct["blacklist"]] == 0.0)
    # metadata: the window around each TSS and the measured expression of the gene table
    ds = direct["dataset"]
    np.testing.assert_array_equal(h5["metadata/ranges/start"], ds.tss - WINDOW // 2)
    np.testing.assert_array_equal(h5["metadata/ranges/end"], ds.tss - WINDOW // 2 + WINDOW)
    np.testing.assert_array_equal(h5["metadata/tss"], ds.tss)
    assert [s.decode() for s in h5["metadata/ranges/strand"]] == list(ds.strands)
    np.testing.assert_allclose(h5["metadata/measured_expression"], ds.targets, rtol=1e-6)
    with h5py.File(out, "r") as f:  # small HDF5 chunks (the model's writers setting)
        assert f["preds/mask"].chunks[0] == 16


def test_k562_entry_with_weights_from_the_environment(env, direct, tmp_path):
    genes = [direct["gene_id"][i] for i in (0, 4, 9)]
    out = tmp_path / "k562.h5"
    kipoi(["predict", "Seq2Exp/K562", "--source", "dir", "--dataloader_args",
           json.dumps(demo_args(gene_ids=genes)), "-o", out],
          {**env, "SEQ2EXP_K562_WEIGHTS": str(DEMO / "best.ckpt")})
    h5 = read_h5(out)
    rows = [direct["gene_id"].index(g) for g in genes]
    assert h5["preds/mask"].shape == (3, WINDOW)
    np.testing.assert_allclose(h5["preds/expression"], direct["expression"][rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h5["preds/mask"], direct["mask"][rows], rtol=1e-5, atol=1e-5)


def test_gm12878_entry_with_weights_from_the_config_file_and_a_tss_bed(env, home, direct, tmp_path):
    """Weights from ~/.config/seq2exp/weights.yaml (a path relative to that file); genes from
    the TSS BED + half-life table instead of the gene table: the same features, hence the same
    predictions, and no measured expression."""
    config = home / ".config" / "seq2exp" / "weights.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEMO / "best.ckpt", config.parent / "gm.ckpt")
    config.write_text("GM12878: gm.ckpt\n")
    try:
        args = demo_args(genes=None, tss_bed=str(DATA / "tss.bed"), halflife=str(DATA / "halflife.tsv"),
                         gene_ids=",".join(direct["gene_id"][:4]))
        out = tmp_path / "gm.tsv"
        kipoi(["predict", "Seq2Exp/GM12878", "--source", "dir", "--dataloader_args", json.dumps(args),
               "-o", out, tmp_path / "gm.h5", "-m"], env)
    finally:
        config.unlink()
    h5 = read_h5(tmp_path / "gm.h5")
    np.testing.assert_allclose(h5["preds/expression"], direct["expression"][:4], rtol=1e-5, atol=1e-5)
    assert np.isnan(h5["metadata/measured_expression"]).all()
    import pandas as pd

    tsv = pd.read_csv(out, sep="\t")  # TSV output works with the model's hdf5_chunk_size set
    assert len(tsv) == 4 and "preds/expression" in tsv and "preds/mask/9999" in tsv
    np.testing.assert_allclose(tsv["preds/expression"], direct["expression"][:4], rtol=1e-5, atol=1e-5)


def test_k562_without_weights_stops_at_once_with_the_training_command(env, tmp_path):
    result = kipoi(["predict", "Seq2Exp/K562", "--source", "dir", "-o", tmp_path / "x.h5"], env, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    err = result.stderr
    assert "No weights for Seq2Exp/K562" in err
    assert f"seq2exp train {GROUP / 'K562' / 'train.yaml'}" in err
    assert "export SEQ2EXP_K562_WEIGHTS=" in err and "weights.yaml" in err
    assert not (tmp_path / "x.h5").exists()


def test_inputs_that_do_not_fit_the_checkpoint_are_named(direct, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    from seq2exp_plugin.adapters.kipoi import InputMismatchError, Seq2ExpKipoiModel
    from seq2exp_plugin.adapters.kipoi_patches import _excepthook

    model = Seq2ExpKipoiModel(weights=str(DEMO / "best.ckpt"), entry="Demo", device="cpu", max_batch=2)
    item = direct["dataset"].get_numpy(0)
    x = {"seq": item["seq"][None], "signals": item["signals"][None], "features": item["features"][None],
         "blacklist": item["blacklist"][None]}
    out = model.predict_on_batch(x)
    np.testing.assert_allclose(out["expression"], direct["expression"][:1], rtol=1e-5, atol=1e-5)
    short = {k: v[..., :8000] if k != "features" else v for k, v in x.items()}
    with pytest.raises(InputMismatchError, match="trained on 10,000 bp windows, the dataloader gave 8,000 bp") as err:
        model.predict_on_batch(short)
    with pytest.raises(InputMismatchError, match=r"'signals' must be \(N, 3, 10000\)"):
        model.predict_on_batch({**x, "signals": x["signals"][:, :2]})
    _excepthook(type(err.value), err.value, None)  # what `kipoi predict` prints: one line
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and "error: Seq2Exp/Demo" in printed and "Traceback" not in printed


def random_inputs(n: int, length: int) -> dict:
    g = np.random.default_rng(0)
    return {"seq": np.eye(4, dtype=np.float32)[g.integers(0, 4, (n, length))].transpose(0, 2, 1),
            "signals": g.random((n, 3, length), dtype=np.float32) * 3,
            "features": g.standard_normal((n, 9)).astype(np.float32),
            "blacklist": np.zeros((n, length), dtype=bool)}


def test_a_per_cell_type_head_gives_the_output_of_the_cell_type_argument(tmp_path, monkeypatch):
    """A checkpoint with a per-cell-type head over three cell types: the model reads the output
    of its ``cell_type`` argument (what the library network gives with that cell_type_index),
    needs one and refuses a name the head has none for; one cell type is the default where the
    run had one; the shared head ignores the argument."""
    import torch

    monkeypatch.setenv("HOME", str(tmp_path))
    from conftest import per_cell_type_checkpoint
    from seq2exp_plugin.adapters.kipoi import InputMismatchError, Seq2ExpKipoiModel
    from seq2exp_plugin.train.module import load_module

    cells = ("synthA", "synthB", "synthC")
    three = per_cell_type_checkpoint(tmp_path / "three.ckpt", cells)
    net = load_module(str(three)).net
    x = random_inputs(2, 2000)
    inputs = [torch.from_numpy(x[k]) for k in ("seq", "signals", "features", "blacklist")]
    got = {}
    for index, cell in enumerate(cells):
        model = Seq2ExpKipoiModel(weights=str(three), entry="Demo", device="cpu", cell_type=cell)
        got[cell] = model.predict_on_batch(x)
        with torch.no_grad():
            want = net(*inputs, torch.full((2,), index))
        np.testing.assert_allclose(got[cell]["expression"], want.expression.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got[cell]["mask"], want.mask.score.numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(got["synthA"]["expression"], got["synthB"]["expression"])
    assert not np.allclose(got["synthB"]["expression"], got["synthC"]["expression"])
    with pytest.raises(InputMismatchError, match=re.escape(
            f"Seq2Exp/Demo: {three} was trained on cell types ['synthA', 'synthB', 'synthC'] with a "
            "per-cell-type head (model.celltype_head), one output each: name the one to read with the "
            "model argument cell_type")):
        Seq2ExpKipoiModel(weights=str(three), entry="Demo", device="cpu")
    with pytest.raises(InputMismatchError, match=re.escape(
            f"Seq2Exp/Demo: {three}: cell type 'K562': the model's per-cell-type head (model.celltype_head) "
            "has outputs for ['synthA', 'synthB', 'synthC'] only")):
        Seq2ExpKipoiModel(weights=str(three), entry="Demo", device="cpu", cell_type="K562")
    one = per_cell_type_checkpoint(tmp_path / "one.ckpt", ("synthA",))
    assert Seq2ExpKipoiModel(weights=str(one), entry="Demo", device="cpu").cell_type_index == 0
    with pytest.raises(InputMismatchError, match="cell type 'synthB'"):
        Seq2ExpKipoiModel(weights=str(one), entry="Demo", device="cpu", cell_type="synthB")
    # the shared head (the Demo's) serves any cell type
    x = random_inputs(1, WINDOW)
    plain = Seq2ExpKipoiModel(weights=str(DEMO / "best.ckpt"), entry="Demo", device="cpu").predict_on_batch(x)
    named = Seq2ExpKipoiModel(weights=str(DEMO / "best.ckpt"), entry="Demo", device="cpu",
                              cell_type="K562").predict_on_batch(x)
    for key in ("expression", "mask"):
        np.testing.assert_array_equal(named[key], plain[key])


# ------------------------------------------------------------------------------ the shim
@pytest.fixture
def writers(tmp_path_factory, monkeypatch):
    """kipoi.writers with the shim applied (kipoi imported under a temporary HOME, apart from
    the test's tmp_path: importing kipoi first writes ~/.kipoi, which the tests would list)."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("kipoi_home")))
    from kipoi import writers

    from seq2exp_plugin.adapters import kipoi as adapter

    adapter.apply_writer_compat()
    return writers


def _batch(n=3, length=5):
    rng = np.random.default_rng(0)
    return {"preds": {"expression": rng.random(n, dtype=np.float32),
                      "mask": rng.random((n, length), dtype=np.float32)},
            "metadata": {"ranges": {"chr": np.array(["chr1"] * n), "start": np.arange(n),
                                    "end": np.arange(n) + length, "id": np.array([f"g{i}" for i in range(n)]),
                                    "strand": np.array(["+", "-", "+"][:n])}}}


def _metadata_schema():
    from kipoi.specs import DataLoaderSchema

    return DataLoaderSchema.from_config({"inputs": {"shape": (1,)}, "metadata": {
        "ranges": {"type": "GenomicRanges", "doc": "window"}}}).metadata


def test_shim_hdf5_writer_works_under_numpy2(writers, tmp_path, monkeypatch):
    assert writers.np.string_ is np.bytes_ and writers.np.unicode_ is np.str_
    assert writers.np.float32 is np.float32  # everything else is numpy's
    assert not hasattr(np, "string_")  # numpy itself untouched
    batch = _batch()
    w = writers.get_writer(str(tmp_path / "o.h5"), _metadata_schema(), hdf5_chunk_size=16)
    w.batch_write(batch)
    w.close()
    h5 = read_h5(tmp_path / "o.h5")
    np.testing.assert_array_equal(h5["preds/mask"], batch["preds"]["mask"])
    assert [x.decode() for x in h5["metadata/ranges/id"]] == ["g0", "g1", "g2"]
    monkeypatch.setattr(writers, "np", np)  # without the patch: kipoi's own failure
    with pytest.raises(AttributeError, match="string_"):
        writers.HDF5BatchWriter(str(tmp_path / "p.h5")).batch_write(batch)


def test_shim_bed_writer_is_built(writers, tmp_path):
    batch = _batch()
    w = writers.get_writer(str(tmp_path / "o.bed"), _metadata_schema(), hdf5_chunk_size=16)
    w.batch_write(batch)
    w.close()
    lines = (tmp_path / "o.bed").read_text().splitlines()
    assert lines[0].split("\t")[:7] == ["chr", "start", "end", "name", "score", "strand", "preds/expression"]
    assert lines[2].split("\t")[:6] == ["chr1", "1", "6", "g1", ".", "-"]
    with pytest.raises(TypeError, match="dataloader_schema"):  # kipoi's own get_writer
        writers.get_writer.__wrapped__(str(tmp_path / "p.bed"), _metadata_schema())


def test_shim_tsv_writer_ignores_hdf5_options(writers, tmp_path):
    batch = _batch()
    w = writers.get_writer(str(tmp_path / "o.tsv"), _metadata_schema(), hdf5_chunk_size=16,
                           keep_metadata=True)
    w.batch_write(batch)
    w.close()
    import pandas as pd

    df = pd.read_csv(tmp_path / "o.tsv", sep="\t")
    np.testing.assert_allclose(df["preds/mask/4"], batch["preds"]["mask"][:, 4], rtol=1e-6)
    with pytest.raises(TypeError, match="hdf5_chunk_size"):
        writers.get_writer.__wrapped__(str(tmp_path / "p.tsv"), hdf5_chunk_size=16)


def test_shim_is_idempotent(writers):
    from kipoi.cli import main as cli_main

    from seq2exp_plugin.adapters import kipoi as adapter

    wrapped, view, compare = writers.get_writer, writers.np, cli_main.compare_numpy_dict
    assert adapter.apply_writer_compat() == {"numpy_aliases": False, "get_writer": False, "test_compare": False,
                                             "dataloader_args": False}
    assert writers.get_writer is wrapped and writers.np is view and cli_main.compare_numpy_dict is compare
    assert not getattr(writers.get_writer.__wrapped__, "_seq2exp_compat", False)  # one layer only


def test_shim_kipoi_test_comparison_checks_every_output(writers):
    from kipoi.cli import main as cli_main
    from kipoi_utils.utils import compare_numpy_dict as original

    expected = {"expression": np.zeros(2), "mask": np.zeros((2, 3))}
    wrong_mask = {"expression": np.zeros(2), "mask": np.ones((2, 3))}
    assert original(wrong_mask, expected, exact=False, decimal=5) is False  # says "different"...
    assert original(expected, expected, exact=False, decimal=5) is False  # ...whatever the data
    assert cli_main.compare_numpy_dict(expected, expected, exact=False, decimal=5) is True
    with pytest.raises(AssertionError, match="output 'mask'"):
        cli_main.compare_numpy_dict(wrong_mask, expected, exact=False, decimal=5)


# ------------------------------------------------------------------------- the weights rule
def test_weights_resolution_order(tmp_path, monkeypatch):
    from seq2exp_plugin.adapters.kipoi import MissingWeightsError, resolve_weights

    for name in ("bundled", "env", "conf"):
        (tmp_path / f"{name}.ckpt").write_bytes(b"x")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SEQ2EXP_K562_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="No weights for Seq2Exp/K562"):
        resolve_weights("K562")
    assert resolve_weights("K562", bundled=str(tmp_path / "bundled.ckpt")) == tmp_path / "bundled.ckpt"
    (tmp_path / "cfg" / "seq2exp").mkdir(parents=True)
    (tmp_path / "cfg" / "seq2exp" / "weights.yaml").write_text(f"K562: {tmp_path / 'conf.ckpt'}\n")
    assert resolve_weights("K562", bundled=str(tmp_path / "bundled.ckpt")) == tmp_path / "conf.ckpt"
    monkeypatch.setenv("SEQ2EXP_K562_WEIGHTS", str(tmp_path / "env.ckpt"))
    assert resolve_weights("K562", bundled=str(tmp_path / "bundled.ckpt")) == tmp_path / "env.ckpt"
    monkeypatch.setenv("PWD", str(tmp_path))  # relative: from the shell's directory (Kipoi chdirs)
    monkeypatch.setenv("SEQ2EXP_K562_WEIGHTS", "env.ckpt")
    assert resolve_weights("K562") == tmp_path / "env.ckpt"
    monkeypatch.setenv("SEQ2EXP_K562_WEIGHTS", str(tmp_path / "missing.ckpt"))
    with pytest.raises(MissingWeightsError, match=r"\$SEQ2EXP_K562_WEIGHTS points to .*missing.ckpt"):
        resolve_weights("K562")


def test_shim_writers_write_whole_files_or_none(writers, tmp_path):
    """-o is checked before anything runs; output appears when kipoi closes the writer; a
    failed run (the writer never closed) leaves no file, not even an empty one."""
    from seq2exp_plugin.adapters import kipoi_patches as adapter

    with pytest.raises(adapter.OutputPathError, match="output file .* is a folder"):
        writers.get_writer(str(tmp_path), _metadata_schema())
    (tmp_path / "afile").write_text("x")
    with pytest.raises(adapter.OutputPathError, match="afile is a file, not a folder"):
        writers.get_writer(str(tmp_path / "afile" / "o.h5"), _metadata_schema())
    failed = writers.get_writer(str(tmp_path / "failed.h5"), _metadata_schema())
    assert not (tmp_path / "failed.h5").exists()
    adapter._remove_pending_outputs()  # what happens at exit after the model raised
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    del failed
    w = writers.get_writer(str(tmp_path / "o.tsv"), _metadata_schema())
    w.batch_write(_batch())
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "o.tsv"]


def test_misspelt_dataloader_argument_is_an_error(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    import kipoi
    import kipoi.pipeline
    from kipoi.sources import LocalSource

    from seq2exp_plugin.adapters.kipoi import DataLoaderInputError

    Dl = kipoi.get_dataloader_factory("dataloaders", LocalSource(str(ROOT)))
    with pytest.raises(DataLoaderInputError, match=r"unknown dataloader argument\(s\) \['fasta'\]"):
        kipoi.pipeline.validate_kwargs(Dl, {**demo_args(), "fasta": "x.fa"})
    assert kipoi.pipeline.validate_kwargs(Dl, demo_args()) == demo_args()


def _checkpoint_with_data(path, **data) -> Path:
    """A copy of the Demo checkpoint whose stored run configuration has ``data`` entries set."""
    import torch

    checkpoint = torch.load(DEMO / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["train_params"]["seq2exp"]["data"].update(data)
    torch.save(checkpoint, path)
    return path


def test_dataloader_reads_windows_as_the_checkpoint_was_trained(home, tmp_path, monkeypatch):
    """rc_minus_strand, the Hi-C options and the blacklist come from the entry's checkpoint by
    default (a relative blacklist from its folder); a dataloader argument that differs is refused
    with both values named."""
    monkeypatch.setenv("HOME", str(home))
    import kipoi
    from kipoi.sources import LocalSource

    from seq2exp_plugin.adapters.kipoi import DataLoaderInputError, inputs_from_checkpoint

    shutil.copy(DATA / "blacklist.bed", tmp_path / "bl.bed")
    ckpt = _checkpoint_with_data(tmp_path / "best.ckpt", rc_minus_strand=True, blacklist="bl.bed",
                                 hic={"balance": False})
    assert inputs_from_checkpoint(ckpt) == (True, str(tmp_path / "bl.bed"), {"balance": False})
    same = tmp_path / "copy.bed"
    shutil.copy(DATA / "blacklist.bed", same)
    assert inputs_from_checkpoint(ckpt, True, str(same), {"balance": False})[1] == str(same)
    with pytest.raises(DataLoaderInputError, match="rc_minus_strand=False: .* was trained with rc_minus_strand=True"):
        inputs_from_checkpoint(ckpt, rc_minus_strand=False)
    with pytest.raises(DataLoaderInputError, match=r"hic_options \{\}: .* Hi-C options \{'balance': False\}"):
        inputs_from_checkpoint(ckpt, hic_options={})
    other = tmp_path / "other.bed"
    other.write_text("chr1\t0\t100\n")
    with pytest.raises(DataLoaderInputError, match="blacklist .*other.bed: .* another blacklist"):
        inputs_from_checkpoint(ckpt, blacklist=str(other))
    no_blacklist = _checkpoint_with_data(tmp_path / "none.ckpt", blacklist=None)
    with pytest.raises(DataLoaderInputError, match="was trained with no blacklist"):
        inputs_from_checkpoint(no_blacklist, blacklist=str(other))
    (tmp_path / "bl.bed").unlink()
    with pytest.raises(DataLoaderInputError, match="the blacklist bl.bed, which is not here"):
        inputs_from_checkpoint(ckpt)
    # the dataloader of an entry: its checkpoint's rc_minus_strand reverses the "-" genes
    shutil.copy(DATA / "blacklist.bed", tmp_path / "bl.bed")
    Dl = kipoi.get_dataloader_factory("dataloaders", LocalSource(str(ROOT)))
    args = {k: v for k, v in demo_args(gene_ids=["SYNG00001", "SYNG00005"]).items() if k != "blacklist"}
    plain = Dl(**args)
    entry = Dl(**args, entry="Demo", weights=str(ckpt))
    assert entry.windows.dataset.rc_minus_strand and not plain.windows.dataset.rc_minus_strand
    with pytest.raises(DataLoaderInputError, match="rc_minus_strand=False"):
        Dl(**args, entry="Demo", weights=str(ckpt), rc_minus_strand=False)


def test_a_checkpoint_with_tracks_in_another_order_is_refused(tmp_path, monkeypatch):
    """The dataloader's channels are (h3k27ac, dnase, hic): a model that reads its tracks in
    another order would give each channel another track's weights."""
    import torch

    monkeypatch.setenv("HOME", str(tmp_path))
    from seq2exp_plugin.adapters.kipoi import InputMismatchError, Seq2ExpKipoiModel

    checkpoint = torch.load(DEMO / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["model_params"]["signals"] = ["dnase", "h3k27ac", "hic"]
    torch.save(checkpoint, tmp_path / "swapped.ckpt")
    with pytest.raises(InputMismatchError, match=r"reads the signal tracks \['dnase', 'h3k27ac', 'hic'\] "
                                                 r"in this order, the Kipoi dataloader gives"):
        Seq2ExpKipoiModel(weights=str(tmp_path / "swapped.ckpt"), entry="Demo", device="cpu")


def test_a_checkpoint_trained_with_the_bundled_blacklist_reads_it(tmp_path):
    """``data.blacklist: hg38`` (the K562/GM12878 recipes) names the bundled BED, not a file beside
    the checkpoint; the same name or that BED given to the dataloader agrees, another BED does not."""
    from seq2exp_plugin.adapters.kipoi import DataLoaderInputError, inputs_from_checkpoint
    from seq2exp_plugin.data.blacklist import BUNDLED

    ckpt = _checkpoint_with_data(tmp_path / "best.ckpt", blacklist="hg38")
    assert inputs_from_checkpoint(ckpt)[1] == str(BUNDLED["hg38"])
    assert inputs_from_checkpoint(ckpt, blacklist="hg38")[1] == str(BUNDLED["hg38"])
    other = tmp_path / "other.bed"
    other.write_text("chr1\t0\t100\n")
    with pytest.raises(DataLoaderInputError, match="another blacklist"):
        inputs_from_checkpoint(ckpt, blacklist=str(other))
