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


def _design(design, dataset, run: RunConfig, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``design(signals, features)`` rows and the targets of every window of ``dataset``."""
    rows, targets = [], []
    loader = DataLoader(dataset, batch_size=run.train.batch_size, **loader_workers(run.data.num_workers))
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"ridge: {what} windows", disable=not run.train.progress_bar):
            rows.append(design(batch["signals"], batch["features"]).numpy())
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
    train = _design(net.design, train_set, run, "train")
    valid = _design(net.design, valid_set, run, "valid")
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


def fit_promoter_linear(net, run: RunConfig, train_set: Dataset, valid_set: Dataset) -> float | None:
    """Fit a Seq2Exp predictor's promoter path (``model.promoter_linear``) in closed form, as the
    promoter-ridge baseline is fitted: on the training windows, penalty chosen on the validation
    windows. Returns the penalty; None (nothing done) for a model without that path."""
    from ..model.baselines import fit_ridge_into

    predictor = getattr(net, "predictor", net)
    linear = getattr(predictor, "promoter_linear", None)
    if linear is None:
        return None
    scaling = predictor.scaling

    def design(signals, features):
        return predictor.promoter_design(scaling.signals(signals), scaling.features(features))

    train, valid = (_standardised(predictor, _design(design, data, run, what))
                    for data, what in ((train_set, "train"), (valid_set, "valid")))
    return fit_ridge_into(linear, *train, valid=valid)
