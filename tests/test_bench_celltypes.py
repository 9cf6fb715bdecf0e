"""benchmarks/celltypes.py's signal oracle: the activities it reads back from the bigWigs are the
ones the synthetic design drew, and only the elements in the model's window count."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import load_benchmark

CELLS = ["synthA", "synthB"]


def test_the_oracle_reads_back_the_activity_the_design_drew(tiny_synth):
    """log(estimate) against log(the activity each peak was drawn from): slope 1 (the peak
    formula inverted, exponent included), close (two noisy tracks), and 0 where closed."""
    celltypes = load_benchmark("celltypes")
    p = celltypes.synth_params(tiny_synth)
    elements = celltypes.truth_elements(tiny_synth)
    elements = elements[elements["kind"].isin(["promoter", "enhancer"])].reset_index(drop=True)
    for cell in CELLS:
        estimate = celltypes.estimated_activity(tiny_synth, cell, elements, np.ones(len(elements), bool), p)
        drawn = elements[f"activity_{cell}"].where(elements["kind"].eq("promoter"),
                                                   elements[f"activity_{cell}"] / p.activity_scale).to_numpy()
        open_ = elements[f"open_{cell}"].to_numpy() == 1
        assert open_.sum() >= 20 and (~open_).sum() >= 5
        assert np.mean(estimate[~open_] == 0) >= 0.9
        both = open_ & (estimate > 0)
        assert both.sum() >= 0.9 * open_.sum()
        slope, _ = np.polyfit(np.log(drawn[both]), np.log(estimate[both]), 1)
        assert 0.8 < slope < 1.25, slope
        assert np.corrcoef(np.log(drawn[both]), np.log(estimate[both]))[0, 1] > 0.8


def test_the_oracle_sums_the_promoter_and_the_enhancers_in_the_window(tiny_synth):
    """A window narrower than the closest enhancer leaves the promoter term alone; the design's
    whole window adds each gene's enhancers, so the oracle rises where one is open, and follows
    the measured expression better than the promoter alone."""
    from scipy import stats

    celltypes = load_benchmark("celltypes")
    p = celltypes.synth_params(tiny_synth)
    promoter_only = celltypes.oracle_expression(tiny_synth, CELLS, 2 * p.min_tss_distance)
    whole = celltypes.oracle_expression(tiny_synth, CELLS, p.window)
    terms = pd.read_csv(tiny_synth / "truth" / "expression_terms.tsv", sep="\t")
    merged = whole.merge(promoter_only, on=["gene_id", "cell_type", "expression"],
                         suffixes=("", "_promoter"))
    merged = merged.merge(terms[["gene_id", "cell_type", "enhancers"]], on=["gene_id", "cell_type"])
    assert len(merged) == len(terms) == len(whole)
    enhanced = merged["enhancers"] > 0
    assert enhanced.sum() >= 10
    assert (merged["oracle"] >= merged["oracle_promoter"] - 1e-12).all()
    assert (merged.loc[enhanced, "oracle"] > merged.loc[enhanced, "oracle_promoter"]).mean() > 0.8
    assert np.allclose(merged.loc[~enhanced, "oracle"], merged.loc[~enhanced, "oracle_promoter"])
    measured = np.log10(merged["expression"] + 1)
    with_enhancers, promoter_alone = (stats.spearmanr(merged[c], measured)[0] for c in ("oracle", "oracle_promoter"))
    assert with_enhancers > promoter_alone + 0.05


def test_the_benchmark_writes_its_table_with_both_references(tmp_path):
    """End to end on a few genes and steps (the numbers are not looked at: two steps learn
    nothing): every setting's row, the signal oracle's and the ceiling's, and the JSON."""
    import json

    out = tmp_path / "celltypes"
    assert load_benchmark("celltypes").main(["--out", str(out), "--genes", "30", "--steps", "2", "--window", "4000",
                                             "--variants", "seq2exp", "promoter-ridge", "--heads", "shared",
                                             "--weights", "10"]) == 0
    table = (out / "results.md").read_text()
    for row in ("seq2exp, shared head, mse", "seq2exp, shared head, hybrid w=10", "promoter-ridge, shared head, mse",
                "signal oracle (the design's elements in 4,000 bp)", "noiseless expression (the ceiling)"):
        assert f"| {row} |" in table, row
    runs = json.loads((out / "results.json").read_text())["runs"]
    oracle = runs["signal oracle (the design's elements in 4,000 bp)"][0]
    ceiling = runs["noiseless expression (the ceiling)"][0]
    assert oracle["cross_celltype_genes"] == ceiling["cross_celltype_genes"] > 0
    assert ceiling["spearman"] > oracle["spearman"]
