"""Fit the model's input and target scaling on the training genes (``scaling: auto``).

What is fitted (stored as ``model.scaling`` in the run and the checkpoint, applied inside the
model's forward; :mod:`seq2exp_plugin.model.scaling`):

- signals: each bigWig track is divided by its genome-wide background
  (:meth:`~seq2exp_plugin.data.tracks.BigWigTrack.background`), so DNase/H3K27ac read as fold
  over the track's average whatever the file's unit (fold change, signal p-value, RPM); a Hi-C
  track (``log10(1 + x)`` of balanced contacts, about 0.01-0.15) is divided by its mean over
  the training windows (up to :data:`CONTACT_SAMPLE` of them), so a loop reads as a fold over
  the average contact: unscaled, its values are too small for the predictor's embedding and the
  signal Beta to see within a training run's steps. The predictor then reads ``log1p`` of these
  values (``signal_transform: log1p``) unless the run sets it.
- gene features: ``log1p`` for a feature whose training values are all >= 0 and reach above 10
  (counts and signal products such as promoter activity, spanning orders of magnitude; z-scores
  and GC fractions are left as they are), then standardised with the training mean and sd.
- target: the network predicts the standardised target (training mean and sd), so its output
  starts at the training mean; in eval mode predictions are clamped to the training range
  widened by 10% of its width on each side.

Only the training split's genes are read (validation and test genes cannot leak in). A run
that gives ``model.scaling`` itself, or ``scaling: none`` (the paper's raw values; the default
of a paper preset, :meth:`~.config.RunConfig.scaling_mode`), is left as it is.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .config import RunConfig

#: Features whose training values stay >= 0 and exceed this are log1p-transformed.
LOG1P_ABOVE = 10.0
#: Training windows whose mean contact scales a Hi-C track (evenly spaced over the genes).
CONTACT_SAMPLE = 64
#: The eval-mode clamp widens the training target range by this fraction of its width.
TARGET_MARGIN = 0.1


def signal_backgrounds(signals: dict[str, str], train_set) -> list[float]:
    """One divisor per track: a bigWig's genome-wide background; for Hi-C (any other reader)
    the track's mean over a sample of the training windows, 1 if that is not positive."""
    from ..data.tracks import BigWigTrack, is_bigwig_path

    other = [i for i, path in enumerate(signals.values()) if not is_bigwig_path(path)]
    window_means = np.zeros(len(signals))
    if other and len(train_set):
        picks = np.unique(np.linspace(0, len(train_set) - 1, min(CONTACT_SAMPLE, len(train_set))).astype(int))
        window_means = np.mean([train_set.get_numpy(int(i))["signals"].mean(axis=1, dtype=np.float64)
                                for i in picks], axis=0)
    return [BigWigTrack(path).background() if is_bigwig_path(path)
            else float(window_means[i]) if window_means[i] > 0 else 1.0
            for i, path in enumerate(signals.values())]


def fit_feature_scaling(features: np.ndarray) -> dict[str, list]:
    """``feature_log1p``, ``feature_mean``, ``feature_std`` of ``(n_genes, n_features)`` rows."""
    x = np.asarray(features, dtype=np.float64)
    finite = np.where(np.isfinite(x), x, np.nan)
    log1p = (np.nanmin(finite, axis=0) >= 0) & (np.nanmax(finite, axis=0) > LOG1P_ABOVE)
    transformed = np.where(log1p, np.log1p(np.clip(finite, 0, None)), finite)
    mean = np.nan_to_num(np.nanmean(transformed, axis=0))
    std = np.nan_to_num(np.nanstd(transformed, axis=0))
    std = np.where(std > 1e-8, std, 1.0)
    return {"feature_log1p": log1p.tolist(), "feature_mean": mean.tolist(), "feature_std": std.tolist()}


def fit_target_scaling(targets: np.ndarray) -> dict[str, float]:
    """Mean, sd and the eval-mode clamp range of the training targets."""
    y = np.asarray(targets, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.size < 2:
        raise InputError(f"the training split has {y.size} gene(s) with a target; need at least 2")
    low, high = float(y.min()), float(y.max())
    margin = TARGET_MARGIN * (high - low)
    std = float(y.std())
    return {"target_mean": float(y.mean()), "target_std": std if std > 1e-8 else 1.0,
            "target_low": low - margin, "target_high": high + margin}


def with_fitted_scaling(run: RunConfig, train_set) -> RunConfig:
    """``run`` with ``model.scaling`` fitted on ``train_set`` (a window dataset of the training
    genes: its feature and target arrays, and a sample of its windows for Hi-C), per the
    module docstring."""
    if run.scaling_mode() == "none" or "scaling" in run.model:
        return run
    # one model for every cell type: each track's background averaged over the cell types
    backgrounds = np.mean([signal_backgrounds(run.data.signals_of(cell), train_set)
                           for cell in run.data.celltypes()], axis=0).tolist()
    scaling = {"signal_background": backgrounds,
               **fit_feature_scaling(train_set.features), **fit_target_scaling(train_set.targets)}
    model = {**run.model, "scaling": scaling}
    if run.data.signals:
        model.setdefault("signal_transform", "log1p")
    return RunConfig.from_dict({**run.to_dict(), "model": model})
