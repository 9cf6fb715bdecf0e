"""Each training variant as a gReLU model type.

How each model type reads a batch: :func:`seq2exp_plugin.model.batch.predict_batch` (re-exported
here with :func:`~seq2exp_plugin.model.batch.given_mask`).
"""

from __future__ import annotations

from typing import Any

from ..model.batch import given_mask, predict_batch  # noqa: F401 (their former home)
from ..model.config import preset
from .config import RunConfig, given

#: Width (bp) of the promoter the promoter-ridge baseline reads (the gene table's promoter-
#: activity window, TSS +/- 500 bp).
PROMOTER_WIDTH = 1000


def model_config(run: RunConfig):
    """The Seq2Exp configuration of a run: preset + overrides, signals named by the data."""
    overrides = run.model_overrides()
    config = preset(run.preset, **overrides)
    if config.position_table and "position_table" not in overrides:
        config.position_table = run.data.window  # one row per position of the run's windows
    return config


def model_params(run: RunConfig) -> dict[str, Any]:
    """gReLU ``model_params`` for the run's variant (see seq2exp_plugin.adapters.grelu)."""
    fields = model_config(run).to_dict()
    if run.variant in ("seq2exp", "retrain"):
        return {"model_type": "Seq2ExpModel", **fields}
    if run.variant in ("seq-only", "seq-signals", "peak-mask"):
        return {"model_type": "Seq2ExpPredictor", "use_signals": run.variant != "seq-only", **fields}
    if run.variant == "hierarchical-cnn":
        return {"model_type": "HierarchicalCNN", "window": run.data.window, "cnn": given(run.cnn), **fields}
    if run.variant == "ridge":
        return {"model_type": "ExpectoRidge", **fields}
    if run.variant == "promoter-ridge":
        return {"model_type": "ExpectoRidge", "ridge": {"promoter_width": PROMOTER_WIDTH}, **fields}
    raise ValueError(f"unknown variant {run.variant!r}")
