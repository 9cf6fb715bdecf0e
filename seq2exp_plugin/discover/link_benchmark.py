"""``seq2exp benchmark-links``: enhancer-gene predictions scored against a CRISPRi benchmark.

Truth: an EPCrisprBenchmark file (:mod:`seq2exp_plugin.data.crispr`; ``seq2exp synth`` writes
one per cell type). Filters, as the CRISPR benchmark applies them (defaults): pairs whose
``ValidConnection`` is not TRUE are dropped (``all_connections=True`` keeps them), and so are
negatives whose power to see a 15% effect is below 80% (``power_column``
``PowerAtEffectSize15``, ``min_power`` 0.8; positives are kept whatever their power; a file
without the column is not filtered, with a warning).

With ``genome`` (or else a bigWig given for a baseline), tested pairs past the end of a
chromosome are refused: the benchmark is of another assembly.

Predictions: files with ABC / ENCODE-rE2G columns (``chr start end TargetGene`` [``TargetGeneEnsemblID``]
and a score: ``Score``, else ``ABC.Score``), e.g. ``seq2exp links``' ``links.tsv.gz``, ABC's
``EnhancerPredictionsFull.txt``, ENCODE-rE2G's predictions. A tested pair gets the maximum score
of the predicted elements of the same gene (symbol or Ensembl id, versions ignored) that overlap
its element by at least 1 bp. A pair with no such element scores 0 and is counted as
``outside_windows`` (its gene has no window holding the element: with a ``windows.bed`` beside the
predictions, as ``seq2exp links`` writes, the windows are known; otherwise a gene without any
prediction) or ``in_window_no_element`` (the gene was predicted there, no element was linked).

Baselines on the same pairs, from the tracks given: ``distance`` (score = -|element centre - TSS|,
closer is higher; always), ``DNase`` and ``H3K27ac`` (mean over the tested element), and
``ABC-like`` (needs all three tracks): activity ``sqrt(DNase x H3K27ac)`` times the raw Hi-C
contact between the element and the TSS, divided by the sum of that product over the gene's
elements (its tested elements, plus the candidate elements within ``max_distance`` of the TSS
when ``elements`` are given).

Metrics per predictor, overall and per distance bin (:data:`DISTANCE_BINS`): AUPRC, precision
at 70% recall and the threshold that gives it (:mod:`seq2exp_plugin.discover.prcurve`).
Written into ``out`` atomically: ``metrics.tsv``, ``metrics.md``, ``pairs.tsv.gz`` (every
tested pair with each predictor's score and why an unpredicted pair scores 0),
``pr_curve.png`` and ``summary.json``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_output_dir, check_output_dir, write_json, write_text
from ..data.bed import open_text, read_bed
from ..data.crispr import read_crispr
from ..data.genome import normalize_chrom
from ..errors import InputError
from .prcurve import average_precision, precision_at_recall, precision_recall_curve
from .regions import read_chrom_sizes

__all__ = ["DISTANCE_BINS", "SCORE_COLUMNS", "read_predictions", "overlap_scores", "track_baselines",
           "link_metrics", "benchmark_links"]

#: ``(name, lowest distance, highest distance)`` in bp, element centre to TSS.
DISTANCE_BINS = (("0-10kb", 0, 10_000), ("10-100kb", 10_000, 100_000), (">100kb", 100_000, math.inf))
#: The score column of a predictions file: the first of these it has.
SCORE_COLUMNS = ("Score", "ABC.Score")
_PREDICTION_COLUMNS = ("chr", "start", "end", "TargetGene")
_RECALL = 0.7


def _gene_key(values: pd.Series) -> pd.Series:
    """Gene ids made comparable: text, Ensembl version suffix dropped (ENSG0001.12 -> ENSG0001)."""
    return values.astype(str).str.strip().str.replace(r"^(ENS[A-Z]*\d+)\.\d+$", r"\1", regex=True)


def _keys(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``(row, key)`` for every gene-id column of ``table`` it has."""
    parts = [pd.DataFrame({"row": np.arange(len(table)), "key": _gene_key(table[c])}) for c in columns if c in table]
    keys = pd.concat(parts, ignore_index=True)
    return keys[~keys["key"].isin(("", "nan", "NA", "."))].drop_duplicates()


def _pair_keys(pairs: pd.DataFrame) -> pd.DataFrame:
    return _keys(pairs, ("measuredGeneSymbol", "measuredGeneEnsemblId"))


def read_predictions(path: str | os.PathLike, extra_columns: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """A predictions file and the score columns to rate: its score column (:data:`SCORE_COLUMNS`)
    and those of ``extra_columns`` it has."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    try:
        with open_text(path) as fh:
            table = pd.read_csv(fh, sep="\t", dtype={"chr": str, "TargetGene": str, "TargetGeneEnsemblID": str})
    except pd.errors.EmptyDataError:
        raise InputError(f"predictions file {path} is empty (no header, no rows)") from None
    missing = [c for c in _PREDICTION_COLUMNS if c not in table]
    if missing:
        raise InputError(f"predictions file {path}: missing column(s) {', '.join(missing)} (ABC / ENCODE-rE2G "
                         f"columns chr start end TargetGene Score are expected)")
    score = next((c for c in SCORE_COLUMNS if c in table), None)
    if score is None:
        raise InputError(f"predictions file {path}: no score column ({' or '.join(SCORE_COLUMNS)})")
    if table.empty:
        raise InputError(f"predictions file {path} has no predictions (a header and no rows)")
    columns = [score, *(c for c in extra_columns if c in table and c != score)]
    for c in ("start", "end", *columns):
        if not pd.api.types.is_numeric_dtype(table[c]):
            raise InputError(f"predictions file {path}: column {c} is not numeric")
    return table, columns


def _windows_beside(path: Path) -> pd.DataFrame | None:
    """The gene windows ``seq2exp links`` writes beside its predictions, if any."""
    beside = path.parent / "windows.bed"
    if not beside.is_file():
        return None
    return read_bed(beside, ("chr", "start", "end", "TargetGene", "TargetGeneEnsemblID"), what="windows BED")


def _overlapping(pairs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``(row, other)`` for each tested pair and each row of ``table`` (predictions or windows) of
    the same gene whose ``[start, end)`` overlaps the pair's element on the same chromosome."""
    pk = _pair_keys(pairs)
    tk = _keys(table, ("TargetGene", "TargetGeneEnsemblID")).rename(columns={"row": "other"})
    hits = pk.merge(tk, on="key")[["row", "other"]].drop_duplicates()
    a, b = pairs.iloc[hits["row"].to_numpy()], table.iloc[hits["other"].to_numpy()]
    same = (a["chrom"].map(normalize_chrom).to_numpy() == b["chr"].map(normalize_chrom).to_numpy())
    over = (a["chromStart"].to_numpy() < b["end"].to_numpy()) & (b["start"].to_numpy() < a["chromEnd"].to_numpy())
    return hits[same & over]


def overlap_scores(pairs: pd.DataFrame, table: pd.DataFrame, columns: Sequence[str],
                   windows: pd.DataFrame | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores of the tested ``pairs`` from one predictions ``table``.

    Returns:
        ``{column: (n_pairs,) max score of the overlapping predictions, 0 where none}`` and
        ``(n_pairs,)`` categories: ``predicted``, ``in_window_no_element`` or ``outside_windows``.
    """
    hits = _overlapping(pairs, table)
    scores = {}
    for c in columns:
        values = pd.Series(table[c].to_numpy(np.float64)[hits["other"].to_numpy()], index=hits["row"].to_numpy())
        best = values.groupby(level=0).max()
        out = np.zeros(len(pairs))
        out[best.index.to_numpy()] = np.nan_to_num(best.to_numpy(), nan=0.0)
        scores[c] = out
    if windows is not None:
        inside = np.zeros(len(pairs), bool)
        inside[_overlapping(pairs, windows)["row"].to_numpy()] = True
    else:
        known = set(_keys(table, ("TargetGene", "TargetGeneEnsemblID"))["key"])
        pk = _pair_keys(pairs)
        inside = np.zeros(len(pairs), bool)
        inside[pk["row"][pk["key"].isin(known)].to_numpy()] = True
    category = np.where(inside, "in_window_no_element", "outside_windows").astype(object)
    category[np.unique(hits["row"].to_numpy()).astype(np.int64)] = "predicted"
    return scores, category


# ------------------------------------------------------------------------------- baselines
def _mean_signal(reader, chrom: str, start: int, end: int, tss: int | None = None) -> float:
    if reader.resolve(chrom) is None:
        return 0.0
    values = reader.contact_to_tss(chrom, tss, start, end) if tss is not None else reader.values(chrom, start, end)
    return float(np.mean(values))


def track_baselines(pairs: pd.DataFrame, dnase=None, h3k27ac=None, hic=None, elements=None,
                    max_distance: int = 5_000_000) -> dict[str, np.ndarray]:
    """Baseline scores of the tested pairs (see the module docstring).

    Args:
        pairs: the CRISPR table (``chrom chromStart chromEnd startTSS measuredGeneSymbol``).
        dnase, h3k27ac: bigWig paths (per-bp signal).
        hic: a Hi-C file for :class:`~seq2exp_plugin.data.hic.HiCContacts` (raw contact: no log).
        elements: candidate elements (BED3+) for the ABC-like denominator.
        max_distance: candidates farther than this (bp) from the TSS are left out of it.

    Returns:
        ``{name: (n_pairs,) scores}``.
    """
    from ..data.hic import HiCContacts
    from ..data.tracks import BigWigTrack

    centre = (pairs["chromStart"].to_numpy() + pairs["chromEnd"].to_numpy()) // 2
    out = {"distance": -np.abs(centre - pairs["startTSS"].to_numpy()).astype(np.float64)}
    tracks = {name: BigWigTrack(path, allow_missing_chroms=True)
              for name, path in (("DNase", dnase), ("H3K27ac", h3k27ac)) if path is not None}
    rows = list(zip(pairs["chrom"], pairs["chromStart"], pairs["chromEnd"], pairs["startTSS"]))
    for name, reader in tracks.items():
        absent = sorted({c for c in pairs["chrom"] if reader.resolve(c) is None})
        if absent:
            warnings.warn(f"{reader.path}: {int(pairs['chrom'].isin(absent).sum())} tested pairs on chromosomes it "
                          f"lacks ({', '.join(absent[:5])}) score 0 for the {name} and ABC-like baselines")
        out[name] = np.array([_mean_signal(reader, c, s, e) for c, s, e, _ in rows])
    if hic is None or len(tracks) < 2:
        return out
    contacts = HiCContacts(hic, log1p=False, allow_missing_chroms=True)
    dn, ac = tracks["DNase"], tracks["H3K27ac"]

    @lru_cache(maxsize=None)
    def activity(chrom: str, start: int, end: int) -> float:
        return math.sqrt(max(_mean_signal(dn, chrom, start, end), 0.0) * max(_mean_signal(ac, chrom, start, end), 0.0))

    def numerators(chrom: str, tss: int, intervals: list[tuple[int, int]]) -> np.ndarray:
        """activity x mean contact to the TSS of each interval (one Hi-C read over their span)."""
        if contacts.resolve(chrom) is None:
            return np.zeros(len(intervals))
        lo, hi = min(s for s, _ in intervals), max(e for _, e in intervals)
        cumulative = np.r_[0.0, np.cumsum(contacts.contact_to_tss(chrom, tss, lo, hi), dtype=np.float64)]
        return np.array([activity(chrom, s, e) * (cumulative[e - lo] - cumulative[s - lo]) / (e - s)
                         for s, e in intervals])

    candidates = read_bed(elements, what="--elements BED") if elements is not None else None
    score = np.zeros(len(pairs))
    for (chrom, tss), idx in pairs.groupby(["chrom", "startTSS"]).indices.items():
        tested = list(dict.fromkeys(zip(pairs["chromStart"].to_numpy()[idx].tolist(),
                                        pairs["chromEnd"].to_numpy()[idx].tolist())))
        others = []
        if candidates is not None:
            near = candidates[(candidates["chrom"].map(normalize_chrom) == normalize_chrom(chrom))
                              & ((candidates["start"] + candidates["end"]) // 2 - tss).abs().le(max_distance)]
            others = [iv for iv in zip(near["start"].tolist(), near["end"].tolist()) if iv not in set(tested)]
        values = numerators(str(chrom), int(tss), tested + others)
        total = values.sum()
        own = dict(zip(tested, values[:len(tested)]))
        if total > 0:
            score[idx] = [own[(s, e)] / total for s, e in zip(pairs["chromStart"].to_numpy()[idx],
                                                                pairs["chromEnd"].to_numpy()[idx])]
    out["ABC-like"] = score
    return out


# --------------------------------------------------------------------------------- metrics
def link_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``n_pairs, n_positive, prevalence, auprc, precision_at_70_recall, threshold_at_70_recall``."""
    precision, threshold = precision_at_recall(labels, scores, _RECALL)
    n_pos = int(np.sum(labels))
    return {"n_pairs": int(len(labels)), "n_positive": n_pos,
            "prevalence": n_pos / len(labels) if len(labels) else float("nan"),
            "auprc": average_precision(labels, scores), "precision_at_70_recall": precision,
            "threshold_at_70_recall": threshold}


def _filter(pairs: pd.DataFrame, all_connections: bool, power_column: str | None, min_power: float,
            path) -> tuple[pd.DataFrame, dict[str, int]]:
    dropped = {}
    if "ValidConnection" in pairs and not all_connections:
        dropped["not_valid_connection"] = int((~pairs["ValidConnection"]).sum())
        pairs = pairs[pairs["ValidConnection"]]
    if power_column:
        if power_column in pairs:
            power = pd.to_numeric(pairs[power_column], errors="coerce").to_numpy()
            weak = ~pairs["Regulated"].to_numpy() & ~(power >= min_power)  # NA power: not powered
            dropped["underpowered_negatives"] = int(weak.sum())
            pairs = pairs[~weak]
        else:
            warnings.warn(f"--crispr {path}: no column {power_column}: negatives not filtered by power")
    if pairs.empty:
        raise InputError(f"--crispr {path}: no tested pair is left after the filters ({dropped})")
    return pairs.reset_index(drop=True), dropped


def _predictor_names(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """``[NAME=]PATH`` items -> ``(name, path)``; a default name is the file's stem (with its
    folder's name when stems repeat, as ``links`` from several runs do)."""
    parsed = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            name, path = "", spec
        parsed.append((name, Path(path)))
    stems = [re.sub(r"(\.(tsv|txt|bed))?(\.gz)?$", "", p.name) for _, p in parsed]
    out = []
    for (name, path), stem in zip(parsed, stems):
        default = f"{path.parent.name}/{stem}" if stems.count(stem) > 1 or stem == "links" else stem
        out.append((name or default, path))
    if len({n for n, _ in out}) < len(out):
        raise InputError(f"two predictors share a name ({', '.join(n for n, _ in out)}); name them NAME=PATH")
    return out


def _plot(path: Path, labels: np.ndarray, scores: dict[str, np.ndarray], title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=120)
    ax = fig.add_subplot()
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(labels, s)
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre",
                label=f"{name} (AUPRC {average_precision(labels, s):.3f})")
    ax.axhline(labels.mean(), color="grey", linestyle=":", label=f"random ({labels.mean():.3f})")
    ax.axvline(_RECALL, color="grey", linewidth=0.5)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7, loc="best")
    fig.savefig(path, format="png")


def _markdown(metrics: pd.DataFrame) -> str:
    lines = ["| predictor | distance | pairs | positive | AUPRC | precision at 70% recall | threshold |",
             "|---|---|---|---|---|---|---|"]
    for r in metrics.itertuples():
        lines.append(f"| {r.predictor} | {r.distance_bin} | {r.n_pairs} | {r.n_positive} | {r.auprc:.3f} | "
                     f"{r.precision_at_70_recall:.3f} | {r.threshold_at_70_recall:.4g} |")
    return "\n".join(lines) + "\n"


def benchmark_links(
    predictions: Sequence[str],
    crispr: str | os.PathLike,
    out: str | os.PathLike,
    extra_columns: Sequence[str] = (),
    dnase: str | None = None,
    h3k27ac: str | None = None,
    hic: str | None = None,
    elements: str | None = None,
    genome: str | None = None,
    all_connections: bool = False,
    power_column: str | None = "PowerAtEffectSize15",
    min_power: float = 0.8,
    max_distance: int = 5_000_000,
    force: bool = False,
) -> dict[str, Any]:
    """Score ``predictions`` (``[NAME=]PATH`` items) and the baselines against ``crispr`` into
    ``out`` (see the module docstring); returns the summary (``metrics``: one dict per row)."""
    out = check_output_dir(out, force, "--out")
    if not predictions:
        raise InputError("give at least one predictions file")
    named = _predictor_names(predictions)
    if genome is not None:
        sizes = read_chrom_sizes(genome)
    else:  # the tracks' chromosomes tell the assembly too
        from ..data.tracks import BigWigTrack

        sizes = next((BigWigTrack(t).chrom_sizes for t in (dnase, h3k27ac) if t is not None), None)
    pairs, dropped = _filter(read_crispr(crispr, sizes), all_connections, power_column, min_power, crispr)
    tables = [(name, path, *read_predictions(path, extra_columns)) for name, path in named]
    unknown = [c for c in extra_columns if not any(c in cols for *_, cols in tables)]
    if unknown:
        raise InputError(f"--extra-columns: no predictions file has column(s) {', '.join(unknown)}")
    labels = pairs["Regulated"].to_numpy()
    scores: dict[str, np.ndarray] = {}
    unpredicted: dict[str, dict[str, int]] = {}
    for name, path, table, columns in tables:
        found, category = overlap_scores(pairs, table, columns, _windows_beside(path))
        counts = {k: int((category == k).sum()) for k in ("predicted", "in_window_no_element", "outside_windows")}
        if counts["predicted"] + counts["in_window_no_element"] == 0:
            raise InputError(f"{path}: none of the {len(pairs)} tested pairs has its gene among the predicted genes "
                             f"(gene ids of another kind, e.g. Ensembl ids against symbols, or another genome?)")
        if counts["predicted"] < len(pairs):
            warnings.warn(f"{name}: {len(pairs) - counts['predicted']} of {len(pairs)} tested pairs have no prediction "
                          f"and score 0 ({counts['outside_windows']} outside every window of their gene, "
                          f"{counts['in_window_no_element']} in a window without a linked element)")
        unpredicted[name] = counts
        pairs[f"category:{name}"] = category
        for c in columns:
            scores[name if c == columns[0] else f"{name}:{c}"] = found[c]
    scores.update(track_baselines(pairs, dnase, h3k27ac, hic, elements, max_distance))
    centre = (pairs["chromStart"] + pairs["chromEnd"]) // 2
    distance = (centre - pairs["startTSS"]).abs().to_numpy()
    rows = []
    for name, s in scores.items():
        for bin_name, lo, hi in (("all", 0, math.inf), *DISTANCE_BINS):
            sel = (distance >= lo) & (distance < hi)
            if sel.any():
                rows.append({"predictor": name, "distance_bin": bin_name, **link_metrics(labels[sel], s[sel])})
    metrics = pd.DataFrame(rows)
    summary = {"crispr": str(crispr), "n_pairs": int(len(pairs)), "n_positive": int(labels.sum()),
               "filters": {"valid_connection": not all_connections, "power_column": power_column,
                           "min_power_for_negatives": min_power, "dropped": dropped},
               "predictions": {name: str(path) for name, path in named}, "unpredicted": unpredicted,
               "baselines": [b for b in scores if b in ("distance", "DNase", "H3K27ac", "ABC-like")],
               "metrics": metrics.to_dict(orient="records")}
    with atomic_output_dir(out, force=force) as tmp:
        metrics.to_csv(tmp / "metrics.tsv", sep="\t", index=False, float_format="%.6g")
        write_text(tmp / "metrics.md", _markdown(metrics))
        table = pairs[["chrom", "chromStart", "chromEnd", "measuredGeneSymbol", "startTSS", "Regulated"]].assign(
            distance=distance, **{f"score:{k}": v for k, v in scores.items()},
            **{c: pairs[c] for c in pairs if c.startswith("category:")})
        table.to_csv(tmp / "pairs.tsv.gz", sep="\t", index=False, float_format="%.10g",
                     compression={"method": "gzip", "mtime": 0})
        _plot(tmp / "pr_curve.png", labels, scores, f"{Path(crispr).name}: {len(pairs)} pairs, {labels.sum()} regulated")
        write_json(tmp / "summary.json", summary)
    return summary
