"""A run directory belongs to one configuration: resume it, refuse another one, or start over.

``seq2exp train`` run twice with the same configuration resumes from ``checkpoints/last.ckpt``
(or does nothing when that run has finished). With a different configuration it stops before
anything is written and names the keys that differ: resuming would mix two runs in one set of
checkpoints. ``restart`` (``--restart``) deletes the previous checkpoints and logs instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from ..atomic import check_writable_dir
from ..errors import InputError
from .config import RunConfig

#: Keys that change how a run is executed, not what it computes: free to differ on resume.
EXECUTION_KEYS = ("data.num_workers", "train.progress_bar", "train.tensorboard")


def last_checkpoint(run: RunConfig) -> Path:
    return Path(run.out_dir) / "checkpoints" / "last.ckpt"


def config_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two configuration dicts (execution keys aside)."""
    a, b = _flatten(stored), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, _MISSING) != b.get(k, _MISSING))
    return [k for k in keys if k not in EXECUTION_KEYS]


def prepare(run: RunConfig, restart: bool = False) -> Path | None:
    """Check ``run.out_dir`` before any work: writable, and either new, or holding this very
    configuration. Returns ``last.ckpt`` to resume from, or None to train from scratch;
    ``restart`` removes what a previous run left (checkpoints, logs)."""
    out = Path(run.out_dir)
    check_writable_dir(out, "out_dir")
    stored_path = out / "config.yaml"
    if restart:
        for name in ("checkpoints", "logs", "tensorboard"):
            shutil.rmtree(out / name, ignore_errors=True)
        return None
    last = last_checkpoint(run)
    if not last.is_file():
        return None
    if stored_path.is_file():
        try:
            stored = yaml.safe_load(stored_path.read_text())
        except yaml.YAMLError:
            stored = None
        new = yaml.safe_load(yaml.safe_dump(run.to_dict()))
        if not isinstance(stored, dict):
            raise InputError(f"{stored_path}: unreadable; cannot tell whether {out} holds this run "
                             f"(use --restart to start over)")
        try:  # a field added since the run was stored counts with its default value
            stored = yaml.safe_load(yaml.safe_dump(RunConfig.from_dict(stored).to_dict()))
        except (TypeError, ValueError):
            pass  # compared as stored
        differ = config_differences(stored, new)
        if differ:
            shown = ", ".join(f"{k} ({_get(stored, k)!r} -> {_get(new, k)!r})" for k in differ[:8])
            more = f" and {len(differ) - 8} more" if len(differ) > 8 else ""
            raise InputError(f"{out} holds a run with a different configuration: {shown}{more}; "
                             f"use another out_dir, or --restart to delete that run and start over")
    return last


def finished_step(last: Path) -> int:
    """The global step stored in a checkpoint written by ``seq2exp train``."""
    from .module import read_checkpoint

    return int(read_checkpoint(str(last)).get("global_step", 0))


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: value}


def _get(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return "(absent)"
        data = data[part]
    return data
