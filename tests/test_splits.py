"""Gene-level splits (lists, a table column, contiguous folds) and `seq2exp cv` end to end."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seq2exp_plugin.cli import main
from seq2exp_plugin.data.splits import genome_order, split_labels
from seq2exp_plugin.train.config import PAPER_EPOCHS, load_config
from seq2exp_plugin.train.cv import FoldResult, format_results, run_from_files, write_results
from seq2exp_plugin.train.fit import make_dataset

from conftest import TINY_STACK, TINY_WINDOW, write_train_config


def _obs() -> pd.DataFrame:
    chroms = ["chr10", "chr2", "chrX", "chr2", "chr1", "chr10", "chr1"]
    tss = [50, 900, 10, 100, 700, 10, 30]
    ids = [f"G{i}" for i in range(len(chroms))]
    return pd.DataFrame({"chrom": chroms, "tss": tss, "split": ["train"] * 5 + ["valid", "test"]}, index=ids)


def test_contiguous_folds_follow_the_genome_and_cover_every_gene_once():
    obs = _obs()
    order = [obs.index[i] for i in genome_order(obs)]
    assert order == ["G6", "G4", "G3", "G1", "G5", "G0", "G2"]  # chr1, chr2, chr10, chrX by TSS
    tested = []
    for fold in range(3):
        labels = split_labels(obs, folds=3, fold=fold)
        test, valid = labels.index[labels == "test"].tolist(), labels.index[labels == "valid"].tolist()
        blocks = [order[0:3], order[3:5], order[5:7]]  # numpy.array_split sizes 3, 2, 2
        assert sorted(test) == sorted(blocks[fold]) and sorted(valid) == sorted(blocks[(fold + 1) % 3])
        tested += test
    assert sorted(tested) == sorted(obs.index)
    with pytest.raises(ValueError, match="data.fold must be in 0..2"):
        split_labels(obs, folds=3, fold=3)


def test_fold_column_and_gene_lists(tmp_path):
    obs = _obs()
    labels = split_labels(obs, fold_column="chrom", fold=1)  # values sorted: chr1 chr10 chr2 chrX
    assert labels[obs["chrom"] == "chr10"].eq("test").all() and labels[obs["chrom"] == "chr2"].eq("valid").all()
    listed = tmp_path / "test_genes.txt"
    listed.write_text("# held out\nG0\nG1 extra-field\n")
    labels = split_labels(obs, test_genes=str(listed))
    assert labels.to_dict() == {"G0": "test", "G1": "test", "G2": "train", "G3": "train", "G4": "train",
                                "G5": "valid", "G6": "train"}  # the table's test gene G6 now trains
    listed.write_text("G0\nNOPE\n")
    with pytest.raises(KeyError, match="NOPE"):
        split_labels(obs, test_genes=str(listed))
    with pytest.raises(KeyError, match="'fold' .*data.fold_column"):
        split_labels(obs, fold_column="fold")


def test_make_dataset_uses_the_run_folds(tiny_synth, tmp_path):
    run = load_config(write_train_config(tiny_synth, tmp_path, **{"data.folds": 4, "data.fold": 2}))
    sets = {s: set(make_dataset(run, s).gene_ids) for s in ("train", "valid", "test")}
    assert sum(map(len, sets.values())) == 20 and not (sets["train"] & sets["test"]) and len(sets["test"]) == 5
    default = load_config(write_train_config(tiny_synth, tmp_path / "d"))  # the chromosome split
    assert set(make_dataset(default, "test").gene_ids) != sets["test"]


def test_cv_from_files_writes_the_table(tiny_synth, tmp_path, capsys, caplog, recwarn):
    """docs/training.md's small run: raw files in, per-fold and mean +/- sd table out (tiny model)."""
    cell = tiny_synth / "synthA"
    out = tmp_path / "cv"
    stack = [f"model.{part}.{k}={v}" for part in ("generator", "predictor") for k, v in TINY_STACK.items()]
    caplog.set_level(logging.INFO)
    code = main(["cv", "--out", str(out), "--folds", "3", "--variants", "seq2exp", "promoter-ridge",
                 "--genome", str(tiny_synth / "genome.fa"), "--tss", str(tiny_synth / "tss.bed"),
                 "--expression", str(tiny_synth / "expression.tsv"), "--cell-type", "synthA",
                 "--expression-column", "synthA", "--halflife", str(tiny_synth / "halflife.tsv"),
                 "--signals", f"h3k27ac={cell / 'h3k27ac.bw'}", f"dnase={cell / 'dnase.bw'}", f"hic={cell / 'hic.cool'}",
                 "--set", f"data.window={TINY_WINDOW}", "data.num_workers=0", "model.pool_width=200",
                 "model.mask.promoter_keep=200", "train.max_steps=3", "train.warmup_steps=1",
                 "train.val_every_steps=3", "train.batch_size=4", "train.progress_bar=false", *stack])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # training without a progress bar still logs its steps; Lightning's tip and warning are gone
    assert "step 3/3: train_loss" in captured.out and "fold 2 promoter-ridge: MSE" in captured.out
    assert not any("Tip:" in r.getMessage() or "weights_only" in r.getMessage() for r in caplog.records)
    assert not any("LeafSpec" in str(w.message) for w in recwarn)
    table = pd.read_csv(out / "cv.tsv", sep="\t")
    assert sorted(zip(table["fold"], table["variant"])) == [(f, v) for f in range(3) for v in ("promoter-ridge", "seq2exp")]
    assert table.groupby("variant")["n_test"].sum().eq(20).all()  # every gene tested once
    summary = json.loads((out / "cv.json").read_text())["summary"]
    for variant, rows in table.groupby("variant"):
        for metric in ("mse", "pearson", "spearman"):
            assert summary[variant][metric]["mean"] == pytest.approx(rows[metric].mean(), rel=1e-5, abs=1e-6)
            assert summary[variant][metric]["sd"] == pytest.approx(rows[metric].std(ddof=1), rel=1e-5, abs=1e-6)
    assert (table["outside_range"] <= 1.0).all()  # the eval clamp bounds every prediction
    assert "mean +/- sd" in (out / "cv.md").read_text()
    run = load_config(out / "base.yaml")
    assert list(run.data.signals) == ["h3k27ac", "dnase", "hic"] and np.isfinite(table["mse"]).all()
    assert run.train.epochs is None  # train.max_steps was given: that is the length


def test_cv_refused_before_training_leaves_no_folder(tiny_synth, tmp_path, capsys):
    """Too many folds for the genes: refused with exit 2 before any training, and the output
    folder the run would have made (gene table, base.yaml) is not left behind."""
    cell = tiny_synth / "synthA"
    out = tmp_path / "cv"
    code = main(["cv", "--out", str(out), "--folds", "12", "--variants", "ridge",
                 "--genome", str(tiny_synth / "genome.fa"), "--tss", str(tiny_synth / "tss.bed"),
                 "--expression", str(tiny_synth / "expression.tsv"), "--cell-type", "synthA",
                 "--halflife", str(tiny_synth / "halflife.tsv"),
                 "--signals", f"h3k27ac={cell / 'h3k27ac.bw'}", f"dnase={cell / 'dnase.bw'}", f"hic={cell / 'hic.cool'}",
                 "--set", f"data.window={TINY_WINDOW}"])
    assert code == 2 and "every split needs at least 2: use fewer folds" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "mine"
    (kept / "notes.txt").parent.mkdir()
    (kept / "notes.txt").write_text("user data\n")
    assert main(["cv", "--out", str(kept), "--folds", "12", "--variants", "ridge", "--genome",
                 str(tiny_synth / "genome.fa"), "--tss", str(tiny_synth / "tss.bed"), "--expression",
                 str(tiny_synth / "expression.tsv"), "--cell-type", "synthA", "--halflife",
                 str(tiny_synth / "halflife.tsv"), "--signals", f"h3k27ac={cell / 'h3k27ac.bw'}",
                 f"dnase={cell / 'dnase.bw'}", f"hic={cell / 'hic.cool'}"]) == 2
    assert (kept / "notes.txt").read_text() == "user data\n"  # a folder the user had stays


def test_cv_from_files_trains_the_papers_passes_unless_told(tiny_synth, tmp_path):
    cell = tiny_synth / "synthA"
    files = dict(genome=str(tiny_synth / "genome.fa"), tss=str(tiny_synth / "tss.bed"),
                 expression=str(tiny_synth / "expression.tsv"), cell_type="synthA",
                 halflife=str(tiny_synth / "halflife.tsv"),
                 signals={"h3k27ac": str(cell / "h3k27ac.bw"), "dnase": str(cell / "dnase.bw"),
                          "hic": str(cell / "hic.cool")})
    run = run_from_files(tmp_path / "a", **files, settings={"data.window": TINY_WINDOW})
    assert run.train.epochs == PAPER_EPOCHS == 25
    run = run_from_files(tmp_path / "b", **files, settings={"train.max_steps": 7})
    assert (run.train.epochs, run.train.max_steps) == (None, 7)


def _with_other_contigs(bigwig: Path, out: Path, scale: float) -> Path:
    """``bigwig`` times ``scale`` (a p-value-like range), with the contigs an ENCODE bigWig has
    and the genome does not."""
    import pyBigWig

    src = pyBigWig.open(str(bigwig))
    chroms = dict(src.chroms())
    extra = {"chrM": 16_569, "chrEBV": 171_823, "chr1_KI270706v1_random": 175_055}
    dst = pyBigWig.open(str(out), "w")
    dst.addHeader(sorted({**chroms, **extra}.items()))
    for chrom in sorted({**chroms, **extra}):
        intervals = src.intervals(chrom) if chrom in chroms else [(0, 100, 3.0 / scale)]
        dst.addEntries([chrom] * len(intervals), [a for a, _, _ in intervals], ends=[b for _, b, _ in intervals],
                       values=[v * scale for _, _, v in intervals])
    dst.close()
    src.close()
    return out


def _cool_as_hic(cool: Path, out: Path) -> Path:
    """The same raw contacts as a .hic file (hictkpy's writer; no normalisation vectors)."""
    import cooler
    import hictkpy

    c = cooler.Cooler(str(cool))
    writer = hictkpy.hic.FileWriter(str(out), dict(zip(c.chromnames, map(int, c.chromsizes))), [c.binsize])
    pixels = c.pixels(join=True)[:]
    writer.add_pixels(pixels[["chrom1", "start1", "end1", "chrom2", "start2", "end2", "count"]]
                      .astype({"count": np.int32}))
    writer.finalize()
    return out


def test_cv_from_files_takes_the_public_sources_conventions(tiny_synth, tmp_path):
    """The conventions of the paper's sources at once: Xpresso's TSS BED (chromosomes without
    "chr", a 20 kb window around each TSS); EPInformer's expression table (CSV keyed by ENSID -
    versioned here -, a "Gene name", CAGE columns not named after the cell type, other columns of
    any kind, the half-life features in the same file, a gene outside the TSS set); bigWigs on
    another scale with contigs the genome lacks; the Hi-C as .hic. Genes, targets, gene features
    and the Hi-C channel are those of the plain files."""
    cell = tiny_synth / "synthA"
    tss = pd.read_csv(tiny_synth / "tss.bed", sep="\t", header=None)
    assert (tss[1] >= 10_000).all()
    xpresso = pd.DataFrame({0: tss[0].str.replace("chr", "", regex=False), 1: tss[1] - 10_000,
                            2: tss[1] + 10_000, 3: tss[3], 4: 0, 5: tss[5]})
    xpresso.to_csv(tmp_path / "promoters.bed", sep="\t", header=False, index=False)
    expression = pd.read_csv(tiny_synth / "expression.tsv", sep="\t")
    halflife = pd.read_csv(tiny_synth / "halflife.tsv", sep="\t")
    epinformer = pd.DataFrame({"ENSID": expression["gene_id"] + ".7", "Gene name": "G, a gene",
                               **halflife.drop(columns="gene_id"),
                               "synthA_CAGE_128*3_sum": expression["synthA"], "synthB_CAGE_128*3_sum": expression["synthB"],
                               "Actual_synthA": np.log10(expression["synthA"]) - 1.0})
    extra = {"ENSID": "ENSG00000999999", "Gene name": "X", "synthA_CAGE_128*3_sum": 5.0}
    pd.concat([epinformer, pd.DataFrame([extra])]).to_csv(tmp_path / "gene_expr.csv", index=False)
    settings = {"data.window": TINY_WINDOW, "data.hic.resolution": 1000, "data.hic.balance": False,
                "data.hic.normalization": "NONE"}
    signals = {"h3k27ac": str(_with_other_contigs(cell / "h3k27ac.bw", tmp_path / "h3k27ac.bigWig", 50.0)),
               "dnase": str(_with_other_contigs(cell / "dnase.bw", tmp_path / "dnase.bigWig", 50.0)),
               "hic": str(_cool_as_hic(cell / "hic.cool", tmp_path / "hic.hic"))}
    with pytest.warns(UserWarning, match=r"gene_expr.csv: dropped 1 gene\(s\) not in the TSS set"):
        public = run_from_files(tmp_path / "public", str(tiny_synth / "genome.fa"), str(tmp_path / "promoters.bed"),
                                str(tmp_path / "gene_expr.csv"), signals, "synthA",
                                halflife=str(tmp_path / "gene_expr.csv"), settings=settings,
                                expression_column="synthA_CAGE_128*3_sum")
    reference = run_from_files(
        tmp_path / "plain", str(tiny_synth / "genome.fa"), str(tiny_synth / "tss.bed"),
        str(tiny_synth / "expression.tsv"),
        {"h3k27ac": str(cell / "h3k27ac.bw"), "dnase": str(cell / "dnase.bw"), "hic": str(cell / "hic.cool")},
        "synthA", halflife=str(tiny_synth / "halflife.tsv"), settings=settings)
    ours, theirs = make_dataset(public, None), make_dataset(reference, None)
    assert list(ours.gene_ids) == list(theirs.gene_ids) and len(ours) == 20
    np.testing.assert_array_equal(ours.tss, theirs.tss)
    np.testing.assert_allclose(ours.targets, theirs.targets)
    np.testing.assert_allclose(ours.features[:, :8], theirs.features[:, :8], rtol=1e-6)
    for i in (0, 7, 19):
        np.testing.assert_allclose(ours[i]["signals"][2], theirs[i]["signals"][2], rtol=1e-6)


def test_cv_table_compares_every_fold_with_the_ridge(tmp_path):
    """The issue's bar, per fold: each MSE over that fold's ridge MSE; the summary keeps the worst."""
    def result(variant, fold, mse):
        return FoldResult(variant, fold, {"mse": mse, "pearson": 0.5, "spearman": 0.4}, 10, 0.25 * fold, "x.ckpt")

    results = [result("ridge", 0, 0.08), result("seq2exp", 0, 0.10), result("ridge", 1, 0.25),
               result("seq2exp", 1, 0.20), result("seq2exp", 2, 0.30)]  # fold 2: no ridge
    write_results(tmp_path, results)
    table = pd.read_csv(tmp_path / "cv.tsv", sep="\t").set_index(["variant", "fold"])
    assert table.loc[("seq2exp", 0), "mse_over_ridge"] == pytest.approx(1.25)
    assert table.loc[("seq2exp", 1), "mse_over_ridge"] == pytest.approx(0.8)
    assert np.isnan(table.loc[("seq2exp", 2), "mse_over_ridge"])
    assert table.loc[("ridge", 1), "mse_over_ridge"] == 1.0
    summary = json.loads((tmp_path / "cv.json").read_text())["summary"]
    assert summary["seq2exp"]["mse_over_ridge"] == {"max": pytest.approx(1.25)}
    assert summary["seq2exp"]["outside_range"] == {"max": 0.5}
    assert summary["seq2exp"]["mse"] == {"mean": pytest.approx(0.2), "sd": pytest.approx(0.1)}
    lines = (tmp_path / "cv.md").read_text().splitlines()
    assert lines[0].endswith("| outside range | MSE / ridge |")
    assert lines[3] == "| 0 | seq2exp | 10 | 0.1000 | 0.5000 | 0.4000 | 0.000 | 1.25 |"
    assert lines[6].endswith("| 0.500 | - |")
    assert lines[8].startswith("| mean +/- sd | seq2exp | 30 |") and lines[8].endswith("| max 0.500 | max 1.25 |")
    assert "MSE / ridge" not in format_results([r for r in results if r.variant == "seq2exp"])


def test_evaluate_on_a_gene_list(tiny_checkpoint, tmp_path):
    listed = tmp_path / "genes.txt"
    listed.write_text("SYNG00003\nSYNG00007\nSYNG00011\n")
    report = tmp_path / "metrics.json"
    assert main(["evaluate", str(tiny_checkpoint), "--genes-file", str(listed), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["genes"] == ["SYNG00003", "SYNG00007", "SYNG00011"] and metrics["n_genes"] == 3
    assert metrics["split"] is None
    listed.write_text("SYNG00003\nNOPE\n")
    assert main(["evaluate", str(tiny_checkpoint), "--genes-file", str(listed)]) == 2
