"""What training prints: a log line every few steps when the progress bar is off, and none of
Lightning's advertising or of its own deprecation noise."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from typing import Iterator

_LIGHTNING_LOGS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within the block (also a decorator), drop Lightning's "Tip: ... litlogger" line, the
    ``LeafSpec`` deprecation warning its pytree helper raises under recent torch, and its
    "checkpoint directory exists" warning on a resumed run (none is actionable by a user of this
    tool: resuming is how a rerun works). Filters and logging are as before afterwards."""
    tips = _NoTips()
    logs = [logging.getLogger(name) for name in _LIGHTNING_LOGS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        for log in logs:
            log.addFilter(tips)
        try:
            yield
        finally:
            for log in logs:
                log.removeFilter(tips)


def step_log(every: int, total: int):
    """A Lightning callback printing ``step s/total: loss, lr, s/step`` every ``every`` steps
    (and the validation metrics after each validation), for runs without a progress bar."""
    import pytorch_lightning as pl

    class StepLog(pl.Callback):
        def __init__(self) -> None:
            self.t0 = None

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if self.t0 is None:
                self.t0 = (time.perf_counter(), step - 1)
            if trainer.is_global_zero and (step % every == 0 or step == total):
                metrics = trainer.callback_metrics
                seconds = (time.perf_counter() - self.t0[0]) / max(1, step - self.t0[1])
                print(f"step {step}/{total}: train_loss {float(metrics.get('train_loss', float('nan'))):.4f}, "
                      f"lr {float(metrics.get('lr', float('nan'))):.2e}, {seconds:.2f} s/step", flush=True)

        def on_validation_end(self, trainer, module) -> None:
            if trainer.is_global_zero and not trainer.sanity_checking:
                values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
                print(f"step {trainer.global_step}/{total}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in sorted(values.items())), flush=True)

    return StepLog()
