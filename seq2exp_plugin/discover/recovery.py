"""Element recovery: how well a method's per-bp scores find the causal elements of the synthetic truth.

Ground truth: ``truth/<cell>.bed`` of ``seq2exp synth`` (:mod:`seq2exp_plugin.data.synth`), one row
per (gene, element overlapping its window) with the element's ``class`` relative to that gene:
``promoter``, ``R_ag`` (causal), ``decoy`` (signal, no effect on this gene) or ``inactive``
(closed in this cell type).

Labels (:func:`truth_labels`), per gene, over its window in the same order as the scores
(window order: reversed for a reverse-complemented window): ``1`` inside that gene's ``R_ag``
elements, ``0`` elsewhere, ``-1`` = not scored. Not scored by default: the gene's own promoter
element(s) and the central ``exclude_center`` bp of the window (default 2,000 = the model's
``MaskConfig.promoter_keep``). Every method keeps the promoter - Seq2Exp by construction
(the central 2 kb are forced to 1), MACS3 because promoters are the strongest peaks - so
including it would reward all methods equally for something none of them discovered. Set
``exclude_center=0, exclude_classes=()`` to score everything. Optionally blacklisted positions
are left out too (``blacklist=``; the model forces them to 0, MACS3 may call artefact peaks there).

Metrics (:func:`recovery_metrics`), pooled over all scored positions of all genes:

- ``auprc``: average precision (scikit-learn ``average_precision_score``); a random score gives
  about the prevalence (the fraction of positive positions), a perfect one 1.
- at a mask ratio ``kept_fraction`` (each method keeps its own top fraction of scored
  positions): ``precision``, ``recall``, ``f1``. Ties at the cut (a 0/1 peak mask has only two
  values) are broken at random *in expectation*: the tied block contributes its positive rate
  times the number of places left, so a 0/1 mask is compared at exactly the same ratio as a
  soft score, deterministically.
- at a score ``threshold`` (e.g. 0.5 for a hard mask, 1 for a peak mask): ``precision``,
  ``recall``, ``f1`` and the ratio actually kept.

What the generator adds (:func:`generator_metrics`): the AUPRC of the mask score next to
that of the signal-only ranking (the signal Beta's mean: the posterior of a generator held
constant ranks positions the same way) and of the generator's own Beta mean, on the same
positions; and, among bases inside signal peaks only (:func:`causal_vs_decoy_labels`: the gene's
``R_ag`` elements against its ``decoy`` elements), how well each ranks causal above decoy.

Differential elements (:func:`differential_labels`, :func:`differential_recovery`): between two
cell types, the positions inside a gene's ``R_ag`` elements of exactly one of them are the
positives (causal in both or in neither: negatives; excluded in either: not scored), ranked by
``|score A - score B|`` - what ``seq2exp predict --cell-types`` and ``benchmarks/celltypes.py``
report, next to the same for the DNase tracks.

Scores for the baselines: :func:`peak_scores` (MACS3 peak mask, 0/1) and :func:`track_scores`
(a bigWig, e.g. DNase: ranking by DNase is thresholding it at every level).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from ..data.genome import normalize_chrom
from ..data.windows import WindowRecord
from ..errors import InputError, MissingInputError

__all__ = [
    "POSITIVE_CLASSES",
    "EXCLUDE_CLASSES",
    "read_truth",
    "gene_windows",
    "truth_labels",
    "window_scores",
    "peak_scores",
    "track_scores",
    "recovery_metrics",
    "compare_methods",
    "causal_vs_decoy_labels",
    "generator_metrics",
    "generator_recovery",
    "differential_labels",
    "differential_recovery",
]

POSITIVE_CLASSES = ("R_ag",)
EXCLUDE_CLASSES = ("promoter",)


def _default_promoter_keep() -> int:
    from ..model.config import MaskConfig

    return int(MaskConfig().promoter_keep)


def _central_slice(length: int, width: int) -> slice:
    # the same positions as seq2exp_plugin.model.mask.central_slice (checked by the tests),
    # without importing torch
    start = max(0, (length - width) // 2)
    return slice(start, min(length, start + width))


# ----------------------------------------------------------------------------------- truth
def read_truth(path: str | os.PathLike):
    """A ``truth/<cell>.bed`` as a DataFrame (its ``#`` header names the columns; without one the
    synth column order :data:`seq2exp_plugin.data.synth.TRUTH_COLUMNS` is assumed)."""
    from pathlib import Path

    from ..data.bed import open_text, read_bed
    from ..data.synth import TRUTH_COLUMNS

    path = Path(path)
    df = read_bed(path, ("chrom", "start", "end"), what="truth BED")
    header = None
    with open_text(path) as fh:
        first = fh.readline()
    if first.startswith("#"):
        header = first[1:].rstrip("\n\r").split("\t")
    names = header if header and len(header) == len(df.columns) else list(TRUTH_COLUMNS)
    if len(names) != len(df.columns):
        names = names[: len(df.columns)] + list(df.columns[len(names):])
    df.columns = names
    for col in ("gene_id", "class"):
        if col not in df.columns:
            raise InputError(f"truth BED {path}: no {col!r} column (expected the seq2exp synth truth format)")
    df["gene_id"] = df["gene_id"].astype(str)
    df["class"] = df["class"].astype(str)
    return df


def gene_windows(genes, window: int | None = None, rc_minus_strand: bool = False) -> list[WindowRecord]:
    """Windows of genes: :class:`WindowRecord` objects as they are, or a table (a DataFrame, an
    AnnData gene table or its ``.h5ad`` path, a ``tss.bed``-like DataFrame) with ``gene_id`` (or
    the index), ``chrom``, ``strand`` and either ``start``/``end`` or ``tss`` (then ``window``
    is needed; window = ``[tss - window // 2, ... + window)``)."""
    import pandas as pd

    if isinstance(genes, (list, tuple)) and all(isinstance(g, WindowRecord) for g in genes):
        return list(genes)
    if isinstance(genes, (str, os.PathLike)):
        from ..data.genes import read_gene_table

        genes = read_gene_table(genes)
    if hasattr(genes, "obs") and hasattr(genes, "var_names"):
        genes = genes.obs
    if not isinstance(genes, pd.DataFrame):
        raise ValueError("genes must be WindowRecords, a DataFrame or a gene table")
    df = genes
    ids = df["gene_id"].astype(str).tolist() if "gene_id" in df.columns else [str(i) for i in df.index]
    strands = df["strand"].astype(str).tolist() if "strand" in df.columns else ["+"] * len(df)
    if "start" in df.columns and "end" in df.columns and "tss" not in df.columns:
        starts, ends = df["start"].astype(int).tolist(), df["end"].astype(int).tolist()
        tss = [None] * len(df)
    elif "tss" in df.columns:
        if window is None:
            raise InputError("genes are given by TSS: the window length is needed")
        tss = df["tss"].astype(int).tolist()
        starts = [t - int(window) // 2 for t in tss]
        ends = [s + int(window) for s in starts]
    else:
        raise MissingInputError("genes table needs 'start'/'end' or 'tss' columns")
    return [WindowRecord(g, str(c), s, e, st, bool(rc_minus_strand) and st == "-", t)
            for g, c, s, e, st, t in zip(ids, df["chrom"].astype(str), starts, ends, strands, tss)]


def truth_labels(
    truth,
    windows: Sequence[WindowRecord],
    positive_classes: Sequence[str] = POSITIVE_CLASSES,
    exclude_classes: Sequence[str] = EXCLUDE_CLASSES,
    exclude_center: int | None = None,
    blacklist=None,
) -> dict[str, np.ndarray]:
    """``gene_id -> int8 (L,)`` in window order: 1 inside the gene's ``positive_classes``
    elements, 0 elsewhere, -1 inside its ``exclude_classes`` elements and the central
    ``exclude_center`` bp (default ``MaskConfig.promoter_keep``, 2,000). ``truth``: a truth BED
    path or :func:`read_truth` DataFrame. A gene without truth rows is all 0 (outside exclusions).
    ``blacklist`` (a BED path or :class:`~seq2exp_plugin.data.blacklist.Blacklist`): its positions
    are -1 too - the model forces them to 0, so scoring them only tests the blacklist."""
    df = read_truth(truth) if isinstance(truth, (str, os.PathLike)) else truth
    if blacklist is not None and not hasattr(blacklist, "mask"):
        from ..data.blacklist import Blacklist

        blacklist = Blacklist(blacklist)
    if exclude_center is None:
        exclude_center = _default_promoter_keep()
    from ..data.synth import CLASSES

    known = set(df["class"].unique()) | set(CLASSES)
    for c in (*positive_classes, *exclude_classes):
        if c not in known:
            raise InputError(f"class {c!r} is not a truth class (known: {sorted(known)})")
    pos_set, exc_set = set(positive_classes), set(exclude_classes)
    by_gene = {}
    for g, sub in df.groupby("gene_id", sort=False):
        by_gene[str(g)] = (np.asarray([normalize_chrom(c) for c in sub["chrom"].astype(str)]),
                           sub["start"].to_numpy(np.int64), sub["end"].to_numpy(np.int64),
                           sub["class"].astype(str).to_numpy())
    out: dict[str, np.ndarray] = {}
    for w in windows:
        L = w.length
        lab = np.zeros(L, dtype=np.int8)  # genomic order first
        rows = by_gene.get(str(w.gene_id))
        if rows is not None:
            chroms, starts, ends, cls = rows
            on = chroms == normalize_chrom(w.chrom)
            excluded = []
            for st, en, c in zip(starts[on], ends[on], cls[on]):
                s, e = max(int(st) - w.start, 0), min(int(en) - w.start, L)
                if e <= s:
                    continue
                if c in pos_set:
                    lab[s:e] = 1
                if c in exc_set:
                    excluded.append((s, e))
            for s, e in excluded:  # exclusion wins over a positive overlap
                lab[s:e] = -1
        if blacklist is not None:
            lab[blacklist.mask(w.chrom, w.start, w.end)] = -1
        lab = np.ascontiguousarray(w.genomic(lab))  # window order
        if exclude_center:
            lab[_central_slice(L, int(exclude_center))] = -1
        out[str(w.gene_id)] = lab
    return out


def causal_vs_decoy_labels(truth, windows: Sequence[WindowRecord], exclude_center: int | None = None,
                           blacklist=None) -> dict[str, np.ndarray]:
    """``gene_id -> int8 (L,)``: 1 inside the gene's ``R_ag`` elements, 0 inside its ``decoy``
    elements (open, with signal, no effect on this gene), -1 everywhere else - the bases inside
    signal peaks, on which signal strength alone cannot tell causal from decoy."""
    df = read_truth(truth) if isinstance(truth, (str, os.PathLike)) else truth
    causal = truth_labels(df, windows, ("R_ag",), exclude_center=exclude_center, blacklist=blacklist)
    decoy = truth_labels(df, windows, ("decoy",), exclude_center=exclude_center, blacklist=blacklist)
    return {g: np.where(causal[g] == 1, 1, np.where(decoy[g] == 1, 0, -1)).astype(np.int8)
            for g in causal}


# ---------------------------------------------------------------------------------- scores
def window_scores(source: Callable[[str, int, int], np.ndarray],
                  windows: Sequence[WindowRecord]) -> dict[str, np.ndarray]:
    """``gene_id -> float32 (L,)`` in window order from ``source(chrom, start, end)`` (genomic order)."""
    out = {}
    for w in windows:
        v = np.asarray(source(w.chrom, w.start, w.end), dtype=np.float32)
        out[str(w.gene_id)] = np.ascontiguousarray(w.genomic(v))
    return out


def peak_scores(peaks_path: str | os.PathLike, windows: Sequence[WindowRecord]) -> dict[str, np.ndarray]:
    """The MACS3 peak mask (0/1) of each window; ``peaks_path`` a narrowPeak or a ``seq2exp
    peaks`` output directory."""
    from ..data.blacklist import IntervalMask
    from .peaks import resolve_peaks_path

    peaks = IntervalMask(resolve_peaks_path(peaks_path), what="peaks file")
    return window_scores(lambda c, s, e: peaks.mask(c, s, e).astype(np.float32), windows)


def track_scores(bigwig: str | os.PathLike, windows: Sequence[WindowRecord],
                 allow_missing_chroms: bool = True) -> dict[str, np.ndarray]:
    """A bigWig's values (e.g. DNase) over each window."""
    from ..data.tracks import BigWigTrack

    track = BigWigTrack(bigwig, allow_missing_chroms=allow_missing_chroms)
    return window_scores(track.values, windows)


# --------------------------------------------------------------------------------- metrics
def _pool(scores: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ys, ss = [], []
    for g, lab in labels.items():
        if g not in scores:
            raise KeyError(f"gene {g!r} has labels but no scores")
        lab = np.asarray(lab).reshape(-1)
        sc = np.asarray(scores[g], dtype=np.float64).reshape(-1)
        if sc.shape != lab.shape:
            raise ValueError(f"gene {g!r}: {sc.size} scores for {lab.size} labels")
        keep = lab >= 0
        if np.any(~np.isfinite(sc[keep])):
            raise ValueError(f"gene {g!r}: scores contain NaN or infinite values")
        ys.append(lab[keep].astype(np.int8))
        ss.append(sc[keep])
    if not ys:
        raise InputError("no genes to evaluate")
    return np.concatenate(ys), np.concatenate(ss)


def _prf(tp: float, kept: float, n_pos: int) -> dict[str, float]:
    precision = tp / kept if kept > 0 else float("nan")
    recall = tp / n_pos if n_pos > 0 else float("nan")
    f1 = 2 * tp / (kept + n_pos) if kept + n_pos > 0 else float("nan")
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _at_fraction(y: np.ndarray, s: np.ndarray, fraction: float) -> dict[str, float]:
    """Precision/recall when keeping the top ``fraction`` of positions, ties broken at random in
    expectation."""
    n = len(y)
    k = min(n, max(1, int(round(float(fraction) * n))))
    order = np.argsort(-s, kind="stable")
    cut = s[order[k - 1]]
    above = s > cut
    tied = s == cut
    n_above, n_tied = int(above.sum()), int(tied.sum())
    tp = float(y[above].sum()) + (k - n_above) * float(y[tied].sum()) / n_tied
    out = _prf(tp, k, int(y.sum()))
    out.update(kept_fraction=k / n, threshold=float(cut))
    return out


def recovery_metrics(
    scores: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    kept_fraction: float | None = None,
    threshold: float | None = None,
    per_gene: bool = False,
) -> dict:
    """AUPRC and precision/recall of ``scores`` against ``labels`` (:func:`truth_labels`), pooled
    over the genes of ``labels`` (each needs scores of the same length; -1 labels are skipped).

    Returns ``auprc, prevalence, n_genes, n_positions, n_positive`` and, if asked,
    ``at_fraction`` (precision, recall, f1, kept_fraction, threshold at the top ``kept_fraction``)
    and ``at_threshold`` (precision, recall, f1, kept_fraction for ``score >= threshold``);
    ``per_gene``: ``gene_auprc`` (gene -> AUPRC, genes with at least one positive) and its mean."""
    from sklearn.metrics import average_precision_score

    y, s = _pool(scores, labels)
    n_pos = int(y.sum())
    out: dict = {
        "n_genes": len(labels),
        "n_positions": int(len(y)),
        "n_positive": n_pos,
        "prevalence": n_pos / len(y) if len(y) else float("nan"),
        "auprc": float(average_precision_score(y, s)) if n_pos > 0 else float("nan"),
    }
    if kept_fraction is not None:
        if not 0.0 < float(kept_fraction) <= 1.0:
            raise InputError(f"kept_fraction must be in (0, 1], got {kept_fraction}")
        out["at_fraction"] = _at_fraction(y, s, kept_fraction)
    if threshold is not None:
        kept = s >= float(threshold)
        res = _prf(float(y[kept].sum()), float(kept.sum()), n_pos)
        res["kept_fraction"] = float(kept.mean())
        out["at_threshold"] = res
    if per_gene:
        gene_ap = {}
        for g, lab in labels.items():
            lab = np.asarray(lab).reshape(-1)
            keep = lab >= 0
            if lab[keep].sum() > 0:
                gene_ap[g] = float(average_precision_score(lab[keep], np.asarray(scores[g]).reshape(-1)[keep]))
        out["gene_auprc"] = gene_ap
        out["mean_gene_auprc"] = float(np.mean(list(gene_ap.values()))) if gene_ap else float("nan")
    return out


def compare_methods(methods: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray],
                    kept_fraction: float | None = None, thresholds: Mapping[str, float] | None = None):
    """One row per method (``name -> scores``): AUPRC, prevalence and precision/recall at
    ``kept_fraction`` / at each method's own threshold (``thresholds[name]``), as a DataFrame."""
    import pandas as pd

    rows = []
    for name, sc in methods.items():
        thr = (thresholds or {}).get(name)
        m = recovery_metrics(sc, labels, kept_fraction=kept_fraction, threshold=thr)
        row = {"method": name, "auprc": m["auprc"], "prevalence": m["prevalence"],
               "n_positions": m["n_positions"]}
        for key, tag in (("at_fraction", "top"), ("at_threshold", "thr")):
            if key in m:
                for k2, v in m[key].items():
                    row[f"{tag}_{k2}"] = v
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def generator_metrics(mask: Mapping[str, np.ndarray], signal: Mapping[str, np.ndarray],
                      sequence: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                      peak_labels: Mapping[str, np.ndarray], threshold: float = 0.5) -> dict[str, float]:
    """What the generator adds to the signals, on the same positions.

    ``mask``, ``signal``, ``sequence``: per-gene scores (the mask score, the signal Beta's mean,
    the generator's own Beta mean); ``labels`` from :func:`truth_labels`, ``peak_labels`` from
    :func:`causal_vs_decoy_labels`. Returns ``auprc`` (mask), ``auprc_signal``,
    ``auprc_sequence``, ``gain`` (mask - signal), ``causal_vs_decoy`` and
    ``causal_vs_decoy_signal`` (AUPRC among peak bases), ``decoy_prevalence`` (its random
    level), ``prevalence`` and ``kept_fraction`` (share of scored positions with mask score >=
    ``threshold``)."""
    out = {name: recovery_metrics(values, labels)["auprc"]
           for name, values in (("auprc", mask), ("auprc_signal", signal), ("auprc_sequence", sequence))}
    out["gain"] = out["auprc"] - out["auprc_signal"]
    peaks_mask = recovery_metrics(mask, peak_labels)
    out["causal_vs_decoy"] = peaks_mask["auprc"]
    out["causal_vs_decoy_signal"] = recovery_metrics(signal, peak_labels)["auprc"]
    out["decoy_prevalence"] = peaks_mask["prevalence"]
    y, s = _pool(mask, labels)
    out["prevalence"] = float(y.mean())
    out["kept_fraction"] = float((s >= threshold).mean())
    return out


def generator_recovery(genes: Sequence, truth, exclude_center: int | None = None, blacklist=None) -> dict:
    """:func:`generator_metrics` of Seq2Exp predictions (``GenePrediction`` objects with
    ``score``, ``signal_score`` and ``sequence_score``, as ``seq2exp predict``/``evaluate`` make
    them) against a truth BED; genes without truth rows count as all-negative windows."""
    if not genes or genes[0].sequence_score is None:
        raise ValueError("generator metrics need Seq2Exp predictions (a generator's mask)")
    windows = [g.window for g in genes]
    df = read_truth(truth) if isinstance(truth, (str, os.PathLike)) else truth
    labels = truth_labels(df, windows, exclude_center=exclude_center, blacklist=blacklist)
    peaks = causal_vs_decoy_labels(df, windows, exclude_center=exclude_center, blacklist=blacklist)
    return generator_metrics({g.gene_id: g.score for g in genes}, {g.gene_id: g.signal_score for g in genes},
                             {g.gene_id: g.sequence_score for g in genes}, labels, peaks)


def differential_labels(truth_a, truth_b, windows: Sequence[WindowRecord], exclude_center: int | None = None,
                        blacklist=None) -> dict[str, np.ndarray]:
    """``gene_id -> int8 (L,)`` in window order: 1 inside the gene's ``R_ag`` elements in exactly
    one of two cell types' truths (paths or :func:`read_truth` tables), 0 elsewhere, -1 where
    either cell type's :func:`truth_labels` leaves the position out (promoter, central
    ``exclude_center`` bp, blacklist)."""
    a = truth_labels(truth_a, windows, exclude_center=exclude_center, blacklist=blacklist)
    b = truth_labels(truth_b, windows, exclude_center=exclude_center, blacklist=blacklist)
    return {g: np.where((a[g] < 0) | (b[g] < 0), -1, a[g] != b[g]).astype(np.int8) for g in a}


def differential_recovery(scores_a: Mapping[str, np.ndarray], scores_b: Mapping[str, np.ndarray],
                          labels: Mapping[str, np.ndarray], **options) -> dict:
    """:func:`recovery_metrics` of ``|score A - score B|`` per gene and position (masks, or DNase
    tracks for the baseline) against :func:`differential_labels`: how well a difference between
    two cell types finds the elements causal in one of them only."""
    difference = {g: np.abs(np.asarray(scores_a[g], np.float64) - np.asarray(scores_b[g], np.float64))
                  for g in labels}
    return recovery_metrics(difference, labels, **options)
