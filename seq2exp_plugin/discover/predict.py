"""``seq2exp predict``: expression per gene plus the discovered regulatory elements, as files.

Writes into ``out`` (built in a temporary directory beside it, renamed when complete, so an
interrupted run leaves nothing):

- ``expression.tsv`` and ``expression.h5ad``: predicted (and observed, when known)
  log10(expression + 1) per gene;
- ``mask.<cell>.bw``: the soft mask (posterior mean) per bp, maximum over overlapping windows;
  genes are run in genomic order and both mask files stream out, so memory does not grow with
  the number of genes;
- ``elements.<cell>.bed``: runs of kept positions, merged, scored, named ``<gene_id>:<n>``;
- ``plots/<gene_id>.png``: signals, mask, elements, MACS3 peaks and ground truth when given;
- ``summary.json``: what was run and, when targets are known, the metrics; with ``truth`` and a
  Seq2Exp model, what its generator adds (``generator``: mask, signal-only and generator AUPRC,
  causal vs decoy; :func:`seq2exp_plugin.discover.recovery.generator_metrics`).

Two cell types side by side (``--cell-types A B``, both masks and the elements kept in one only):
:mod:`seq2exp_plugin.discover.differential`, on the genes that :func:`open_genes` reads here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_output_dir, check_output_dir, write_json
from ..errors import InputError
from ..train.evaluate import GenePrediction, load_run, predict_dataset
from ..train.fit import make_dataset
from ..train.metrics import regression_metrics
from .plots import plot_gene
from .regions import RegionWriter, genomic_order, read_chrom_sizes

#: Variants whose predictions come with a per-bp mask (the others get no mask files).
MASKED_VARIANTS = ("seq2exp", "retrain", "peak-mask")


def _read_annotations(truth, peaks):
    """The --truth and --peaks files read once, before any work (so that a bad file is an error
    even when no gene is plotted)."""
    from ..data.blacklist import IntervalMask
    from .peaks import resolve_peaks_path
    from .recovery import read_truth

    truth = read_truth(truth) if isinstance(truth, (str, os.PathLike)) else truth
    if isinstance(peaks, (str, os.PathLike)):
        peaks = IntervalMask(resolve_peaks_path(peaks), what="peaks file")
    return truth, peaks


def open_genes(checkpoint: str, data_overrides: dict[str, Any] | None, split: str | None,
               gene_ids: Sequence[str] | None, threshold: float, cell_types: Sequence[str] | None = None):
    """What ``predict`` and ``links`` read before predicting, every input checked first.

    Args:
        cell_types: several cell types to predict side by side (``predict --cell-types``); their
            signals are the checkpoint's paths with ``{cell_type}`` replaced by each name.

    Returns:
        ``(module, run, dataset, sizes, order)``: the checkpoint's model and run, the dataset of
        the selected genes (``gene_ids``, else a ``split``, else all) for one cell type (with
        ``cell_types``, a :class:`~seq2exp_plugin.data.celltypes.CellTypesDataset` of them), the
        genome's chromosome sizes, and the examples' genomic order (so the files stream out; a
        gene's cell types stay consecutive).
    """
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"--threshold must be in (0, 1] (mask scores lie in [0, 1]), got {threshold}")
    if cell_types is not None:
        _check_cell_types(cell_types, data_overrides)
    module, run = load_run(checkpoint, data_overrides)
    if cell_types is not None:
        run = _with_cell_types(checkpoint, run, cell_types)
    elif len(run.data.cell_types) > 1:
        raise InputError(f"{checkpoint} was trained on cell types {run.data.cell_types}: predict one at "
                         "a time with --data cell_type=NAME (or two side by side with --cell-types A B)")
    dataset = make_dataset(run, split, gene_ids=gene_ids)
    sizes = read_chrom_sizes(run.data.genome)
    groups = getattr(dataset, "groups", None) or [[i] for i in range(len(dataset))]
    windows = [(dataset.chroms[g[0]], dataset.tss[g[0]] - run.data.window // 2) for g in groups]
    order = [i for k in genomic_order(windows, sizes) for i in groups[k]]
    return module, run, dataset, sizes, order


def _check_cell_types(cell_types: Sequence[str], data_overrides: dict[str, Any] | None) -> None:
    """--cell-types names two different cell types, and no --data entry names others."""
    if len(cell_types) != 2:
        raise InputError(f"--cell-types compares two cell types, got {len(cell_types)}: {list(cell_types)}")
    if cell_types[0] == cell_types[1]:
        raise InputError(f"--cell-types names {cell_types[0]!r} twice: give two different cell types")
    for key in ("cell_type", "cell_types"):
        if (data_overrides or {}).get(key) is not None:
            raise InputError(f"--cell-types and --data {key}=... both choose the cell types: give --cell-types alone")


def _with_cell_types(checkpoint: str, run, cell_types: Sequence[str]):
    """The run reading each of ``cell_types`` (its signals and gene-table column), refused if its
    signal paths are the same for every cell type."""
    from ..train.config import RunConfig

    if not any("{cell_type}" in str(path) for path in run.data.signals.values()):
        raise InputError(f"--cell-types: the signals of {checkpoint} ({run.data.signals}) hold no {{cell_type}}, "
                         "so every cell type would read the same files; give paths per cell type with "
                         "--data 'signals={dnase: \"{cell_type}/dnase.bw\", ...}'")
    data = run.to_dict()["data"]
    return RunConfig.from_dict({**run.to_dict(), "data": {**data, "cell_types": list(cell_types)}})


def predict_to_directory(
    checkpoint: str,
    out: str | Path,
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
    on_gene: Callable[[GenePrediction], None] | None = None,
) -> Path:
    """Predict the selected genes (``gene_ids``, else a ``split``, else all) into ``out``;
    ``on_gene`` sees each gene's prediction (with its mask score) as it is made."""
    out = check_output_dir(out, force, "--out")
    truth, peaks = _read_annotations(truth, peaks)
    # genes in genomic order, so the mask and element files stream out; the tables keep the given order
    module, run, dataset, sizes, order = open_genes(checkpoint, data_overrides, split, gene_ids, threshold)
    cell = run.data.cell_type
    masked = run.variant in MASKED_VARIANTS
    to_plot = set(informative_genes(dataset, max_plots))
    rank = {g: i for i, g in enumerate(dataset.gene_ids)}
    with atomic_output_dir(out, force=force) as tmp:
        rows: list[tuple] = []
        scored: list[GenePrediction] = []  # with a truth: kept for the generator metrics
        with RegionWriter(sizes, bigwig=tmp / f"mask.{cell}.bw" if masked else None,
                          bed=tmp / f"elements.{cell}.bed" if masked else None, threshold=threshold,
                          min_gap=min_gap, min_length=min_length, decimals=3) as regions:
            for gene in predict_dataset(module.net, dataset, batch_size, num_workers, progress=progress,
                                        order=order):
                rows.append(_expression_row(gene, cell))
                if on_gene is not None:
                    on_gene(gene)
                if gene.score is None:
                    continue
                if truth is not None and gene.sequence_score is not None:
                    scored.append(gene)
                record = gene.window
                elements = regions.add(record, gene.score)
                if gene.gene_id in to_plot:
                    item = dataset.get_numpy(rank[gene.gene_id])
                    plot_gene(tmp / "plots" / f"{gene.gene_id}.png", record,
                              signals=dict(zip(dataset.signal_names, item["signals"])),
                              score=gene.score, generator=gene.sequence_score,
                              elements=[row[1:] for row in elements], peaks=peaks,
                              truth=truth, observed=gene.target, predicted=gene.prediction,
                              threshold=threshold, expression_label=f"log10({cell} expression + 1)")
        rows.sort(key=lambda row: rank[row[0]])
        table = pd.DataFrame(rows, columns=EXPRESSION_COLUMNS)
        table.to_csv(tmp / "expression.tsv", sep="\t", index=False, float_format="%.6g")
        _expression_anndata(table, cell).write_h5ad(tmp / "expression.h5ad")
        summary: dict[str, Any] = {"checkpoint": str(checkpoint), "variant": run.variant,
                                   "cell_type": cell, "n_genes": len(rows), "window": run.data.window}
        known = table["observed"].notna()
        if known.sum() >= 2:
            summary["metrics"] = regression_metrics(table["predicted"][known], table["observed"][known])
        if scored:
            from .recovery import generator_recovery

            summary["generator"] = generator_recovery(scored, truth, blacklist=run.data.blacklist,
                                                      exclude_center=module.net.config.mask.promoter_keep)
        write_json(tmp / "summary.json", summary)
    return out


def informative_genes(dataset, n: int) -> list[str]:
    """The ``n`` genes worth plotting: highest observed expression first, then genes without a
    measured target by promoter activity (the last gene feature) - not the table's first genes,
    which are often silent and signal-free."""
    if n <= 0:
        return []
    targets = np.where(np.isfinite(dataset.targets), dataset.targets, -np.inf)
    activity = dataset.features[:, -1] if dataset.features.shape[1] else np.zeros(len(targets))
    order = np.lexsort((-np.nan_to_num(activity), -targets))  # by target, then activity
    return [str(dataset.gene_ids[i]) for i in order[:n]]


EXPRESSION_COLUMNS = ("gene_id", "chrom", "tss", "strand", "cell_type", "observed", "predicted", "mask_ratio")


def _expression_row(gene: GenePrediction, cell: str) -> tuple:
    """One gene's row of expression.tsv (a few numbers: the per-bp score is not kept)."""
    ratio = float((gene.score >= 0.5).mean()) if gene.score is not None else np.nan
    return (gene.gene_id, gene.chrom, gene.tss, gene.strand, cell, gene.target, gene.prediction, ratio)


def _expression_anndata(table: pd.DataFrame, cell: str):
    import anndata

    obs = table[["gene_id", "chrom", "tss", "strand", "mask_ratio"]].set_index("gene_id", drop=False)
    obs.index = obs.index.astype(str)
    obs.index.name = None
    adata = anndata.AnnData(X=table[["predicted"]].to_numpy(np.float32), obs=obs,
                            var=pd.DataFrame(index=[cell]))
    adata.layers["observed"] = table[["observed"]].to_numpy(np.float32)
    return adata
