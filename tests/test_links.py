"""`seq2exp links` and `seq2exp benchmark-links`: enhancer-gene links scored as the CRISPR benchmark does."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pyBigWig
import pytest

from conftest import REAL_DIR

from seq2exp_plugin.cli import main
from seq2exp_plugin.data.crispr import CRISPR_COLUMNS
from seq2exp_plugin.discover.prcurve import average_precision, precision_at_recall, precision_recall_curve
from seq2exp_plugin.discover.regions import call_elements, elements_to_genomic
from seq2exp_plugin.train.evaluate import load_run, predict_dataset
from seq2exp_plugin.train.fit import make_dataset

GENES = ["SYNG00001", "SYNG00002", "SYNG00003", "SYNG00004"]


# ------------------------------------------------------------------------------- PR metrics
def test_average_precision_equals_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(200) < 0.2
        s = np.round(rng.random(200) + y * 0.3, 1)  # many ties
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_pr_metrics_on_a_hand_computed_case():
    y = np.array([1, 0, 1, 1, 0, 0], bool)
    s = np.array([0.9, 0.8, 0.7, 0.7, 0.2, 0.0])
    precision, recall, thresholds = precision_recall_curve(y, s)
    # thresholds 0.9 (1/1), 0.8 (1/2), 0.7 (3/4, the tie enters together), 0.2 (3/5), 0 (3/6)
    assert list(thresholds) == [0.9, 0.8, 0.7, 0.2, 0.0]
    assert precision == pytest.approx([1, 1 / 2, 3 / 4, 3 / 5, 1 / 2])
    assert recall == pytest.approx([1 / 3, 1 / 3, 1, 1, 1])
    assert average_precision(y, s) == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 4)
    assert precision_at_recall(y, s, 0.7) == pytest.approx((3 / 4, 0.7))
    assert precision_at_recall(y, s, 0.3) == pytest.approx((1.0, 0.9))
    assert np.isnan(average_precision(np.zeros(3, bool), [1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        precision_recall_curve(y, np.r_[s[:-1], np.nan])


# ------------------------------------------------------------------------------------ links
@pytest.fixture(scope="module")
def links_run(tiny_synth, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("links") / "links"
    assert main(["links", str(tiny_checkpoint), "--split", "all", "--out", str(out)]) == 0
    return out


def _predictions(checkpoint) -> dict:
    module, run = load_run(str(checkpoint))
    return {g.gene_id: g for g in predict_dataset(module.net, make_dataset(run, None, gene_ids=GENES), progress=False)}


def _links(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", compression="gzip")


def test_links_are_the_mask_elements_with_their_scores_and_signals(tiny_synth, tiny_checkpoint, links_run):
    table = _links(links_run / "links.tsv.gz")
    assert list(table.columns[:11]) == ["chr", "start", "end", "name", "class", "TargetGene", "TargetGeneTSS",
                                        "TargetGeneEnsemblID", "CellType", "distance", "Score"]
    genes = _predictions(tiny_checkpoint)
    dnase = pyBigWig.open(str(tiny_synth / "synthA" / "dnase.bw"))
    for gene_id, gene in genes.items():
        mine = table[table["TargetGeneEnsemblID"] == gene_id].sort_values("start")
        want = elements_to_genomic(call_elements(gene.score, 0.5), gene.window)
        assert [(s, e) for s, e, _ in want] == list(zip(mine["start"], mine["end"]))
        score = gene.window.genomic(gene.score)
        for row in mine.itertuples():
            seg = score[row.start - gene.start: row.end - gene.start]
            assert row.Score == pytest.approx(seg.mean(), rel=1e-4)
            assert row.mask_max == pytest.approx(seg.max(), rel=1e-4)
            assert row.kept_fraction == 1.0  # a called element is a run of kept bases
            assert row.distance == abs((row.start + row.end) // 2 - gene.tss)
            assert row.mean_dnase == pytest.approx(np.nanmean(dnase.values(row.chr, row.start, row.end)), rel=1e-4)
            assert row.TargetGenePredictedExpression == pytest.approx(gene.prediction, rel=1e-4)
            assert row.CellType == "synthA" and row.TargetGeneTSS == gene.tss
    arcs = pd.read_csv(links_run / "links.bedpe", sep="\t", header=None)
    assert len(arcs) == len(table) and (arcs[4] == table["TargetGeneTSS"]).all()
    windows = pd.read_csv(links_run / "windows.bed", sep="\t", header=None)
    summary = json.loads((links_run / "summary.json").read_text())
    assert len(windows) == summary["n_genes"] == 20 and summary["n_links"] == len(table)
    assert summary["classes"] == "promoter/distal" and set(table["class"]) <= {"promoter", "distal"}  # no gene bodies


def test_links_interact_file_is_sorted_bed5_plus_13_spanning_element_and_tss(links_run):
    """links.interact.bed is UCSC's interact format as bedToBigBed -type=bed5+13 -as=interact.as reads it."""
    table = _links(links_run / "links.tsv.gz")
    lines = (links_run / "links.interact.bed").read_text().splitlines()
    assert len(lines) == len(table) > 0 and not lines[0].startswith(("track", "#"))
    fields = re.findall(r"^\s+(\w+) (\w+);", (links_run / "interact.as").read_text(), re.M)
    assert [n for _, n in fields] == ["chrom", "chromStart", "chromEnd", "name", "score", "value", "exp", "color",
                                      "sourceChrom", "sourceStart", "sourceEnd", "sourceName", "sourceStrand",
                                      "targetChrom", "targetStart", "targetEnd", "targetName", "targetStrand"]
    rows = [line.split("\t") for line in lines]
    assert {len(r) for r in rows} == {18}
    cast = {"uint": int, "double": float, "string": str}
    rows = [[cast[kind](v) for (kind, _), v in zip(fields, r)] for r in rows]  # every field parses as its type
    assert all(v >= 0 for r in rows for (kind, _), v in zip(fields, r) if kind == "uint")
    inter = pd.DataFrame(rows, columns=[n for _, n in fields])
    assert (inter["chromStart"] == np.minimum(inter["sourceStart"], inter["targetStart"])).all()
    assert (inter["chromEnd"] == np.maximum(inter["sourceEnd"], inter["targetEnd"])).all()
    assert (inter["targetEnd"] - inter["targetStart"] == 1).all() and inter["score"].between(0, 1000).all()
    keys = list(zip(inter["chrom"].map(str.encode), inter["chromStart"], inter["chromEnd"]))
    assert keys == sorted(keys) and inter["chrom"].nunique() > 1  # bedToBigBed: chromosome byte order, then start
    # the same links as the table: element = source, gene TSS = target, value = Score, score = 1000 x Score
    merged = inter.merge(table, left_on="name", right_on="name", validate="one_to_one")
    assert len(merged) == len(table)
    assert (merged["sourceStart"] == merged["start"]).all() and (merged["targetStart"] == merged["TargetGeneTSS"]).all()
    assert (merged["targetName"] == merged["TargetGene"]).all() and (merged["exp"] == "synthA").all()
    assert merged["value"].to_numpy() == pytest.approx(merged["Score"].to_numpy(), rel=1e-5)
    assert (merged["score"] == (1000 * merged["value"]).round()).all()


def test_element_classes_as_abc_names_them():
    """promoter: within 500 bp of any TSS of the table (not only the linked gene's); genic: overlaps
    a gene body; else intergenic. Without gene bodies: promoter/distal and one warning."""
    from seq2exp_plugin.discover.links import GeneAnnotation

    obs = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "tss": [10_000, 30_000, 59_999, 5_000],
                        "gene_start": [10_000, 20_000, 50_000, -1], "gene_end": [15_000, 30_001, 60_000, -1]})
    genes = GeneAnnotation(obs)
    cases = {(9_000, 9_501): "promoter",      # its last base 500 bp upstream of a TSS
             (8_000, 9_500): "intergenic",    # 501 bp
             (29_400, 29_600): "promoter",    # another gene's TSS (a "-" gene: TSS = end - 1)
             (14_000, 14_200): "genic",       # inside the first body
             (15_000, 15_200): "intergenic",  # the body is half-open
             (19_000, 20_001): "genic",       # 1 bp into the second body
             (40_000, 41_000): "intergenic",
             (55_000, 55_100): "genic",
             (4_000, 4_600): "promoter"}      # chr2's gene has a TSS but no body
    for (start, end), want in cases.items():
        assert genes.classify("chr1" if start != 4_000 else "chr2", start, end) == want, (start, end)
    assert genes.classify("chr2", 8_000, 9_000) == genes.classify("chrZ", 0, 100) == "intergenic"
    # a body long enough to cover an element after later, shorter bodies started
    nested = GeneAnnotation(pd.DataFrame({"chrom": ["c", "c"], "tss": [0, 100_000], "gene_start": [0, 1_000],
                                          "gene_end": [90_000, 2_000]}))
    assert nested.classify("c", 50_000, 50_100) == "genic"
    with pytest.warns(UserWarning, match="no gene bodies"):
        distal = GeneAnnotation(obs.drop(columns=["gene_start", "gene_end"]))
    assert distal.classify("chr1", 14_000, 14_200) == "distal" and distal.classify("chr1", 9_000, 9_501) == "promoter"


def test_links_over_candidate_elements(tiny_synth, tiny_checkpoint, links_run, tmp_path):
    truth = pd.read_csv(tiny_synth / "truth" / "synthA.bed", sep="\t")
    candidates = truth.drop_duplicates("name").iloc[:, :3].set_axis(["chrom", "start", "end"], axis=1)
    genes = _predictions(tiny_checkpoint)
    edges = pd.DataFrame([(g.chrom, g.start - 50, g.start + 150) for g in genes.values()], columns=candidates.columns)
    candidates = pd.concat([candidates, edges]).sort_values(["chrom", "start"])  # half outside the window
    candidates.to_csv(tmp_path / "candidates.bed", sep="\t", header=False, index=False)
    out = tmp_path / "links"
    assert main(["links", str(tiny_checkpoint), "--genes", *GENES, "--out", str(out),
                 "--elements", str(tmp_path / "candidates.bed")]) == 0
    table = _links(out / "links.tsv.gz")
    windows = pd.read_csv(out / "windows.bed", sep="\t", header=None, names=["chr", "start", "end", "symbol", "gene", "strand", "tss"])
    for w in windows.itertuples():
        c = candidates[(candidates["chrom"] == w.chr) & (candidates["start"] < w.end) & (candidates["end"] > w.start)]
        mine = table[table["TargetGeneEnsemblID"] == w.gene]
        assert len(mine) == len(c) > 0
        assert (mine["start"] >= w.start).all() and (mine["end"] <= w.end).all()  # clipped to the window
        score = genes[w.gene].window.genomic(genes[w.gene].score)
        for row in mine.itertuples():
            seg = score[row.start - w.start: row.end - w.start]
            assert row.Score == pytest.approx(seg.mean(), rel=1e-4)
            assert row.kept_fraction == pytest.approx((seg >= 0.5).mean(), abs=1e-6)
    assert (table["end"] - table["start"] == 150).sum() == len(genes)


def test_links_memory_is_flat_over_genes(tiny_checkpoint, tmp_path, monkeypatch):
    """Once a gene's links are written, its per-bp mask is freed (as for predict)."""
    import gc
    import weakref

    import seq2exp_plugin.discover.links as links

    refs, alive, real = [], [], links.gene_links

    def spy(gene, *args, **kwargs):
        gc.collect()
        alive.append(sum(ref() is not None for ref in refs))
        refs.append(weakref.ref(gene.score))
        return real(gene, *args, **kwargs)

    monkeypatch.setattr(links, "gene_links", spy)
    links.links_to_directory(str(tiny_checkpoint), tmp_path / "l", split=None, progress=False)
    assert len(alive) == 20 and max(alive) <= 1, alive


def test_links_refuse_bad_input_before_any_work(tiny_synth, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "beyond.bed").write_text("chr1\t100\t200\nchr1\t900000000\t900000500\n")
    assert main(["links", str(tiny_checkpoint), "--split", "all", "--out", str(tmp_path / "a"),
                 "--elements", str(tmp_path / "beyond.bed")]) == 2
    assert "another genome assembly" in capsys.readouterr().err
    (tmp_path / "genes.txt").write_text("NOPE\n")
    assert main(["links", str(tiny_checkpoint), "--genes-file", str(tmp_path / "genes.txt"),
                 "--out", str(tmp_path / "b")]) == 2
    assert "NOPE" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- benchmark-links
@pytest.fixture(scope="module")
def demo_links(tmp_path_factory):
    """Links of the Demo model (10 kb windows: its genes' windows hold their elements) on its test genes."""
    from seq2exp_plugin.discover.demo import demo_entry
    from seq2exp_plugin.discover.links import links_to_directory
    from seq2exp_plugin.train.config import load_config

    entry = demo_entry()
    out = tmp_path_factory.mktemp("demo_links") / "links"
    data = load_config(entry / "train.yaml").to_dict()["data"]
    links_to_directory(str(entry / "best.ckpt"), out, split="test", data_overrides=data, progress=False)
    return out, entry / "data"


def test_benchmark_links_on_the_synthetic_truth(demo_links, tmp_path):
    from sklearn.metrics import average_precision_score

    links_run, data = demo_links
    crispr = data / "truth" / "synthA.crispr.tsv.gz"
    out = tmp_path / "bench"
    cell = data / "synthA"
    assert main(["benchmark-links", str(links_run / "links.tsv.gz"), "--crispr", str(crispr), "--out", str(out),
                 "--dnase", str(cell / "dnase.bw"), "--h3k27ac", str(cell / "h3k27ac.bw"),
                 "--hic", str(cell / "hic.cool"), "--extra-columns", "mask_max"]) == 0
    pairs = pd.read_csv(out / "pairs.tsv.gz", sep="\t")
    truth = pd.read_csv(crispr, sep="\t")
    kept = truth[(truth["Regulated"]) | (truth["PowerAtEffectSize15"] >= 0.8)]
    assert len(pairs) == len(kept)
    # each pair: the max Score of the same gene's links overlapping its element, else 0
    links = _links(links_run / "links.tsv.gz")
    for _, row in pairs.sample(40, random_state=0).iterrows():
        hit = links[(links["TargetGene"] == row["measuredGeneSymbol"]) & (links["start"] < row["chromEnd"])
                    & (links["end"] > row["chromStart"])]
        assert row["score:links/links"] == pytest.approx(hit["Score"].max() if len(hit) else 0.0, abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    metrics = pd.DataFrame(summary["metrics"]).set_index(["predictor", "distance_bin"])
    y = pairs["Regulated"].to_numpy()
    for name in ("links/links", "distance", "DNase", "ABC-like"):
        assert metrics.loc[(name, "all"), "auprc"] == pytest.approx(
            average_precision_score(y, pairs[f"score:{name}"]), abs=1e-9)
    assert metrics.loc[("distance", "all"), "auprc"] == pytest.approx(
        average_precision_score(y, -pairs["distance"]), abs=1e-9)
    assert set(metrics.index.get_level_values(0)) >= {"links/links:mask_max", "H3K27ac"}
    counts = summary["unpredicted"]["links/links"]
    assert sum(counts.values()) == len(pairs) and min(counts.values()) > 0
    windows = pd.read_csv(links_run / "windows.bed", sep="\t", header=None)
    category = pairs["category:links/links"]
    for _, row in pairs.iterrows():  # outside: no window of the pair's gene overlaps its element
        w = windows[(windows[3] == row["measuredGeneSymbol"]) & (windows[1] < row["chromEnd"])
                    & (windows[2] > row["chromStart"])]
        assert (category[_] == "outside_windows") == w.empty
    assert (out / "pr_curve.png").stat().st_size > 1000
    assert pairs["score:ABC-like"].to_numpy() == pytest.approx(_abc_like(pairs, cell), rel=1e-5, abs=1e-9)
    assert metrics.loc[("ABC-like", "all"), "auprc"] > metrics.loc[("distance", "all"), "auprc"]


def _abc_like(pairs: pd.DataFrame, cell) -> np.ndarray:
    """sqrt(DNase x H3K27ac) x balanced contact of the element's bases with the TSS bin, over the
    sum of that product over the gene's tested elements: from pyBigWig and cooler directly."""
    import cooler

    clr = cooler.Cooler(str(cell / "hic.cool"))
    res = clr.binsize
    tracks = [pyBigWig.open(str(cell / f"{name}.bw")) for name in ("dnase", "h3k27ac")]

    def numerator(chrom, start, end, tss) -> float:
        dn, ac = (float(np.nan_to_num(bw.values(chrom, start, end, numpy=True)).mean()) for bw in tracks)
        row = np.nan_to_num(clr.matrix(balance=True).fetch(chrom)[tss // res])
        return np.sqrt(dn * ac) * row[np.arange(start, end) // res].mean()

    out = np.zeros(len(pairs))
    for _, idx in pairs.groupby(["chrom", "startTSS"]).indices.items():
        elements = pairs.iloc[idx].drop_duplicates(["chromStart", "chromEnd"])
        values = {(r.chromStart, r.chromEnd): numerator(r.chrom, r.chromStart, r.chromEnd, r.startTSS)
                  for r in elements.itertuples()}
        total = sum(values.values())
        out[idx] = [values[(r.chromStart, r.chromEnd)] / total if total > 0 else 0.0 for r in pairs.iloc[idx].itertuples()]
    return out


def _crispr_rows(path, **change) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t")
    for column, value in change.items():
        table[column] = value
    return table


@pytest.mark.parametrize("case", ["missing_columns", "other_assembly", "other_assembly_tracks", "genes_in_no_window", "empty_predictions",
                                  "header_only_predictions", "predictions_without_score"])
def test_benchmark_links_bad_input_is_a_clear_error(case, tiny_synth, links_run, tmp_path, capsys):
    crispr = tiny_synth / "truth" / "synthA.crispr.tsv.gz"
    pred = links_run / "links.tsv.gz"
    extra = []
    if case == "missing_columns":
        _crispr_rows(crispr).drop(columns=["Regulated", "startTSS"]).to_csv(tmp_path / "c.tsv", sep="\t", index=False)
        crispr, message = tmp_path / "c.tsv", "missing column.*startTSS, Regulated"
    elif case == "other_assembly":
        _crispr_rows(crispr, chromStart=5_000_000, chromEnd=5_000_500).to_csv(tmp_path / "c.tsv", sep="\t", index=False)
        crispr, message = tmp_path / "c.tsv", "another genome assembly"
        extra = ["--genome", str(tiny_synth / "genome.fa.fai")]
    elif case == "other_assembly_tracks":
        _crispr_rows(crispr, chromStart=5_000_000, chromEnd=5_000_500).to_csv(tmp_path / "c.tsv", sep="\t", index=False)
        crispr, message = tmp_path / "c.tsv", "another genome assembly"
        extra = ["--dnase", str(tiny_synth / "synthA" / "dnase.bw")]
    elif case == "genes_in_no_window":
        _crispr_rows(crispr, measuredGeneSymbol="ENSG00000000001").to_csv(tmp_path / "c.tsv", sep="\t", index=False)
        crispr, message = tmp_path / "c.tsv", "none of the .* tested pairs has its gene among the predicted genes"
    elif case == "empty_predictions":
        (tmp_path / "p.tsv").write_text("")
        pred, message = tmp_path / "p.tsv", "is empty"
    elif case == "header_only_predictions":
        with gzip.open(pred, "rt") as fh:
            (tmp_path / "p.tsv").write_text(fh.readline())
        pred, message = tmp_path / "p.tsv", "has no predictions"
    else:
        _links(pred).drop(columns=["Score"]).to_csv(tmp_path / "p.tsv", sep="\t", index=False)
        pred, message = tmp_path / "p.tsv", "no score column"
    assert main(["benchmark-links", str(pred), "--crispr", str(crispr), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_benchmark_links_counts_genes_outside_every_window(tiny_synth, links_run, tmp_path, capsys):
    """Some tested genes in no window: a counted warning, and their pairs score 0 as outside."""
    crispr = _crispr_rows(tiny_synth / "truth" / "synthA.crispr.tsv.gz", PowerAtEffectSize15=1.0)
    crispr.loc[:9, "measuredGeneSymbol"] = "ABSENT"
    crispr.to_csv(tmp_path / "c.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match="outside every window") as caught:
        assert main(["benchmark-links", str(links_run / "links.tsv.gz"), "--crispr", str(tmp_path / "c.tsv"),
                     "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    counts = summary["unpredicted"]["links/links"]
    assert counts["outside_windows"] >= 10
    assert f"{counts['outside_windows']} outside every window" in str(caught[0].message)
    assert f"{counts['outside_windows']} outside every window" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "c.tsv", sep="\t").columns) == list(CRISPR_COLUMNS)


# ------------------------------------------------------------------------- real K562 chr22
REAL = REAL_DIR / "k562_chr22_hg19"


def _abc_reference(tss: pd.DataFrame, candidates: pd.DataFrame, abc: pd.DataFrame, path) -> pd.DataFrame:
    """ABC's links as a CRISPR-format reference: every candidate within 100 kb of a TSS is a tested
    pair, regulated when ABC links it to that gene (a plumbing check, not CRISPR truth)."""
    linked = set(zip(abc["TargetGene"], abc["start"], abc["end"]))
    rows = []
    for g in tss.itertuples():
        near = candidates[((candidates["start"] + candidates["end"]) // 2 - g.start).abs() <= 100_000]
        for c in near.itertuples():
            regulated = (g.gene_id, c.start, c.end) in linked
            rows.append({"chrom": g.chrom, "chromStart": c.start, "chromEnd": c.end, "chrTSS": g.chrom,
                         "startTSS": g.start, "endTSS": g.start + 1, "measuredGeneSymbol": g.gene_id,
                         "PowerAtEffectSize15": 1.0, "ValidConnection": "TRUE",
                         "Regulated": "TRUE" if regulated else "FALSE"})
    table = pd.DataFrame(rows)
    table.to_csv(path, sep="\t", index=False)
    return table


def test_links_and_benchmark_on_real_k562_chr22(tmp_path):
    """Real DNA, DNase, H3K27ac and Hi-C (hg19 chr22): a 2-step model's links over ABC's candidate
    regions, scored against ABC's own links beside ABC itself."""
    import yaml

    from seq2exp_plugin.data.genes import build_gene_table

    if not (REAL / "abc_links.tsv").is_file():
        pytest.skip(f"real fixture not found: {REAL}")
    abc = pd.read_csv(REAL / "abc_links.tsv", sep="\t")
    expression = pd.read_csv(REAL / "expression.tsv", sep="\t")
    tss = pd.read_csv(REAL / "tss_full200kb.bed", sep="\t", header=None,
                      names=["chrom", "start", "end", "gene_id", "score", "strand"])
    tss = tss[tss["gene_id"].isin(expression["gene_id"]) & tss["gene_id"].isin(abc["TargetGene"])].head(12)
    tss.to_csv(tmp_path / "tss.bed", sep="\t", header=False, index=False)
    tracks = {"dnase": str(REAL / "dnase.bw"), "h3k27ac": str(REAL / "h3k27ac.bw")}
    build_gene_table(str(tmp_path / "tss.bed"), str(REAL / "expression.tsv"), {"K562": tracks},
                     genome=str(REAL / "chr22.fa.gz"), split={"valid": [], "test": []},
                     out=tmp_path / "genes.h5ad", cell_types={"K562": "K562"})
    stack = {"d_model": 8, "n_layers": 1, "d_state": 4}
    config = {"variant": "seq2exp", "preset": "soft",
              "model": {"generator": stack, "predictor": stack, "pool_width": 1000, "mask": {"promoter_keep": 1000}},
              "data": {"genes": str(tmp_path / "genes.h5ad"), "genome": str(REAL / "chr22.fa.gz"),
                       "signals": {"h3k27ac": tracks["h3k27ac"], "dnase": tracks["dnase"], "hic": str(REAL / "hic.cool")},
                       "cell_type": "K562", "window": 20_000, "folds": 3, "fold": 0, "num_workers": 0},
              "train": {"max_steps": 2, "batch_size": 2, "warmup_steps": 1, "val_every_steps": 2, "progress_bar": False},
              "out_dir": str(tmp_path / "run")}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "train.yaml")]) == 0
    # ABC's candidate regions: the elements the bigWigs hold, where the FASTA has bases (< 22 Mb)
    intervals = set()
    for track in tracks.values():
        with pyBigWig.open(track) as bw:
            intervals |= {(s, e) for s, e, v in bw.intervals("chr22") if v > 0 and e <= 22_000_000}
    candidates = pd.DataFrame(sorted(intervals), columns=["start", "end"]).assign(chrom="chr22")[["chrom", "start", "end"]]
    candidates.to_csv(tmp_path / "candidates.bed", sep="\t", header=False, index=False)
    links = tmp_path / "links"
    assert main(["links", str(tmp_path / "run" / "checkpoints" / "best.ckpt"), "--split", "all", "--out", str(links),
                 "--elements", str(tmp_path / "candidates.bed")]) == 0
    table = _links(links / "links.tsv.gz")
    for g in tss.itertuples():  # every candidate overlapping the gene's window is linked to it
        inside = candidates[(candidates["start"] < g.start + 10_000) & (candidates["end"] > g.start - 10_000)]
        assert (table["TargetGene"] == g.gene_id).sum() == len(inside) > 0
    assert table["mean_dnase"].max() > 100 and table["mean_hic"].max() > 0  # real signal levels
    reference = _abc_reference(tss, candidates, abc, tmp_path / "reference.tsv")
    out = tmp_path / "bench"
    assert main(["benchmark-links", str(links / "links.tsv.gz"), f"ABC={REAL / 'abc_links.tsv'}", "--crispr",
                 str(tmp_path / "reference.tsv"), "--out", str(out), "--dnase", tracks["dnase"], "--h3k27ac",
                 tracks["h3k27ac"], "--hic", str(REAL / "hic.cool"), "--genome", str(REAL / "chr22.fa.gz.fai"),
                 "--elements", str(tmp_path / "candidates.bed"), "--extra-columns", "powerlaw.Score"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics = pd.DataFrame(summary["metrics"]).set_index(["predictor", "distance_bin"])
    assert summary["n_pairs"] == len(reference) and summary["n_positive"] == (reference["Regulated"] == "TRUE").sum()
    # ABC scored against its own links: every link found (gene symbols and coordinates matched)
    assert metrics.loc[("ABC", "all"), "auprc"] == pytest.approx(1.0)
    assert summary["unpredicted"]["ABC"]["predicted"] == summary["n_positive"]
    # ours: pairs outside the 20 kb windows are counted as such, the others are all linked
    ours = summary["unpredicted"]["links/links"]
    inside = (reference["chromStart"] < reference["startTSS"] + 10_000) & (reference["chromEnd"] > reference["startTSS"] - 10_000)
    assert ours == {"predicted": inside.sum(), "in_window_no_element": 0, "outside_windows": (~inside).sum()}
    assert {"ABC:powerlaw.Score", "distance", "DNase", "H3K27ac", "ABC-like"} <= set(metrics.index.get_level_values(0))
