"""The paper's metrics over a whole split: MSE, MAE, Pearson r, Spearman rho, and the mask
ratio (fraction of kept bp). torchmetrics does the arithmetic and the sync across DDP ranks.

With several cell types (``data.cell_types``) two more kinds, as the hierarchical-model thesis
(chapter 3) defines them: the cross-gene Pearson/Spearman within each cell type, and the
cross-cell-type Spearman (per gene, across its cell types; averaged over the genes where it is
defined, whose number is reported beside it).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics import PearsonCorrCoef, SpearmanCorrCoef

from ..errors import InputError
from .celltype_loss import cross_celltype_loss, gene_index

METRIC_NAMES = ("mse", "mae", "pearson", "spearman")


def expression_metrics() -> MetricCollection:
    with warnings.catch_warnings():
        # Spearman keeps every prediction to rank them: that is the point, one value per gene.
        warnings.filterwarnings("ignore", message=".*will save all targets and predictions", category=UserWarning)
        return MetricCollection({
            "mse": MeanSquaredError(),
            "mae": MeanAbsoluteError(),
            "pearson": PearsonCorrCoef(),
            "spearman": SpearmanCorrCoef(),
        })


class SplitMetrics(torch.nn.Module):
    """Expression metrics plus the mean fraction of kept positions per gene, and with several
    cell types the :func:`celltype_metrics` (of this process's examples: under DDP, rank 0's
    share of the genes)."""

    def __init__(self) -> None:
        super().__init__()
        self.expression = expression_metrics()
        self.mask_ratio = MeanMetric()
        self.examples: list[tuple[np.ndarray, np.ndarray, list[str], list[str]]] = []

    def update(self, prediction: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None = None, gene_ids: list[str] | None = None,
               cell_types: list[str] | None = None) -> None:
        """Args: prediction, target ``(batch,)``; mask ``(batch, L)``; the batch's gene ids and
        cell types (lists of ``batch`` strings; None with one cell type)."""
        self.expression.update(prediction.detach().float(), target.float())
        if mask is not None:
            self.mask_ratio.update(mask_ratio(mask))
        if cell_types is not None:
            self.examples.append((prediction.detach().float().cpu().numpy(), target.float().cpu().numpy(),
                                  list(gene_ids), list(cell_types)))

    def compute(self) -> dict[str, float]:
        values = {k: float(v) for k, v in self.expression.compute().items()}
        if self.mask_ratio.update_called:
            values["mask_ratio"] = float(self.mask_ratio.compute())
        if self.examples:
            values.update(celltype_metrics(*self._gathered()))
        return values

    def _gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The split's examples so far: prediction, target, gene id, cell type ``(n_examples,)``."""
        prediction, target, genes, cells = zip(*self.examples)
        return (np.concatenate(prediction), np.concatenate(target), np.asarray(sum(genes, []), dtype=object),
                np.asarray(sum(cells, []), dtype=object))

    def cross_celltype_term(self) -> float:
        """The hybrid loss's cross-cell-type term over the whole split (every gene with two or
        more cell types, NaN targets dropped; 0 when there is none): what a checkpoint trained
        under ``train.loss: hybrid`` is chosen by, beside the MSE."""
        if not self.examples:
            return 0.0
        prediction, target, genes, _ = self._gathered()
        known = ~np.isnan(target)
        return float(cross_celltype_loss(torch.from_numpy(prediction[known]), torch.from_numpy(target[known]),
                                         gene_index(genes[known])))

    def reset(self) -> None:
        self.expression.reset()
        self.mask_ratio.reset()
        self.examples = []


def mask_ratio(mask: torch.Tensor) -> torch.Tensor:
    """Per-gene fraction of positions kept (mask >= 0.5): ``(batch, L)`` -> ``(batch,)``."""
    return (mask.detach() >= 0.5).float().mean(-1)


def regression_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The expression metrics of two 1-D arrays (NaN targets dropped)."""
    prediction, target = np.asarray(prediction, float), np.asarray(target, float)
    keep = ~np.isnan(target)
    if keep.sum() < 2:
        raise InputError(f"need at least 2 genes with a known target, got {int(keep.sum())}")
    metrics = expression_metrics()
    metrics.update(torch.from_numpy(prediction[keep]), torch.from_numpy(target[keep]))
    return {k: float(v) for k, v in metrics.compute().items()}


def celltype_metrics(prediction: np.ndarray, target: np.ndarray, gene_ids, cell_types) -> dict[str, float]:
    """The several-cell-type metrics of one split (NaN targets dropped); empty with one cell type.

    Args:
        prediction, target: ``(n_examples,)``, one example per (gene, cell type).
        gene_ids, cell_types: ``(n_examples,)`` strings naming each example's gene and cell type.

    Returns:
        ``pearson_<cell>``, ``spearman_<cell>``: across genes within each cell type;
        ``cross_celltype_spearman``: per gene, the Spearman of prediction vs target across its
        cell types, averaged over the ``cross_celltype_genes`` genes where it is defined (at
        least two cell types with a target, neither the predictions nor the targets all tied;
        NaN when there is none).
    """
    table = pd.DataFrame({"gene": np.asarray(gene_ids, dtype=object), "cell": np.asarray(cell_types, dtype=object),
                          "p": np.asarray(prediction, float), "t": np.asarray(target, float)})
    if len(table) != len(np.asarray(prediction)):
        raise ValueError("prediction, target, gene_ids and cell_types must have one entry per example")
    table = table[table["t"].notna()]
    cells = list(dict.fromkeys(table["cell"]))
    if len(cells) < 2:
        return {}
    values: dict[str, float] = {}
    for cell in cells:
        rows = table[table["cell"] == cell]
        if len(rows) >= 2:
            per_cell = regression_metrics(rows["p"].to_numpy(), rows["t"].to_numpy())
            values[f"pearson_{cell}"], values[f"spearman_{cell}"] = per_cell["pearson"], per_cell["spearman"]
    # Spearman = Pearson of the average ranks, within each gene
    ranks = table.groupby("gene")[["p", "t"]].rank()
    centred = ranks - ranks.groupby(table["gene"]).transform("mean")
    sums = pd.DataFrame({"pt": centred["p"] * centred["t"], "pp": centred["p"] ** 2, "tt": centred["t"] ** 2,
                         "n": 1}).groupby(table["gene"]).sum()
    defined = sums[(sums["n"] >= 2) & (sums["pp"] > 0) & (sums["tt"] > 0)]
    rho = defined["pt"] / np.sqrt(defined["pp"] * defined["tt"])
    values["cross_celltype_spearman"] = float(rho.mean()) if len(rho) else float("nan")
    values["cross_celltype_genes"] = int(len(rho))
    return values
