"""The paper's metrics over a whole split: MSE, MAE, Pearson r, Spearman rho, and the mask
ratio (fraction of kept bp). torchmetrics does the arithmetic and the sync across DDP ranks."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection
from torchmetrics import PearsonCorrCoef, SpearmanCorrCoef

from ..errors import InputError

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
    """Expression metrics plus the mean fraction of kept positions per gene."""

    def __init__(self) -> None:
        super().__init__()
        self.expression = expression_metrics()
        self.mask_ratio = MeanMetric()

    def update(self, prediction: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None = None) -> None:
        self.expression.update(prediction.detach().float(), target.float())
        if mask is not None:
            self.mask_ratio.update(mask_ratio(mask))

    def compute(self) -> dict[str, float]:
        values = {k: float(v) for k, v in self.expression.compute().items()}
        if self.mask_ratio.update_called:
            values["mask_ratio"] = float(self.mask_ratio.compute())
        return values

    def reset(self) -> None:
        self.expression.reset()
        self.mask_ratio.reset()


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
