"""Precision-recall curves, average precision (AUPRC) and precision at a recall, for link benchmarks.

The curve has one point per distinct score, highest first: at threshold ``t`` every pair with
``score >= t`` is called (ties enter together). AUPRC is the step-wise average precision
``sum_k (R_k - R_{k-1}) P_k`` (``R_0 = 0``), the estimator scikit-learn's
``average_precision_score`` computes (no interpolation, so it does not flatter a curve as the
trapezoid rule does). Precision at a recall (the CRISPR benchmark's "precision at 70% recall")
is read at the highest threshold whose recall reaches it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["precision_recall_curve", "average_precision", "precision_at_recall"]


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)``, one entry per distinct score, thresholds decreasing.

    Args:
        labels: (n,) booleans (True = regulated).
        scores: (n,) finite numbers (higher = more likely regulated).
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (no NaN): give unscored pairs an explicit score")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    called = last + 1
    positives = max(int(y.sum()), 1)
    return tp / called, tp / positives, s[last]


def average_precision(labels, scores) -> float:
    """AUPRC as step-wise average precision (NaN without positives)."""
    if not np.asarray(labels, dtype=bool).any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_recall(labels, scores, recall: float = 0.7) -> tuple[float, float]:
    """``(precision, threshold)`` at the highest threshold whose recall is at least ``recall``
    (NaN, NaN without positives)."""
    if not np.asarray(labels, dtype=bool).any():
        return float("nan"), float("nan")
    precision, rec, thresholds = precision_recall_curve(labels, scores)
    k = int(np.argmax(rec >= recall - 1e-12))  # recall reaches 1 at the last point
    return float(precision[k]), float(thresholds[k])
