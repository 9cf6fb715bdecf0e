"""Inference over a gene set and the paper's metrics (``seq2exp evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..data.windows import WindowRecord, loader_workers
from ..errors import InputError
from ..model.batch import cpu_rows_per_call, given_mask, predict_batch
from .config import RunConfig, resolve_data_paths
from .metrics import METRIC_NAMES, celltype_metrics, regression_metrics


@dataclass
class GenePrediction:
    """One gene's prediction; ``score`` is the per-bp mask score over the window (array index
    order: reversed genomic order when ``reverse_complemented``), or None for unmasked models."""

    gene_id: str
    chrom: str
    start: int
    end: int
    strand: str
    tss: int
    target: float
    prediction: float
    score: np.ndarray | None
    reverse_complemented: bool
    #: Seq2Exp only, same order as ``score``: the mean of the generator's own Beta(alpha1,
    #: beta1) (what the DNA says) and of the signal Beta(alpha2, beta2) (the signal-only ranking).
    sequence_score: np.ndarray | None = None
    signal_score: np.ndarray | None = None
    #: The cell type whose signals and target this is (runs on ``data.cell_types``).
    cell_type: str | None = None

    @property
    def window(self) -> WindowRecord:
        """Where ``score`` lies on the genome (for the region writers, plots and recovery)."""
        return WindowRecord(self.gene_id, self.chrom, self.start, self.end, self.strand,
                            self.reverse_complemented, self.tss)


def load_run(checkpoint: str, data_overrides: dict[str, Any] | None = None):
    """``(module, run config)`` of a checkpoint, data paths optionally replaced; relative paths
    stored in the checkpoint (a bundled one) are taken from its folder; a ``cell_type`` among
    the replacements replaces the run's ``cell_types`` too (a model of several cell types
    predicting one, held out or not)."""
    from pathlib import Path

    from .module import load_module

    module = load_module(checkpoint)
    run = module.run_config
    window = (data_overrides or {}).get("window")
    if window is not None and window != run.data.window:
        # the same rule as the Kipoi model: the network only knows the window it was trained on
        raise InputError(f"{checkpoint} was trained on {run.data.window:,} bp windows; "
                         f"--data window={window} asks for another length (drop it, or train on that window)")
    data = {**resolve_data_paths(run.to_dict()["data"], Path(checkpoint).resolve().parent),
            **{k: v for k, v in (data_overrides or {}).items() if v is not None}}
    if (data_overrides or {}).get("cell_type") is not None and (data_overrides or {}).get("cell_types") is None:
        data["cell_types"] = []  # one cell type, seen in training or not (its own signals)
    # before the run configuration is rebuilt: its model section would name the tracks first
    module.model.config.check_tracks(data["signals"], f"{checkpoint}: the data")
    return module, RunConfig.from_dict({**run.to_dict(), "data": data})


@torch.no_grad()
def predict_dataset(net: torch.nn.Module, dataset, batch_size: int = 1, num_workers: int = 0,
                    keep_scores: bool = True, progress: bool = True,
                    order: Sequence[int] | None = None) -> Iterator[GenePrediction]:
    """Run a model over a window dataset, gene by gene (in ``order`` if given), in eval mode;
    on the CPU ``batch_size`` is capped to :data:`~seq2exp_plugin.model.batch.CPU_INFERENCE_POSITIONS`."""
    net.eval()
    device = next(net.parameters(), torch.empty(0)).device
    batch_size = min(batch_size, cpu_rows_per_call(dataset.window, device) or batch_size)
    rc = dataset.rc_minus_strand
    loader = DataLoader(dataset if order is None else Subset(dataset, list(order)),
                        batch_size=batch_size, **loader_workers(num_workers))
    for batch in tqdm(loader, desc="genes", unit="batch", disable=not progress):
        prediction, mask = predict_batch(net, batch)
        scores = mask.score if mask is not None else given_mask(net, batch)
        terms = (mask.distribution.sequence_mean, mask.distribution.signal_mean) if mask is not None else None
        for i, gene_id in enumerate(batch["gene_id"]):
            strand = batch["strand"][i]
            sequence, signal = ((t[i].float().numpy() for t in terms) if keep_scores and terms
                                else (None, None))
            yield GenePrediction(
                gene_id=gene_id, chrom=batch["chrom"][i], start=int(batch["start"][i]),
                end=int(batch["end"][i]), strand=strand, tss=int(batch["tss"][i]),
                target=float(batch["target"][i]), prediction=float(prediction[i]),
                score=scores[i].float().numpy() if keep_scores and scores is not None else None,
                reverse_complemented=rc and strand == "-",
                sequence_score=sequence, signal_score=signal,
                cell_type=batch["cell_type"][i] if "cell_type" in batch else None,
            )


def evaluate(net: torch.nn.Module, dataset, batch_size: int = 1, num_workers: int = 0,
             progress: bool = True,
             on_gene: Callable[[GenePrediction], None] | None = None) -> dict[str, float]:
    """MSE, MAE, Pearson, Spearman over the dataset's examples, the mask ratio, the count, and
    with several cell types the :func:`~.metrics.celltype_metrics`; ``on_gene`` sees each
    example's prediction (``seq2exp evaluate --truth`` keeps them to score the generator)."""
    predictions, targets, ratios, genes, cells = [], [], [], [], []
    for gene in predict_dataset(net, dataset, batch_size, num_workers, progress=progress):
        predictions.append(gene.prediction)
        targets.append(gene.target)
        genes.append(gene.gene_id)
        cells.append(gene.cell_type)
        if gene.score is not None:
            ratios.append(float((gene.score >= 0.5).mean()))
        if on_gene is not None:
            on_gene(gene)
    metrics = regression_metrics(np.array(predictions), np.array(targets))
    if ratios:
        metrics["mask_ratio"] = float(np.mean(ratios))
    metrics["n_genes"] = int(np.sum(~np.isnan(targets)))
    if cells and cells[0] is not None:
        metrics.update(celltype_metrics(np.array(predictions), np.array(targets), genes, cells))
    return metrics


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per model, the paper's metric columns, then any other metric
    of the rows (the several-cell-type ones)."""
    columns = [*METRIC_NAMES, "mask_ratio", "n_genes"]
    columns += [k for k in dict.fromkeys(k for values in rows.values() for k in values)
                if k not in columns and not k.startswith("generator_")]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        cells = []
        for col in columns:
            value = values.get(col)
            if value is None:
                cells.append("-")
            elif col == "mask_ratio":
                cells.append(f"{100 * value:.2f}%")
            elif col in ("n_genes", "cross_celltype_genes"):
                cells.append(str(int(value)))
            else:
                cells.append(f"{value:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
