"""Differential elements between two cell types: `seq2exp predict --cell-types A B` (both masks,
their difference, the elements kept in one cell type only) and their AUPRC against the
per-cell-type synthetic truth."""

import json
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pyBigWig
import pytest

from seq2exp_plugin.data.windows import WindowRecord
from seq2exp_plugin.discover.differential import MaskPairWriter, differential_elements, predict_differential
from seq2exp_plugin.discover.recovery import differential_labels, differential_recovery
from seq2exp_plugin.errors import InputError

from conftest import write_train_config

CELLS = ["synthA", "synthB"]
GENES = ["SYNG00001", "SYNG00002", "SYNG00003", "SYNG00004"]


# ---------------------------------------------------------------------------- without a model
def test_differential_elements_are_runs_kept_in_one_cell_type_only():
    a = np.zeros(30)
    b = np.zeros(30)
    a[2:10] = 0.9
    b[6:14] = 0.8  # overlap 6:10 kept in both: not differential
    a[20:21] = 0.7
    b[24:27] = 0.6
    assert differential_elements(a, b) == [(2, 6, 0), (10, 14, 1), (20, 21, 0), (24, 27, 1)]
    assert differential_elements(a, b, min_length=2) == [(2, 6, 0), (10, 14, 1), (24, 27, 1)]
    assert differential_elements(a, b, threshold=0.85) == [(2, 10, 0)]
    assert differential_elements(a, a) == []


def test_mask_pair_writer_difference_is_the_difference_of_the_merged_masks(tmp_path):
    """Where windows overlap each mask file holds the maximum; the difference file is their
    difference (not the maximum of per-gene differences)."""
    sizes = {"chr1": 100}
    g1, g2 = WindowRecord("G1", "chr1", 10, 50), WindowRecord("G2", "chr1", 30, 70, "-", reverse=True)
    rng = np.random.default_rng(1)
    scores = {g: (rng.random(40), rng.random(40)) for g in ("G1", "G2")}
    paths = [tmp_path / n for n in ("a.bw", "b.bw", "d.bw")]
    with MaskPairWriter(*paths, sizes, decimals=3) as w:
        w.add(g1, *scores["G1"])
        w.add(g2, *scores["G2"])
    read = [np.array(pyBigWig.open(str(p)).values("chr1", 0, 100)) for p in paths]
    merged = []
    for k in range(2):
        want = np.full(100, np.nan)
        want[10:50] = scores["G1"][k]
        want[30:70] = np.fmax(want[30:70], scores["G2"][k][::-1])
        merged.append(want)
        np.testing.assert_allclose(read[k], want, atol=6e-4)
    np.testing.assert_allclose(read[2], read[0] - read[1], atol=1e-6)
    assert np.isnan(read[2][:10]).all() and np.isnan(read[2][70:]).all()
    # not the maximum of the per-gene differences
    per_gene = np.fmax(np.r_[np.full(30, np.nan), (scores["G1"][0] - scores["G1"][1])[20:], np.full(50, np.nan)],
                       np.r_[np.full(30, np.nan), (scores["G2"][0] - scores["G2"][1])[::-1], np.full(30, np.nan)])
    assert not np.allclose(read[2][30:50], per_gene[30:50], atol=1e-3)


# ------------------------------------------------------------------------------- with a model
@pytest.fixture(scope="module")
def two_cell_checkpoint(tiny_synth, tmp_path_factory) -> Path:
    """best.ckpt of a 2-step Seq2Exp run on both cell types of ``tiny_synth``."""
    from seq2exp_plugin.train.config import load_config
    from seq2exp_plugin.train.fit import fit

    signals = {s: str(tiny_synth / "{cell_type}" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
               for s in ("h3k27ac", "dnase", "hic")}
    run = load_config(write_train_config(tiny_synth, tmp_path_factory.mktemp("two_cells"), **{
        "data.signals": signals, "data.cell_types": CELLS, "train.batch_size": 4, "train.max_steps": 2,
        "train.val_every_steps": 2}))
    fit(run)
    return Path(run.out_dir) / "checkpoints" / "best.ckpt"


def _truth_with_an_element_of_synthA_only(synth: Path, out: Path) -> Path:
    """The synth truths with one more R_ag element of SYNG00001 in synthA (the tiny synth's
    cell-type-specific enhancers lie outside the 2 kb windows of these models)."""
    from seq2exp_plugin.discover.recovery import read_truth

    out.mkdir()
    for cell in CELLS:
        truth = read_truth(synth / "truth" / f"{cell}.bed")
        if cell == "synthA":
            extra = truth[truth["gene_id"] == "SYNG00001"].iloc[:1].copy()
            extra[["start", "end", "class"]] = [10_400, 10_600, "R_ag"]  # TSS 10,000, promoter to 10,350
            truth = pd.concat([truth, extra])
        with open(out / f"{cell}.bed", "w") as fh:
            fh.write("#" + "\t".join(truth.columns) + "\n")
            truth.to_csv(fh, sep="\t", header=False, index=False)
    return out


def _values(path, chrom, start, end):
    with pyBigWig.open(str(path)) as bw:
        return np.array(bw.values(chrom, start, end))


THRESHOLD = 0.45  # a 2-step model's masks lie near 0.5: this one is crossed in one cell type only at some bp


def test_predict_cell_types_writes_both_masks_their_difference_and_the_differential_elements(
        tiny_synth, two_cell_checkpoint, tmp_path):
    from seq2exp_plugin.cli import main
    from seq2exp_plugin.train.evaluate import load_run, predict_dataset
    from seq2exp_plugin.train.fit import make_dataset

    out = tmp_path / "diff"
    truth = _truth_with_an_element_of_synthA_only(tiny_synth, tmp_path / "truth")
    assert main(["predict", str(two_cell_checkpoint), "--out", str(out), "--cell-types", *CELLS,
                 "--genes", *GENES, "--threshold", str(THRESHOLD), "--plots", "2",
                 "--truth", str(truth / "{cell_type}.bed")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "mask.synthA.bw", "mask.synthB.bw", "difference.bw", "elements.synthA.bed", "elements.synthB.bed",
        "differential.bed", "expression.tsv", "expression.h5ad", "plots", "summary.json"])
    assert len(list((out / "plots").iterdir())) == 2
    # each cell type's predictions are those of the model on that cell type's signals alone
    table = pd.read_csv(out / "expression.tsv", sep="\t")
    assert list(table["gene_id"]) == [g for g in GENES for _ in CELLS] and list(table["cell_type"]) == CELLS * 4
    direct = {}
    for cell in CELLS:
        module, run = load_run(str(two_cell_checkpoint), {"cell_type": cell})
        for gene in predict_dataset(module.net, make_dataset(run, None, gene_ids=GENES), progress=False):
            direct[gene.gene_id, cell] = gene
    for row in table.itertuples():
        assert row.predicted == pytest.approx(direct[row.gene_id, row.cell_type].prediction, rel=1e-5)
    adata = anndata.read_h5ad(out / "expression.h5ad")
    assert list(adata.var_names) == CELLS and list(adata.obs_names) == GENES
    assert adata.X[1, 1] == pytest.approx(direct[GENES[1], "synthB"].prediction, rel=1e-5)
    differs = [not np.allclose(direct[g, "synthA"].score, direct[g, "synthB"].score) for g in GENES]
    assert all(differs)

    windows = {g: direct[g, "synthA"].window for g in GENES}
    chrom = windows[GENES[0]].chrom
    lo, hi = min(w.start for w in windows.values()), max(w.end for w in windows.values())
    mask_a, mask_b, difference = (_values(out / name, chrom, lo, hi)
                                  for name in ("mask.synthA.bw", "mask.synthB.bw", "difference.bw"))
    covered = np.isfinite(mask_a)
    assert covered.sum() >= 2000 and np.array_equal(covered, np.isfinite(difference))
    np.testing.assert_allclose(difference[covered], (mask_a - mask_b)[covered], atol=1e-6)
    assert np.abs(difference[covered]).max() > 0.01

    # differential.bed: every listed bp is kept in the named cell type and not the other, in that
    # gene's masks (the bigWigs hold the maximum over overlapping windows, at 3 decimals)
    bed = pd.read_csv(out / "differential.bed", sep="\t")
    assert list(bed.columns) == ["#chrom", "start", "end", "name", "score", "strand", "kept_in", "mask_synthA",
                                 "mask_synthB", "predicted_synthA", "predicted_synthB"]
    assert set(bed["kept_in"]) == set(CELLS) and set(bed["name"]) <= set(GENES)
    genomic = {(g, c): windows[g].genomic(direct[g, c].score) for g in GENES for c in CELLS}
    listed = {g: np.zeros(windows[g].length, bool) for g in GENES}
    for row in bed.itertuples():
        at = slice(row.start - windows[row.name].start, row.end - windows[row.name].start)
        a, b = genomic[row.name, "synthA"][at], genomic[row.name, "synthB"][at]
        kept, other = (a, b) if row.kept_in == "synthA" else (b, a)
        assert (kept >= THRESHOLD).all() and (other < THRESHOLD).all(), row
        assert (row.mask_synthA, row.mask_synthB) == pytest.approx((a.mean(), b.mean()), abs=1e-4)
        assert row.predicted_synthB == pytest.approx(direct[row.name, "synthB"].prediction, rel=1e-4)
        listed[row.name][at] = True
    for g in GENES:  # ...and every bp kept in exactly one cell type is listed
        only = (genomic[g, "synthA"] >= THRESHOLD) != (genomic[g, "synthB"] >= THRESHOLD)
        np.testing.assert_array_equal(listed[g], only)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["cell_types"] == CELLS and summary["n_genes"] == 4 and set(summary["metrics"]) == set(CELLS)
    labels = differential_labels(truth / "synthA.bed", truth / "synthB.bed", list(windows.values()),
                                 exclude_center=200, blacklist=run.data.blacklist)
    assert sum(int((v == 1).sum()) for v in labels.values()) == 200  # the added element
    for key, scores in (("auprc", "score"), ("auprc_signal", "signal_score")):
        want = differential_recovery(*({g: getattr(direct[g, c], scores) for g in GENES} for c in CELLS), labels)
        assert summary["differential"][key] == pytest.approx(want["auprc"])


@pytest.mark.parametrize("cells, data, truth, message", [
    (["synthA", "synthC"], [], None, "cell type 'synthC' not in"),
    (["synthA", "synthA"], [], None, "names 'synthA' twice"),
    (["synthA"], [], None, "compares two cell types, got 1"),
    (CELLS, ["cell_type=synthA"], None, "--cell-types and --data cell_type"),
    (CELLS, [], "truth/synthA.bed", "--truth with --cell-types: write {cell_type}"),
])
def test_bad_cell_types_are_refused_before_any_output(two_cell_checkpoint, tiny_synth, tmp_path, cells, data,
                                                     truth, message):
    from seq2exp_plugin.typed_config import parse_assignments

    out = tmp_path / "sub" / "diff"
    with pytest.raises(InputError, match=message):
        predict_differential(str(two_cell_checkpoint), out, cells, gene_ids=GENES[:1],
                             data_overrides=parse_assignments(data), progress=False,
                             truth=None if truth is None else str(tiny_synth / truth))
    assert not out.parent.exists()


def test_the_command_line_reports_a_bad_cell_type_in_one_line(two_cell_checkpoint, tmp_path, capsys):
    from seq2exp_plugin.cli import main

    out = tmp_path / "diff"
    assert main(["predict", str(two_cell_checkpoint), "--out", str(out), "--cell-types", "synthB", "synthB"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--cell-types names 'synthB' twice" in err and len(err.splitlines()) == 1
    # without --cell-types a several-cell-type model still predicts one cell type at a time
    assert main(["predict", str(two_cell_checkpoint), "--out", str(out)]) == 2
    assert "--data cell_type=NAME (or two side by side with --cell-types A B)" in capsys.readouterr().err
    assert not out.exists()


def test_a_checkpoint_reading_one_cell_types_files_is_refused(tiny_checkpoint, tiny_synth, tmp_path):
    """A model trained on synthA's files (no {cell_type} in its signal paths) cannot read
    another cell type's signals, unless --data gives paths per cell type."""
    out = tmp_path / "diff"
    with pytest.raises(InputError, match=r"--cell-types: the signals of .* hold no \{cell_type\}"):
        predict_differential(str(tiny_checkpoint), out, CELLS, gene_ids=GENES[:1], progress=False)
    assert not out.exists()
    signals = {s: str(tiny_synth / "{cell_type}" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
               for s in ("dnase", "h3k27ac", "hic")}  # the model's order
    predict_differential(str(tiny_checkpoint), out, CELLS, gene_ids=GENES[:1], progress=False, max_plots=0,
                         data_overrides={"signals": signals})
    assert (out / "difference.bw").is_file()


def test_an_interrupted_run_leaves_nothing(two_cell_checkpoint, tmp_path, monkeypatch):
    """Ctrl-C while the files stream out (at the first plot) leaves no output and no temporary."""
    import seq2exp_plugin.discover.differential as differential

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(differential, "plot_gene", interrupt)
    with pytest.raises(KeyboardInterrupt):
        predict_differential(str(two_cell_checkpoint), tmp_path / "diff", CELLS, gene_ids=GENES, progress=False)
    assert list(tmp_path.iterdir()) == []
