"""Training checkpoints are written whole or not at all (seq2exp_plugin.train.checkpoint_io)."""

from __future__ import annotations

import errno

import pytest
import torch

import seq2exp_plugin.train.checkpoint_io as checkpoint_io
from seq2exp_plugin.train.checkpoint_io import AtomicCheckpointIO


def test_a_full_disk_mid_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "best.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}, "global_step": 1}, path)
    before = path.read_bytes()

    def full_disk(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(checkpoint_io.torch, "save", full_disk)
    with pytest.raises(OSError, match=rf"No space left on device: '{path}'$"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(4)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]
    assert io.load_checkpoint(path)["global_step"] == 1
