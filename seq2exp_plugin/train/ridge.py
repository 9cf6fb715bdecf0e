"""The ExPecto-style ridge baseline, fitted in closed form and saved as a training checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
import yaml
from tqdm import tqdm

from ..data.windows import loader_workers
from ..atomic import atomic_file, write_text
from .config import RunConfig


def _design(net, dataset, run: RunConfig, what: str) -> tuple[np.ndarray, np.ndarray]:
    rows, targets = [], []
    loader = DataLoader(dataset, batch_size=run.train.batch_size, **loader_workers(run.data.num_workers))
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"ridge: {what} windows", disable=not run.train.progress_bar):
            rows.append(net.design(batch["signals"], batch["features"]).numpy())
            targets.append(batch["target"].numpy())
    return np.concatenate(rows), np.concatenate(targets)


def _standardised(net, rows: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Design rows with targets on the network's standardised scale (what ``net.linear`` predicts)."""
    return rows[0], net.scaling.standardise(rows[1])


def fit_ridge(run: RunConfig, train_set: Dataset, valid_set: Dataset) -> Path:
    """Fit on the training windows, choose the penalty on the validation windows, write
    ``best.ckpt`` and ``last.ckpt`` in the format ``seq2exp train`` writes for every variant."""
    import pytorch_lightning as pl

    from .module import Seq2ExpLightning

    module = Seq2ExpLightning.from_run_config(run)
    net = module.net
    train = _design(net, train_set, run, "train")
    valid = _design(net, valid_set, run, "valid")
    net.fit(*_standardised(net, train), valid=_standardised(net, valid))
    with torch.no_grad():
        fitted = net.scaling.output(net.linear(torch.from_numpy(valid[0]).float()).squeeze(-1))
        mse = float(np.mean((fitted.numpy() - valid[1]) ** 2))
    module.performance["val"] = {"mse": mse, "alpha": float(net.alpha)}
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        "global_step": 0,
        "epoch": 0,
    }
    module.on_save_checkpoint(checkpoint)
    out = Path(run.out_dir) / "checkpoints"
    write_text(Path(run.out_dir) / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
    for name in ("best.ckpt", "last.ckpt"):
        with atomic_file(out / name) as tmp:
            torch.save(checkpoint, tmp)
    return out / "best.ckpt"
