"""Element recovery against the synthetic truth (seq2exp_plugin.discover.recovery)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seq2exp_plugin.data.synth import generate, load_manifest
from seq2exp_plugin.discover.recovery import (
    _central_slice,
    causal_vs_decoy_labels,
    compare_methods,
    differential_labels,
    differential_recovery,
    generator_metrics,
    generator_recovery,
    gene_windows,
    peak_scores,
    read_truth,
    recovery_metrics,
    track_scores,
    truth_labels,
)
from seq2exp_plugin.data.windows import WindowRecord


def _ap_reference(y, s):
    """Average precision by its definition, sum_n (R_n - R_{n-1}) P_n over distinct thresholds."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    ap, prev_r = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        kept = s >= t
        p = y[kept].mean()
        r = y[kept].sum() / y.sum()
        ap += (r - prev_r) * p
        prev_r = r
    return ap


# ------------------------------------------------------------------------------- metrics
def test_auprc_perfect_random_and_reference():
    rng = np.random.default_rng(0)
    labels = {f"g{i}": (rng.random(5000) < 0.07).astype(np.int8) for i in range(8)}
    perfect = {g: y.astype(float) for g, y in labels.items()}
    m = recovery_metrics(perfect, labels)
    assert m["auprc"] == pytest.approx(1.0)
    assert m["n_positions"] == 40_000 and m["n_genes"] == 8
    random = {g: rng.random(len(y)) for g, y in labels.items()}
    r = recovery_metrics(random, labels)
    assert r["prevalence"] == pytest.approx(np.mean(np.concatenate(list(labels.values()))))
    assert abs(r["auprc"] - r["prevalence"]) < 0.015
    inverted = {g: -y.astype(float) + 0.01 * rng.random(len(y)) for g, y in labels.items()}
    assert recovery_metrics(inverted, labels)["auprc"] < r["prevalence"]
    # pooled AP equals the textbook definition on a small example with ties
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.8, 0.3, 0.3, 0.2, 0.1, 0.1])
    got = recovery_metrics({"a": s[:5], "b": s[5:]}, {"a": y[:5], "b": y[5:]})["auprc"]
    assert got == pytest.approx(_ap_reference(y, s))


def test_precision_recall_at_mask_ratio_hand_made():
    labels = {"a": np.array([1, 1, 0, 0, 0]), "b": np.array([0, 0, 0, 1, 0])}
    scores = {"a": np.array([0.9, 0.1, 0.8, 0.2, 0.0]), "b": np.array([0.3, 0.4, 0.5, 0.7, 0.6])}
    # pooled scores ranked: .9(+) .8(-) .7(+) .6(-) .5(-) ...; top 20% of 10 = 2 positions
    m = recovery_metrics(scores, labels, kept_fraction=0.2)
    f = m["at_fraction"]
    assert f["precision"] == pytest.approx(1 / 2) and f["recall"] == pytest.approx(1 / 3)
    assert f["kept_fraction"] == pytest.approx(0.2) and f["threshold"] == pytest.approx(0.8)
    f = recovery_metrics(scores, labels, kept_fraction=0.3)["at_fraction"]
    assert f["precision"] == pytest.approx(2 / 3) and f["recall"] == pytest.approx(2 / 3)
    assert f["f1"] == pytest.approx(2 / 3)
    t = recovery_metrics(scores, labels, threshold=0.65)["at_threshold"]
    assert (t["precision"], t["recall"], t["kept_fraction"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 0.3)


def test_ties_at_the_cut_are_shared_in_expectation():
    # a 0/1 mask keeping 4 positions (3 positive); ratio 0.2 of 10 keeps 2 of the 4 tied ones
    labels = {"a": np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])}
    scores = {"a": np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)}
    f = recovery_metrics(scores, labels, kept_fraction=0.2)["at_fraction"]
    assert f["precision"] == pytest.approx(3 / 4)          # the positive rate of the tied block
    assert f["recall"] == pytest.approx(2 * 3 / 4 / 4)     # expected 1.5 true positives of 4
    # ratio 0.6 keeps all four 1s and 2 of the six 0s (which hold one positive)
    f = recovery_metrics(scores, labels, kept_fraction=0.6)["at_fraction"]
    assert f["precision"] == pytest.approx((3 + 2 * 1 / 6) / 6)
    # Monte-Carlo check of the expectation with random tie-breaking
    rng = np.random.default_rng(0)
    y, s = labels["a"], scores["a"]
    tps = []
    for _ in range(4000):
        order = np.lexsort((rng.random(10), -s))
        tps.append(y[order[:6]].sum())
    assert np.mean(tps) / 6 == pytest.approx(f["precision"], abs=0.01)


def test_ignored_positions_and_errors():
    labels = {"a": np.array([1, -1, 0, -1, 1], dtype=np.int8)}
    m = recovery_metrics({"a": np.array([1.0, 5.0, 0.0, 5.0, 1.0])}, labels)
    assert m["auprc"] == pytest.approx(1.0) and m["n_positions"] == 3   # -1 positions skipped
    with pytest.raises(KeyError, match="'b'"):
        recovery_metrics({"a": np.zeros(5)}, {**labels, "b": np.zeros(3, np.int8)})
    with pytest.raises(ValueError, match="4 scores"):
        recovery_metrics({"a": np.zeros(4)}, labels)
    with pytest.raises(ValueError, match="NaN"):
        recovery_metrics({"a": np.array([np.nan, 0, 0, 0, 0])}, labels)
    with pytest.raises(ValueError):
        recovery_metrics({"a": np.zeros(5)}, labels, kept_fraction=1.5)


# -------------------------------------------------------------------------------- labels
def _truth_df():
    return pd.DataFrame({
        "chrom": ["chr1"] * 5 + ["chr2"],
        "start": [100, 130, 170, 185, 95, 100],
        "end": [110, 140, 180, 195, 105, 110],
        "gene_id": ["G1", "G1", "G1", "G1", "G1", "G2"],
        "class": ["R_ag", "decoy", "promoter", "R_ag", "inactive", "R_ag"],
    })


def test_truth_labels_forward_reverse_and_exclusions():
    truth = _truth_df()
    fwd = WindowRecord("G1", "chr1", 90, 200, "+")
    rev = WindowRecord("G1", "chr1", 90, 200, "-", reverse=True)
    lab = truth_labels(truth, [fwd], exclude_center=0)["G1"]
    want = np.zeros(110, np.int8)
    want[10:20] = 1       # R_ag 100-110
    want[95:105] = 1      # R_ag 185-195
    want[80:90] = -1      # promoter 170-180
    np.testing.assert_array_equal(lab, want)
    # reversed window: same labels, window order = genomic order flipped
    np.testing.assert_array_equal(truth_labels(truth, [rev], exclude_center=0)["G1"], want[::-1])
    # central exclusion (window order), the positions the model forces to 1
    lab_c = truth_labels(truth, [fwd], exclude_center=20)["G1"]
    assert (lab_c[45:65] == -1).all() and (lab_c[:45] == want[:45]).all()
    # other positive classes; an element of another gene does not count
    lab_d = truth_labels(truth, [fwd], positive_classes=("R_ag", "decoy"), exclude_center=0)["G1"]
    assert lab_d[40:50].tolist() == [1] * 10
    lab2 = truth_labels(truth, [WindowRecord("G2", "2", 90, 200)], exclude_center=0)["G2"]  # chrom alias
    assert lab2.sum() == 10
    # the same coordinates on another chromosome are not the gene's elements
    assert truth_labels(truth, [WindowRecord("G2", "chr1", 90, 200)], exclude_center=0)["G2"].sum() == 0
    assert truth_labels(truth, [WindowRecord("G9", "chr1", 0, 50)], exclude_center=0)["G9"].sum() == 0
    with pytest.raises(ValueError, match="Rag"):
        truth_labels(truth, [fwd], positive_classes=("Rag",))


def test_causal_vs_decoy_labels_keep_peak_bases_only():
    fwd = WindowRecord("G1", "chr1", 90, 200, "+")
    lab = causal_vs_decoy_labels(_truth_df(), [fwd], exclude_center=0)["G1"]
    want = np.full(110, -1, np.int8)
    want[10:20] = want[95:105] = 1  # R_ag 100-110, 185-195
    want[40:50] = 0                 # decoy 130-140; promoter, inactive and background: not scored
    np.testing.assert_array_equal(lab, want)
    rev = WindowRecord("G1", "chr1", 90, 200, "-", reverse=True)
    np.testing.assert_array_equal(causal_vs_decoy_labels(_truth_df(), [rev], exclude_center=0)["G1"], want[::-1])


def test_generator_metrics_hand_computed():
    from sklearn.metrics import average_precision_score

    labels = {"a": np.array([1, 0, 0, -1, 1, 0]), "b": np.array([0, 1, 0, 0])}
    peaks = {"a": np.array([1, 0, -1, -1, 1, -1]), "b": np.array([-1, 1, 0, -1])}
    mask = {"a": np.array([0.9, 0.2, 0.6, 0.99, 0.7, 0.1]), "b": np.array([0.3, 0.8, 0.5, 0.05])}
    signal = {"a": np.array([0.4, 0.5, 0.6, 0.9, 0.3, 0.2]), "b": np.array([0.7, 0.1, 0.8, 0.35])}
    sequence = {"a": np.array([0.6, 0.1, 0.2, 0.5, 0.9, 0.3]), "b": np.array([0.2, 0.7, 0.4, 0.5])}
    m = generator_metrics(mask, signal, sequence, labels, peaks)
    # scored positions, pooled a then b: labels 1 0 0 1 0 | 0 1 0 0
    # mask ranks 0.9(1) 0.8(1) 0.7(1) 0.6 0.5 0.3 0.2 0.1 0.05: every positive first -> AP 1
    assert m["auprc"] == pytest.approx(1.0)
    # signal ranks 0.8(0) 0.7(0) 0.6(0) 0.5(0) 0.4(1) 0.35(0) 0.3(1) 0.2(0) 0.1(1):
    # positives at ranks 5, 7, 9 -> AP = (1/5 + 2/7 + 3/9) / 3
    assert m["auprc_signal"] == pytest.approx((1 / 5 + 2 / 7 + 3 / 9) / 3)
    assert m["gain"] == pytest.approx(1.0 - (1 / 5 + 2 / 7 + 3 / 9) / 3)
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0])
    seq = np.array([0.6, 0.1, 0.2, 0.9, 0.3, 0.2, 0.7, 0.4, 0.5])
    assert m["auprc_sequence"] == pytest.approx(average_precision_score(y, seq))
    # causal vs decoy among peak bases: a[0], a[4], b[1] causal; a[1], b[2] decoys
    assert m["causal_vs_decoy"] == pytest.approx(1.0)  # mask 0.9, 0.7, 0.8 above 0.2, 0.5
    # signal 0.8(0) 0.5(0) 0.4(1) 0.3(1) 0.1(1): positives at ranks 3, 4, 5
    assert m["causal_vs_decoy_signal"] == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3)
    assert m["decoy_prevalence"] == pytest.approx(3 / 5)
    assert m["prevalence"] == pytest.approx(3 / 9)
    assert m["kept_fraction"] == pytest.approx(5 / 9)  # 0.9 0.6 0.7 | 0.8 0.5 are >= 0.5


def test_generator_recovery_of_predictions():
    from seq2exp_plugin.train.evaluate import GenePrediction

    truth = _truth_df()
    score = np.linspace(0, 1, 110)
    gene = GenePrediction("G1", "chr1", 90, 200, "+", 145, 1.0, 1.0, score, False,
                          sequence_score=score[::-1].copy(), signal_score=np.ones(110))
    got = generator_recovery([gene], truth, exclude_center=0)
    labels = truth_labels(truth, [WindowRecord("G1", "chr1", 90, 200, "+")], exclude_center=0)
    peaks = causal_vs_decoy_labels(truth, [WindowRecord("G1", "chr1", 90, 200, "+")], exclude_center=0)
    want = generator_metrics({"G1": score}, {"G1": np.ones(110)}, {"G1": score[::-1]}, labels, peaks)
    assert got == want
    with pytest.raises(ValueError, match="Seq2Exp predictions"):
        generator_recovery([GenePrediction("G1", "chr1", 90, 200, "+", 145, 1.0, 1.0, score, False)], truth)


def test_truth_labels_blacklist(tmp_path):
    (tmp_path / "bl.bed").write_text("chr1\t95\t102\n")
    rev = WindowRecord("G1", "chr1", 90, 200, "-", reverse=True)
    lab = truth_labels(_truth_df(), [rev], exclude_center=0, blacklist=tmp_path / "bl.bed")["G1"]
    g = lab[::-1]  # genomic order
    assert (g[5:12] == -1).all() and (g[12:20] == 1).all() and g[4] == 0


@pytest.mark.parametrize("length,width", [(8000, 2000), (200_000, 2000), (101, 20), (10, 20), (7, 3)])
def test_central_exclusion_matches_the_model(length, width):
    from seq2exp_plugin.model.mask import central_slice

    assert _central_slice(length, width) == central_slice(length, width)


# --------------------------------------------------------------------- on the synth data
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_rec") / "tiny"
    generate(out, preset="tiny", seed=0)
    return load_manifest(out)


def test_synth_truth_labels_and_baselines(tiny, tmp_path):
    truth = read_truth(tiny["truth"]["cells"]["synthA"])
    assert {"gene_id", "class", "dnase"} <= set(truth.columns)
    windows = gene_windows(tiny["genes"]["table"], window=tiny["window"], rc_minus_strand=True)
    assert len(windows) == tiny["n_genes"] and any(w.reverse for w in windows)
    labels = truth_labels(truth, windows)
    for w in windows:
        lab = labels[w.gene_id]
        assert lab.shape == (tiny["window"],)
        assert (lab[_central_slice(w.length, 2000)] == -1).all()
    total_pos = sum(int((v == 1).sum()) for v in labels.values())
    assert total_pos > 0
    # the gene's R_ag bp (outside the centre) are all positive: count them independently
    r = truth[truth["class"] == "R_ag"]
    want = 0
    for w in windows:
        cover = np.zeros(w.length, bool)
        for row in r[r["gene_id"] == w.gene_id].itertuples():
            cover[max(row.start - w.start, 0): max(min(row.end - w.start, w.length), 0)] = True
        cover = cover[::-1] if w.reverse else cover
        cover[_central_slice(w.length, 2000)] = False
        want += int(cover.sum())
    assert total_pos == want

    # DNase ranks open elements first: far above chance, but decoys are open too
    dn = track_scores(tiny["tracks"]["synthA"]["dnase"], windows)
    m = recovery_metrics(dn, labels, kept_fraction=0.1)
    assert m["auprc"] > 2.5 * m["prevalence"]
    # a peak mask built from the truth's open elements (what a perfect peak caller would give)
    opened = truth[truth["class"].isin(["R_ag", "decoy"])][["chrom", "start", "end"]]
    opened.to_csv(tmp_path / "open.bed", sep="\t", header=False, index=False)
    pk = peak_scores(tmp_path / "open.bed", windows)
    mp = recovery_metrics(pk, labels, threshold=1.0)
    assert mp["at_threshold"]["recall"] == pytest.approx(1.0)
    assert 0.1 < mp["at_threshold"]["precision"] < 0.9
    table = compare_methods({"dnase": dn, "open_peaks": pk}, labels, kept_fraction=0.1,
                            thresholds={"open_peaks": 1.0})
    assert list(table.index) == ["dnase", "open_peaks"] and "top_precision" in table.columns
    assert np.isnan(table.loc["dnase", "thr_precision"]) and table.loc["open_peaks", "thr_recall"] == 1.0


def _two_truths(rows):
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "gene_id", "class"])


def test_differential_labels_and_auprc_against_sklearn():
    from sklearn.metrics import average_precision_score

    window = WindowRecord("G", "chr1", 0, 20, "+")
    a = _two_truths([("chr1", 2, 6, "G", "R_ag"), ("chr1", 10, 12, "G", "R_ag"), ("chr1", 16, 18, "G", "promoter")])
    b = _two_truths([("chr1", 4, 8, "G", "R_ag"), ("chr1", 10, 12, "G", "R_ag"), ("chr1", 13, 14, "G", "decoy")])
    labels = differential_labels(a, b, [window], exclude_center=0)["G"]
    want = np.zeros(20, np.int8)
    want[2:4] = 1      # causal in A only
    want[6:8] = 1      # causal in B only
    want[16:18] = -1   # A's promoter: not scored
    # 4:6 and 10:12 are causal in both: negatives
    np.testing.assert_array_equal(labels, want)
    assert (differential_labels(a, b, [window], exclude_center=4)["G"][8:12] == -1).all()
    # reversed window: the same labels in window order
    rev = WindowRecord("G", "chr1", 0, 20, "-", reverse=True)
    np.testing.assert_array_equal(differential_labels(a, b, [rev], exclude_center=0)["G"], want[::-1])

    rng = np.random.default_rng(0)
    mask_a, mask_b = rng.random(20), rng.random(20)
    got = differential_recovery({"G": mask_a}, {"G": mask_b}, {"G": labels})
    keep = labels >= 0
    want_ap = average_precision_score(labels[keep], np.abs(mask_a - mask_b)[keep])
    assert got["auprc"] == pytest.approx(want_ap) and got["n_positive"] == 4 and got["n_positions"] == 18
    # a mask difference exactly on the differential elements is perfect
    perfect = differential_recovery({"G": want.clip(0) * 0.9}, {"G": np.zeros(20)}, {"G": labels})
    assert perfect["auprc"] == pytest.approx(1.0)
