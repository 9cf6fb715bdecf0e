"""``seq2exp ism``: restricted ISM of some genes of a trained model, written atomically.

For each gene, :func:`seq2exp_plugin.discover.ism.ism_gene` mutates the top elements of its
mask; this module writes ``ism.tsv`` (one row per variant: genomic ``pos`` 1-based, + strand
bases), ``elements.bed``, per-gene bigWigs of the largest and mean effect per position, a plot
per element and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_output_dir, check_output_dir
from ..errors import InputError
from .ism import BASES, ISMResult, SelectedElement, ism_gene, load_locus, reference_mask


def _write_bigwig(path: Path, sizes: dict, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    if bw is None:
        raise OSError(f"pyBigWig cannot create {path}")
    try:
        bw.addHeader([(c, int(n)) for c, n in sizes.items()])
        keep = (positions >= 0) & (positions < sizes[chrom])
        pos = positions[keep].astype(np.int64)
        bw.addEntries([chrom] * len(pos), pos.tolist(), ends=(pos + 1).tolist(),
                      values=values[keep].astype(np.float64).tolist())
    finally:
        bw.close()


def _elements_bed_rows(result: ISMResult, chrom: str, chrom_size: int) -> list[tuple]:
    from ..data.windows import window_to_genomic

    loc = result.locus
    pos_index = {int(p): k for k, p in enumerate(result.positions)}
    rows = []
    for el in result.elements:
        gs, ge = window_to_genomic(el.start, el.end, loc.start, loc.end, loc.reverse)
        gs, ge = max(gs, 0), min(ge, chrom_size)
        if ge <= gs:
            continue
        ks = [pos_index[p] for p in el.positions]
        d = result.deltas[ks]
        nz = d[d != 0]
        max_abs = float(np.abs(d).max()) if d.size else 0.0
        mean_abs = float(np.abs(nz).mean()) if nz.size else 0.0
        name = f"{loc.gene_id}:{'promoter' if el.kind == 'promoter' else el.rank}"
        rows.append((chrom, gs, ge, name, int(min(max(round(1000 * el.mean_score), 0), 1000)),
                     loc.strand, loc.gene_id, el.kind, el.rank, round(el.mean_score, 4), len(el.positions),
                     int(el.clipped), f"{max_abs:.6g}", f"{mean_abs:.6g}"))
    return rows


BED_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "gene_id", "kind", "rank",
               "mask_mean", "bases_scored", "clipped", "max_abs_delta", "mean_abs_delta")


def plot_element(result: ISMResult, element: SelectedElement, path: Path, max_width: int = 200) -> Path:
    """PNG of one element: a logo of per-base importance (minus the mean effect of mutating the
    reference base: tall letters are bases whose change lowers expression) over a heatmap of the
    three alternatives' effects; + strand, genomic x axis; at most ``max_width`` bp around the
    strongest effect."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from matplotlib.textpath import TextPath
    from matplotlib.font_manager import FontProperties
    from matplotlib.transforms import Affine2D

    loc = result.locus
    pos_index = {int(p): k for k, p in enumerate(result.positions)}
    ks = [pos_index[p] for p in element.positions]
    if not ks:
        raise ValueError(f"gene {loc.gene_id!r}: element has no scored positions to plot")
    d = result.deltas[ks]  # (n, 4) window-order bases
    seq = np.asarray(loc.seq)[:, element.positions]
    gpos = loc.genomic(element.positions)
    if loc.reverse:  # to + strand: complement bases (A<->T, C<->G: reverse the base axis)
        d, seq = d[:, ::-1], seq[::-1]
    order = np.argsort(gpos)
    gpos, d, seq = gpos[order], d[order], seq[:, order]
    if len(gpos) > max_width:
        centre = int(np.argmax(np.abs(d).max(1)))
        lo = min(max(0, centre - max_width // 2), len(gpos) - max_width)
        gpos, d, seq = gpos[lo:lo + max_width], d[lo:lo + max_width], seq[:, lo:lo + max_width]
    ref_idx = seq.argmax(0)
    alt = np.ones_like(d, dtype=bool)
    alt[np.arange(len(gpos)), ref_idx] = False
    importance = -d[alt].reshape(-1, 3).mean(1)

    width = max(6.0, min(18.0, 0.09 * len(gpos) + 2))
    fig = Figure(figsize=(width, 4.2), constrained_layout=True)
    ax_logo, ax_heat = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, 1]})
    colors = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}
    font = FontProperties(family="DejaVu Sans", weight="bold")
    for x, (b, h) in enumerate(zip(ref_idx, importance)):
        if h == 0:
            continue
        letter = BASES[b]
        tp = TextPath((0, 0), letter, size=1, prop=font)
        bb = tp.get_extents()
        sx, sy = 0.9 / bb.width, abs(h) / bb.height
        y0 = 0 if h > 0 else h
        trans = Affine2D().translate(-bb.x0, -bb.y0).scale(sx, sy).translate(x - 0.45, y0)
        ax_logo.add_patch(PathPatch(trans.transform_path(tp), color=colors[letter], lw=0))
    lim = float(np.abs(importance).max()) or 1.0
    ax_logo.set_ylim(min(0.0, importance.min()) * 1.1 - 1e-12, max(0.0, importance.max()) * 1.1 + 1e-12)
    if importance.min() >= 0:
        ax_logo.set_ylim(0, lim * 1.1)
    ax_logo.axhline(0, color="black", lw=0.5)
    ax_logo.set_ylabel("-mean Δ\n(ref base)")
    name = f"{loc.gene_id}:{'promoter' if element.kind == 'promoter' else element.rank}"
    ax_logo.set_title(f"ISM {name}  {loc.chrom}:{int(gpos[0]) + 1:,}-{int(gpos[-1]) + 1:,} (+ strand)  "
                      f"gene strand {loc.strand}  ref. prediction {result.reference:.4f}", fontsize=9)
    heat = np.where(alt, d, np.nan).T  # (4, n)
    vmax = float(np.nanmax(np.abs(heat))) if np.isfinite(heat).any() else 1.0
    vmax = vmax or 1.0
    im = ax_heat.imshow(heat, aspect="auto", cmap="RdBu_r", interpolation="nearest",
                        norm=TwoSlopeNorm(0.0, -vmax, vmax), extent=(-0.5, len(gpos) - 0.5, 3.5, -0.5))
    ax_heat.set_yticks(range(4), list(BASES))
    ax_heat.set_ylabel("alt base")
    fig.colorbar(im, ax=ax_heat, label="Δ prediction (alt - ref)", fraction=0.03)
    ticks = np.linspace(0, len(gpos) - 1, min(len(gpos), 8)).round().astype(int)
    ax_heat.set_xticks(ticks, [f"{int(gpos[t]) + 1:,}" for t in ticks])
    ax_heat.set_xlabel(f"{loc.chrom} position (1-based)")
    ax_heat.set_xlim(-0.5, len(gpos) - 0.5)
    fig.savefig(path, dpi=110)
    return path


def run_ism(checkpoint: str, gene_ids: Sequence[str], out_dir: str | os.PathLike, *, top_elements: int = 5,
            bp_budget: int = 500, promoter_bp: int = 0, threshold: float | None = 0.5,
            top_fraction: float | None = None, min_gap: int = 20, min_length: int = 10,
            mask_mode: str = "recompute", batch_size: int = 64, devices="cpu", plot_elements: int = 1,
            data_overrides: dict | None = None, force: bool = False, progress: bool = True) -> dict:
    """``seq2exp ism``: restricted ISM of ``gene_ids`` with the checkpoint's data, written to
    ``out_dir`` atomically. Returns the summary (also written as ``summary.json``).

    Files: ``ism.tsv`` (one row per base and alternative: gene_id, element, chrom, pos 1-based,
    ref, alt (+ strand), window_index, prediction, delta = alt - ref prediction), ``elements.bed``
    (the scored elements, BED6+, 0-based), ``<gene>.max_abs_delta.bw`` and ``<gene>.mean_delta.bw``
    (per scored position), ``<gene>.element<k>.png`` for the top ``plot_elements`` elements,
    ``summary.json`` (cost included).
    """
    import pandas as pd
    from tqdm import tqdm

    from ..data.genome import resolve_chrom
    from ..model.mask import central_slice
    from ..train.evaluate import load_run
    from ..train.fit import make_dataset
    from .regions import read_chrom_sizes

    if not gene_ids:
        raise InputError("give at least one gene (--gene)")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    out_dir = check_output_dir(out_dir, force, "--out")
    module, run = load_run(checkpoint, data_overrides)
    dataset = make_dataset(run, None, gene_ids=list(gene_ids))
    sizes = read_chrom_sizes(str(run.data.genome))
    net = module.net
    promoter_keep = int(net.config.mask.promoter_keep) if hasattr(net, "config") else 0
    if mask_mode == "fixed" and not hasattr(net, "generator"):
        raise InputError(f"{checkpoint}: --mask-mode fixed needs a Seq2Exp model (this is {type(net).__name__})")

    results: list[ISMResult] = []
    t0 = time.perf_counter()
    loci = [load_locus(dataset, g) for g in gene_ids]
    for locus in tqdm(loci, desc="ISM genes", unit="gene", disable=not progress or len(loci) == 1):
        score = reference_mask(module, locus)
        if score is None:
            raise InputError(f"{checkpoint}: a {run.variant} model has no mask to select elements from; "
                             f"ISM restricted to elements needs a Seq2Exp or peak-mask model")
        length = locus.length
        exclude = central_slice(length, promoter_keep) if promoter_keep else None
        promoter = central_slice(length, promoter_bp) if promoter_bp > 0 else None
        results.append(ism_gene(module, locus, score, mask_mode=mask_mode, batch_size=batch_size, devices=devices,
                                top_elements=top_elements, bp_budget=bp_budget, threshold=threshold,
                                top_fraction=top_fraction, min_gap=min_gap, min_length=min_length,
                                exclude=exclude, promoter=promoter))
    elapsed = time.perf_counter() - t0

    with atomic_output_dir(out_dir, force=force) as tmp:
        table = pd.concat([r.table() for r in results], ignore_index=True)
        table.to_csv(tmp / "ism.tsv", sep="\t", index=False, float_format="%.6g")
        bed = []
        for r in results:
            chrom = resolve_chrom(r.locus.chrom, sizes, str(run.data.genome))
            bed.extend(_elements_bed_rows(r, chrom, sizes[chrom]))
            gpos, max_abs, mean = r.per_position()
            _write_bigwig(tmp / f"{r.locus.gene_id}.max_abs_delta.bw", sizes, chrom, gpos, max_abs)
            _write_bigwig(tmp / f"{r.locus.gene_id}.mean_delta.bw", sizes, chrom, gpos, mean)
            for el in [e for e in r.elements if e.kind == "element"][:plot_elements]:
                if el.positions:
                    plot_element(r, el, tmp / f"{r.locus.gene_id}.element{el.rank}.png")
        bed.sort(key=lambda row: (row[0], row[1], row[2], row[3]))
        with open(tmp / "elements.bed", "w") as fh:
            fh.write("#" + "\t".join(BED_COLUMNS) + "\n")
            for row in bed:
                fh.write("\t".join(map(str, row)) + "\n")
        summary = _summary(checkpoint, run, results, elapsed, mask_mode, batch_size)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(checkpoint, run, results: list[ISMResult], elapsed: float, mask_mode: str, batch_size: int) -> dict:
    genes = []
    for r in results:
        c = r.cost
        rate = c["seconds"] / c["model_calls"]
        scorable = int((np.asarray(r.locus.seq).sum(0) > 0).sum())
        full_calls = 3 * scorable + 1
        genes.append({
            "gene_id": r.locus.gene_id, "chrom": r.locus.chrom, "strand": r.locus.strand,
            "window": [r.locus.start, r.locus.end], "reference_prediction": r.reference,
            "elements": [{"kind": e.kind, "rank": e.rank, "window_start": e.start, "window_end": e.end,
                          "mask_mean": e.mean_score, "clipped": e.clipped, "bases_scored": len(e.positions)}
                         for e in r.elements],
            "bases_scored": c["bases"], "model_calls": c["model_calls"], "seconds": round(c["seconds"], 3),
            "seconds_per_model_call": rate,
            "full_window": {"bases": scorable, "model_calls": full_calls,
                            "seconds_extrapolated": round(full_calls * rate, 1),
                            "note": "extrapolated from this run's measured seconds per model call"},
            "fraction_of_full_window_calls": c["model_calls"] / full_calls,
        })
    return {"checkpoint": str(checkpoint), "variant": run.variant, "window": run.data.window,
            "mask_mode": mask_mode, "batch_size": batch_size, "positions": "1-based in ism.tsv; 0-based in BED/bigWig",
            "delta": "alt - ref prediction (model units: log10(expression + 1))",
            "seconds_total": round(elapsed, 3), "genes": genes}
