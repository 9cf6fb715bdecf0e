"""``seq2exp predict --cell-types A B``: the elements a model keeps in one cell type and not in the other.

One Seq2Exp model reads cell identity from the signals, so running it on a gene's window with
each cell type's signals (the same DNA) gives two masks whose difference says which elements
the model uses in one cell type only. Writes into ``out`` (built in a temporary folder beside
it and renamed when complete; an interrupted run leaves nothing):

- ``mask.<A>.bw``, ``mask.<B>.bw``: each cell type's soft mask (posterior mean), maximum over
  overlapping windows, as ``seq2exp predict`` writes it;
- ``difference.bw``: ``mask A - mask B`` per bp (of those two files, so where windows overlap it
  is the difference of the maxima);
- ``elements.<A>.bed``, ``elements.<B>.bed``: each cell type's called elements (as ``predict``);
- ``differential.bed``: runs of positions kept (mask >= threshold) in one cell type and not the
  other, per gene (columns: :func:`differential_columns`);
- ``expression.tsv`` (one row per gene and cell type, ``predict``'s columns) and
  ``expression.h5ad`` (genes x the two cell types; layers ``observed`` and ``mask_ratio``);
- ``plots/<gene>.png``: both cell types' signals and masks, elements and differential elements;
- ``summary.json``: what was run, per-cell-type metrics and, with a truth per cell type, the
  differential-element AUPRC of the mask difference beside that of the signal-only difference
  (:func:`~seq2exp_plugin.discover.recovery.differential_recovery`).

Genes run in genomic order with both cell types of a gene together, so every file streams out
and memory does not grow with the number of genes.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_output_dir, check_output_dir, write_json
from ..errors import InputError
from ..train.evaluate import GenePrediction, predict_dataset
from ..train.metrics import regression_metrics
from .plots import plot_gene
from .predict import (EXPRESSION_COLUMNS, MASKED_VARIANTS, _expression_row, _read_annotations,
                      informative_genes, open_genes)
from .regions import ElementWriter, MaskWriter, SortedBedWriter, call_elements, elements_to_genomic


def differential_columns(a: str, b: str) -> tuple[str, ...]:
    """The columns of ``differential.bed`` for cell types ``a`` and ``b``: name = the gene; score =
    ``round(1000 x |mean mask A - mean mask B|)``; strand = the gene's; kept_in = the cell type
    whose mask keeps the run; the two cell types' mean masks over the run and the gene's
    predicted log10(expression + 1) in each."""
    return ("chrom", "start", "end", "name", "score", "strand", "kept_in", f"mask_{a}", f"mask_{b}",
            f"predicted_{a}", f"predicted_{b}")


class MaskPairWriter(MaskWriter):
    """Two cell types' masks of the same windows into ``mask_a``, ``mask_b`` and their difference
    into ``difference``; the difference is taken after the maximum over overlapping windows, so
    that the difference file is exactly the first file minus the second."""

    def __init__(self, mask_a, mask_b, difference, sizes, decimals: int | None = None, force: bool = False):
        self._open([mask_a, mask_b, difference], sizes, decimals, force, channels=2)

    def add(self, record, score_a: np.ndarray, score_b: np.ndarray) -> None:
        self._add(record, [score_a, score_b])

    def _files(self, values: np.ndarray) -> list[np.ndarray]:
        return [values[0], values[1], values[0] - values[1]]


def differential_elements(score_a: np.ndarray, score_b: np.ndarray, threshold: float = 0.5,
                          min_gap: int = 0, min_length: int = 1) -> list[tuple[int, int, int]]:
    """``(start, end, k)`` in window coordinates: runs kept in cell type ``k`` (0: A, 1: B) and not
    in the other (:func:`~.regions.call_elements` of that indicator: runs ``min_gap`` bp apart
    merged, shorter than ``min_length`` dropped), sorted by start."""
    kept_a, kept_b = np.asarray(score_a) >= threshold, np.asarray(score_b) >= threshold
    runs = [(e.start, e.end, k) for k, only in enumerate((kept_a & ~kept_b, kept_b & ~kept_a))
            for e in call_elements(only.astype(np.float64), 1.0, min_gap, min_length)]
    return sorted(runs)


class DifferentialWriter(SortedBedWriter):
    """Streams each gene's :func:`differential_elements` into ``differential.bed``."""

    def __init__(self, path, cell_types: Sequence[str], threshold: float = 0.5, min_gap: int = 0,
                 min_length: int = 1, sizes=None, force: bool = False):
        super().__init__(path, differential_columns(*cell_types), sizes, force)
        self.cell_types = list(cell_types)
        self.threshold, self.min_gap, self.min_length = threshold, int(min_gap), int(min_length)

    def add(self, a: GenePrediction, b: GenePrediction) -> list[tuple]:
        """Add one gene's two predictions; returns its genomic rows."""
        record = a.window
        chrom, size = self._chrom(record)
        ga, gb = (np.asarray(record.genomic(np.asarray(s, np.float64))) for s in (a.score, b.score))
        rows = []
        for start, end, k in differential_elements(a.score, b.score, self.threshold, self.min_gap, self.min_length):
            for gs, ge, _ in elements_to_genomic([(start, end, 0.0)], record, size):
                mean_a, mean_b = (float(v[gs - record.start: ge - record.start].mean()) for v in (ga, gb))
                rows.append((chrom, gs, ge, record.gene_id, int(min(round(1000 * abs(mean_a - mean_b)), 1000)),
                             record.strand, self.cell_types[k], mean_a, mean_b, a.prediction, b.prediction))
        self._emit(record, chrom, rows)
        return rows

    def _format(self, r) -> str:
        return (f"{r[0]}\t{int(r[1])}\t{int(r[2])}\t{r[3]}\t{int(r[4])}\t{r[5]}\t{r[6]}\t"
                f"{r[7]:.4f}\t{r[8]:.4f}\t{r[9]:.6g}\t{r[10]:.6g}\n")


def _per_cell_type(path: str | None, option: str, cell: str) -> str | None:
    """An annotation path of one cell type: ``{cell_type}`` replaced (required with --cell-types)."""
    if path is None:
        return None
    if "{cell_type}" not in str(path):
        raise InputError(f"{option} with --cell-types: write {{cell_type}} in its path (e.g. "
                         f"truth/{{cell_type}}.bed), each cell type has its own; got {path}")
    return str(path).replace("{cell_type}", cell)


def predict_differential(
    checkpoint: str,
    out: str | Path,
    cell_types: Sequence[str],
    gene_ids: Sequence[str] | None = None,
    split: str | None = None,
    data_overrides: dict[str, Any] | None = None,
    threshold: float = 0.5,
    min_gap: int = 0,
    min_length: int = 1,
    max_plots: int = 20,
    truth: str | None = None,
    peaks: str | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Predict the selected genes in two cell types and write both masks, their difference and
    the differential elements into ``out`` (see the module docstring); ``truth`` and ``peaks``
    hold ``{cell_type}``. Every input is checked before any output is made."""
    out = check_output_dir(out, force, "--out")
    cell_types = [str(c) for c in cell_types]
    annotations = {c: _read_annotations(_per_cell_type(truth, "--truth", c), _per_cell_type(peaks, "--peaks", c))
                   for c in dict.fromkeys(cell_types)}
    module, run, dataset, sizes, order = open_genes(checkpoint, data_overrides, split, gene_ids, threshold,
                                                    cell_types=cell_types)
    if run.variant not in MASKED_VARIANTS:
        raise InputError(f"--cell-types compares masks: {checkpoint} is a {run.variant!r} model, which has none "
                         f"(masked variants: {', '.join(MASKED_VARIANTS)})")
    a, b = cell_types
    to_plot = set(list(dict.fromkeys(informative_genes(dataset, len(dataset))))[:max(max_plots, 0)])
    group = {str(dataset.gene_ids[g[0]]): g for g in dataset.groups}
    rank = {gene: k for k, gene in enumerate(group)}
    with atomic_output_dir(out, force=force) as tmp, ExitStack() as files:
        masks = files.enter_context(MaskPairWriter(tmp / f"mask.{a}.bw", tmp / f"mask.{b}.bw", tmp / "difference.bw",
                                                   sizes, decimals=3))
        elements = [files.enter_context(ElementWriter(tmp / f"elements.{c}.bed", threshold, min_gap, min_length,
                                                      sizes=sizes)) for c in cell_types]
        differential = files.enter_context(DifferentialWriter(tmp / "differential.bed", cell_types, threshold,
                                                              min_gap, min_length, sizes))
        rows: list[tuple] = []
        pairs: list[tuple[GenePrediction, GenePrediction]] = []  # with truths: kept for the summary
        waiting: dict[str, GenePrediction] = {}  # a gene's first cell type, until its second comes
        for gene in predict_dataset(module.net, dataset, batch_size, num_workers, progress=progress, order=order):
            rows.append(_expression_row(gene, gene.cell_type))
            if gene.gene_id not in waiting:
                waiting[gene.gene_id] = gene
                continue
            pa, pb = sorted((waiting.pop(gene.gene_id), gene), key=lambda g: cell_types.index(g.cell_type))
            if truth is not None:
                pairs.append((pa, pb))
            record = pa.window
            masks.add(record, pa.score, pb.score)
            called = {f"elements {c}": [r[1:] for r in writer.add(record, p.score)]
                      for c, writer, p in zip(cell_types, elements, (pa, pb))}
            only = differential.add(pa, pb)
            called.update({f"{c} only": [r[1:3] for r in only if r[6] == c] for c in cell_types})
            if pa.gene_id in to_plot:
                _plot(tmp / "plots" / f"{pa.gene_id}.png", dataset, group[pa.gene_id], (pa, pb), called,
                      annotations, threshold)
        files.close()  # publish the streamed files before the tables
        rows.sort(key=lambda row: (rank[row[0]], cell_types.index(row[4])))
        table = pd.DataFrame(rows, columns=EXPRESSION_COLUMNS)
        table.to_csv(tmp / "expression.tsv", sep="\t", index=False, float_format="%.6g")
        _expression_anndata(table, cell_types).write_h5ad(tmp / "expression.h5ad")
        write_json(tmp / "summary.json", _summary(checkpoint, run, module, table, cell_types, pairs, annotations))
    return out


def _plot(path: Path, dataset, examples: Sequence[int], genes: Sequence[GenePrediction], called: dict,
          annotations: dict, threshold: float) -> None:
    """One gene's figure: each cell type's signals and mask, the elements and differential lanes."""
    signals, truths, peaks = {}, {}, {}
    for i, gene in zip(examples, genes):
        item = dataset.get_numpy(i)
        signals.update({f"{name} {gene.cell_type}": values
                        for name, values in zip(dataset.signal_names, item["signals"])})
        truth, peak = annotations[gene.cell_type]
        if truth is not None:
            truths[f"truth {gene.cell_type}"] = truth
        if peak is not None:
            peaks[f"MACS3 peaks {gene.cell_type}"] = peak
    values = "; ".join(f"{g.cell_type} predicted {g.prediction:.3f}"
                       + (f", observed {g.target:.3f}" if np.isfinite(g.target) else "") for g in genes)
    plot_gene(path, genes[0].window, signals=signals, score={g.cell_type: g.score for g in genes},
              elements=called, peaks=peaks or None, truth=truths or None, threshold=threshold,
              title=f"{genes[0].gene_id}   |   {values}   [log10(expression + 1)]")


def _expression_anndata(table: pd.DataFrame, cell_types: Sequence[str]):
    """Genes x cell types: predicted in ``X``, ``observed`` and ``mask_ratio`` as layers."""
    import anndata

    first = table[table["cell_type"] == cell_types[0]]
    obs = first[["gene_id", "chrom", "tss", "strand"]].set_index("gene_id", drop=False)
    obs.index = obs.index.astype(str)
    obs.index.name = None

    def wide(column: str) -> np.ndarray:
        return table.pivot(index="gene_id", columns="cell_type", values=column).loc[
            first["gene_id"], list(cell_types)].to_numpy(np.float32)

    adata = anndata.AnnData(X=wide("predicted"), obs=obs, var=pd.DataFrame(index=list(cell_types)))
    adata.layers["observed"] = wide("observed")
    adata.layers["mask_ratio"] = wide("mask_ratio")
    return adata


def _summary(checkpoint, run, module, table: pd.DataFrame, cell_types: Sequence[str], pairs, annotations) -> dict:
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "variant": run.variant, "cell_types": list(cell_types),
                               "n_genes": int(len(table) // 2), "window": run.data.window, "metrics": {}}
    for c in cell_types:
        part = table[(table["cell_type"] == c) & table["observed"].notna()]
        if len(part) >= 2:
            summary["metrics"][c] = regression_metrics(part["predicted"], part["observed"])
    if pairs:
        from .recovery import differential_labels, differential_recovery

        labels = differential_labels(*(annotations[c][0] for c in cell_types), [pa.window for pa, _ in pairs],
                                     exclude_center=module.net.config.mask.promoter_keep,
                                     blacklist=run.data.blacklist)
        result = {"mask": differential_recovery({pa.gene_id: pa.score for pa, _ in pairs},
                                                {pb.gene_id: pb.score for _, pb in pairs}, labels)}
        if pairs[0][0].signal_score is not None:  # Seq2Exp: the signal Beta's mean, the signals alone
            result["signal"] = differential_recovery({pa.gene_id: pa.signal_score for pa, _ in pairs},
                                                     {pb.gene_id: pb.signal_score for _, pb in pairs}, labels)
        summary["differential"] = {"auprc": result["mask"]["auprc"],
                                   "auprc_signal": result.get("signal", {}).get("auprc"),
                                   "prevalence": result["mask"]["prevalence"],
                                   "n_positions": result["mask"]["n_positions"]}
    return summary
