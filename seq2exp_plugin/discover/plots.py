"""Per-gene figure of what Seq2Exp kept: signals, mask score, called elements, peaks and truth.

:func:`plot_gene` draws one PNG (matplotlib, Agg canvas; no display needed; :func:`gene_figure`
gives the figure itself), x axis in genomic coordinates, top to bottom:

- one panel per signal track (H3K27ac, DNase, Hi-C contact to the TSS, ... as given), filled;
- the mask score (0-1) with the element threshold as a dotted line;
- optionally the generator's own term (the mean of its Beta(alpha1, beta1), 0-1): what the DNA
  contributed;
- an annotation panel with one lane each for the called elements, the MACS3 peaks (if given) and
  the ground-truth elements of this gene (if known), coloured by class (promoter, R_ag, decoy,
  inactive).

The TSS is a dashed vertical line through every panel with an arrow in the direction of
transcription. Long windows are downsampled for drawing by the **maximum** over bins of
``ceil(L / max_points)`` bp (a narrow peak stays visible at 200 kb); intervals are drawn at least
one pixel wide. Arrays are given in window order, as the model sees them, with the
:class:`~seq2exp_plugin.data.windows.WindowRecord` saying whether the window was reversed.
The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..atomic import atomic_file
from ..data.blacklist import IntervalMask
from ..errors import InputError
from ..data.windows import WindowRecord
from .regions import call_elements, elements_to_genomic

__all__ = ["CLASS_COLORS", "gene_figure", "plot_gene", "downsample_max"]

#: Colours of the truth classes (and of the other lanes).
CLASS_COLORS = {
    "promoter": "#2ca02c",
    "R_ag": "#d62728",
    "decoy": "#ff7f0e",
    "inactive": "#9e9e9e",
}
_SIGNAL_COLORS = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")
_ELEMENT_COLOR = "#000000"
_PEAK_COLOR = "#1f77b4"


def downsample_max(values: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """``(binned, bin_size)``: ``values`` reduced to at most ``max_points`` bins by the maximum
    (NaN ignored; an all-NaN bin is NaN). ``bin_size`` 1 means unchanged."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.size
    if max_points < 1:
        raise InputError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return v, 1
    b = int(math.ceil(n / max_points))
    nb = int(math.ceil(n / b))
    pad = np.full(nb * b, np.nan)
    pad[:n] = v
    blocks = pad.reshape(nb, b)
    with np.errstate(all="ignore"):
        allnan = np.isnan(blocks).all(axis=1)
        out = np.where(allnan, np.nan, np.nanmax(np.where(np.isnan(blocks), -np.inf, blocks), axis=1))
    return out, b


def _peak_intervals(peaks, record: WindowRecord) -> list[tuple[int, int]]:
    if peaks is None:
        return []
    if isinstance(peaks, (str, os.PathLike)) or isinstance(peaks, IntervalMask):
        if not isinstance(peaks, IntervalMask):
            from .peaks import resolve_peaks_path

            peaks = IntervalMask(resolve_peaks_path(peaks), what="peaks file")
        starts, ends = peaks.intervals(record.chrom)
        sel = (ends > record.start) & (starts < record.end)
        return [(int(s), int(e)) for s, e in zip(starts[sel], ends[sel])]
    return [(int(p[0]), int(p[1])) for p in peaks if int(p[1]) > record.start and int(p[0]) < record.end]


def _truth_rows(truth, record: WindowRecord) -> list[tuple[int, int, str]]:
    if truth is None:
        return []
    if isinstance(truth, (str, os.PathLike)):
        from .recovery import read_truth

        truth = read_truth(truth)
    sub = truth[truth["gene_id"].astype(str) == str(record.gene_id)]
    rows = zip(sub["start"].astype(int), sub["end"].astype(int), sub["class"].astype(str))
    return [(s, e, c) for s, e, c in rows if e > record.start and s < record.end]


def _fmt_pos(x: float, span: int) -> str:
    if span >= 50_000:
        return f"{x / 1e6:.3f} Mb" if span < 2_000_000 else f"{x / 1e6:.2f} Mb"
    return f"{x / 1e3:,.1f} kb"


def gene_figure(
    record: WindowRecord,
    signals: Mapping[str, np.ndarray] | None = None,
    score: np.ndarray | None = None,
    generator: np.ndarray | None = None,
    elements: Sequence[Sequence] | None = None,
    peaks=None,
    truth=None,
    observed: float | None = None,
    predicted: float | None = None,
    threshold: float = 0.5,
    min_gap: int = 0,
    min_length: int = 1,
    expression_label: str = "log10(expression + 1)",
    title: str | None = None,
    max_points: int = 2000,
    width: float = 12.0,
    dpi: int = 110,
):
    """The figure of one gene (a matplotlib ``Figure``, Agg canvas); :func:`plot_gene` saves it.
    Each lane's bars carry the label ``_lane:<name>`` (``_lane:truth:<class>`` for the truth).

    Parameters
    ----------
    record : the window (gene id, chrom, start, end, strand, reverse, tss).
    signals : name -> ``(L,)`` array in window order (e.g. ``{"H3K27ac": ..., "DNase": ..., "Hi-C": ...}``).
    score : ``(L,)`` mask score in window order, or label -> score: one panel each (two cell
        types' masks side by side, ``seq2exp predict --cell-types``).
    generator : ``(L,)`` the generator's own term in window order (the mean of its Beta(alpha1,
        beta1)): what the DNA contributed to the score, drawn under it.
    elements : genomic ``(start, end, ...)`` rows of the called elements, or lane name -> rows
        (one lane each); ``None``: called from ``score`` with ``threshold``/``min_gap``/``min_length``
        (:func:`call_elements`; one lane per score).
    peaks : MACS3 peaks (a narrowPeak/BED path, ``seq2exp peaks`` directory, an
        :class:`~seq2exp_plugin.data.blacklist.IntervalMask` or genomic ``(start, end)`` rows),
        or lane name -> one of those (one lane each).
    truth : synth truth BED path or DataFrame (:func:`~seq2exp_plugin.discover.recovery.read_truth`),
        or lane name -> one of those (one lane each); the rows of this gene are drawn.
    observed, predicted : expression values for the title.
    """
    # a bare Figure renders with the Agg canvas: no pyplot, no global backend switch
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    L = record.length
    signals = dict(signals or {})
    x0 = record.start
    span = L
    gen_signals = {k: np.asarray(record.genomic(np.asarray(v, dtype=np.float64).reshape(-1)))
                   for k, v in signals.items()}
    scores = {} if score is None else dict(score) if isinstance(score, Mapping) else {"": score}
    gscores = {k: np.asarray(record.genomic(np.asarray(v, dtype=np.float64).reshape(-1))) for k, v in scores.items()}
    ggen = (None if generator is None
            else np.asarray(record.genomic(np.asarray(generator, dtype=np.float64).reshape(-1))))
    if elements is None:
        elements = {_lane("elements", k): elements_to_genomic(call_elements(
            np.asarray(v, dtype=np.float64).reshape(-1), threshold, min_gap, min_length), record)
            for k, v in scores.items()} or {"elements": []}
    elif not isinstance(elements, Mapping):
        elements = {"elements": elements}
    truths = {} if truth is None else dict(truth) if isinstance(truth, Mapping) else {"truth": truth}
    truth_iv = [t for value in truths.values() for t in _truth_rows(value, record)]

    lanes: list[tuple[str, list, str | None]] = [
        (name, [(int(e[0]), int(e[1])) for e in rows], _ELEMENT_COLOR) for name, rows in elements.items()]
    peak_sets = {} if peaks is None else dict(peaks) if isinstance(peaks, Mapping) else {"MACS3 peaks": peaks}
    lanes += [(name, _peak_intervals(value, record), _PEAK_COLOR) for name, value in peak_sets.items()]
    lanes += [(name, _truth_rows(value, record), None) for name, value in truths.items()]

    n_tracks = len(gen_signals) + len(gscores) + (ggen is not None)
    heights = [1.0] * n_tracks + [0.35 * len(lanes) + 0.25]
    fig = Figure(figsize=(width, 1.15 * sum(heights) + 1.0), dpi=dpi)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights, "hspace": 0.12})
    axes = np.atleast_1d(axes)

    def draw_track(ax, values, color, label, ylim=None):
        binned, b = downsample_max(values, max_points)
        xs = x0 + np.arange(len(binned) + 1) * b
        xs[-1] = min(xs[-1], x0 + L)
        ys = np.append(np.nan_to_num(binned, nan=0.0), np.nan_to_num(binned[-1:], nan=0.0))
        ax.fill_between(xs, 0, ys, step="post", color=color, alpha=0.85, linewidth=0)
        ax.step(xs, ys, where="post", color=color, linewidth=0.6)
        ax.set_ylabel(label + (f"\n(max/{b} bp)" if b > 1 else ""), fontsize=8, rotation=0, ha="right", va="center")
        if ylim is not None:
            ax.set_ylim(*ylim)
        else:
            top = float(np.nanmax(ys)) if np.isfinite(ys).any() and np.nanmax(ys) > 0 else 1.0
            ax.set_ylim(0, top * 1.08)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)

    i = 0
    for k, (name, vals) in enumerate(gen_signals.items()):
        draw_track(axes[i], vals, _SIGNAL_COLORS[k % len(_SIGNAL_COLORS)], name)
        i += 1
    for name, gscore in gscores.items():
        draw_track(axes[i], gscore, "#444444", _lane("mask score", name), ylim=(0, 1.05))
        axes[i].axhline(threshold, color="#e377c2", linestyle=":", linewidth=0.8)
        i += 1
    if ggen is not None:
        draw_track(axes[i], ggen, "#bcbd22", "generator\nterm", ylim=(0, 1.05))
        i += 1

    ax = axes[-1]
    px_bp = span / (width * dpi * 0.8)  # bp per pixel, roughly
    min_w = max(px_bp * 1.5, 1.0)
    for row, (name, ivs, color) in enumerate(lanes):
        y = len(lanes) - 1 - row
        if color is None:  # a truth lane
            for s, e, c in ivs:
                ax.broken_barh([(s, max(e - s, min_w))], (y + 0.15, 0.7), facecolors=CLASS_COLORS.get(c, "#17becf"),
                               edgecolors="none", label=f"_lane:truth:{c}")
        else:
            bars = [(s, max(e - s, min_w)) for s, e in ivs]
            if bars:
                ax.broken_barh(bars, (y + 0.15, 0.7), facecolors=color, edgecolors="none", label=f"_lane:{name}")
    ax.set_ylim(0, len(lanes))
    ax.set_yticks([len(lanes) - 1 - r + 0.5 for r in range(len(lanes))])
    ax.set_yticklabels([f"{n} ({len(iv)})" for n, iv, _ in lanes], fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.spines[["top", "right", "left"]].set_visible(False)
    if truths:
        present = [c for c in CLASS_COLORS if any(t[2] == c for t in truth_iv)] or list(CLASS_COLORS)
        ax.legend(handles=[Patch(color=CLASS_COLORS[c], label=c) for c in present], fontsize=7, ncol=len(present),
                  loc="upper right", bbox_to_anchor=(1.0, -0.35 if len(lanes) < 3 else -0.25), frameon=False)

    tss = record.tss_position
    for a in axes:
        a.axvline(tss + 0.5, color="#2ca02c", linestyle="--", linewidth=0.9, alpha=0.9, zorder=0)
    arrow = max(span * 0.03, 20)
    top = axes[0]
    ymax = top.get_ylim()[1]
    direction = -1 if record.strand == "-" else 1
    top.annotate("", xy=(tss + direction * arrow, ymax * 0.92), xytext=(tss, ymax * 0.92),
                 arrowprops=dict(arrowstyle="->", color="#2ca02c", linewidth=1.2), annotation_clip=False)
    top.text(tss, ymax * 1.0, "TSS", color="#2ca02c", fontsize=7, ha="center", va="bottom", clip_on=False)

    ax.set_xlim(x0, x0 + L)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _fmt_pos(x, span)))
    ax.set_xlabel(f"{record.chrom} (window {record.start:,}-{record.end:,}, {L:,} bp, strand {record.strand}"
                  f"{', reverse-complemented' if record.reverse else ''})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)

    if title is None:
        parts = [str(record.gene_id)]
        vals = []
        if observed is not None and np.isfinite(observed):
            vals.append(f"observed {observed:.3f}")
        if predicted is not None and np.isfinite(predicted):
            vals.append(f"predicted {predicted:.3f}")
        if vals:
            parts.append(", ".join(vals) + f"  [{expression_label}]")
        if gscores:
            kept = ", ".join(_lane(f"{100 * np.mean(v >= threshold):.1f}%", k) for k, v in gscores.items())
            parts.append(f"kept {kept} (score >= {threshold:g})")
        title = "   |   ".join(parts)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left", y=0.995)
    fig.subplots_adjust(left=0.12, right=0.985, top=1 - 0.45 / fig.get_figheight(), bottom=0.75 / fig.get_figheight())

    return fig


def _lane(what: str, label: str) -> str:
    """A panel or lane name for one of several masks (``what`` alone for the only one)."""
    return f"{what} {label}" if label else what


def plot_gene(path: str | os.PathLike, record: WindowRecord, **kwargs) -> Path:
    """Draw one gene's figure (:func:`gene_figure`, same keyword arguments) to ``path`` as a PNG,
    written under a temporary name and renamed; returns the path."""
    fig = gene_figure(record, **kwargs)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return Path(path)
