"""Training checkpoints that appear whole or not at all, like every other output.

Lightning's own writer opens the checkpoint file itself and writes into it, so a full disk or a
kill mid-save can leave a truncated ``best.ckpt`` that the next load fails on. This writer goes
through :func:`seq2exp_plugin.atomic.atomic_file`: a temporary file beside the checkpoint, renamed
over it once ``torch.save`` has finished.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` (same format, same loading), saving atomically; give it
    to the Trainer as ``plugins=[AtomicCheckpointIO()]``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Args:
            checkpoint: the state Lightning dumps (model, optimizer, loops).
            path: the checkpoint file; the previous one stays until this one is complete.
            storage_options: unsupported, as in ``TorchCheckpointIO``.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_file(path) as tmp:
            torch.save(checkpoint, tmp)
