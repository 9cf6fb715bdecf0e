"""Training as gReLU's LightningModel extended with the information-bottleneck KL term.

:class:`Seq2ExpLightning` *is* a ``grelu.lightning.LightningModel``: its checkpoints carry
gReLU's ``model_params`` / ``train_params`` hyper-parameters and ``model.*`` weights, so
``grelu.lightning.LightningModel.load_from_checkpoint(path)`` loads them as they are (with
gReLU's own prediction tools), and :func:`load_network` gives back the library model;
:func:`load_grelu_model` names the cell type a per-cell-type head reads on gReLU's stacked channels.

What it changes: batches are the window dataset's dicts; the loss is eq. 3 (task loss + weighted
KL; with ``train.loss: hybrid`` the task loss adds the cross-cell-type term); AdamW with the
paper's schedule; the paper's validation metrics; and per-step seeding so that a resumed run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from grelu.lightning import LightningModel

from .. import register_grelu_models
from ..errors import InputError
from ..model.batch import given_mask, predict_batch
from ..model.seq2exp import Seq2ExpModel, Seq2ExpOutput, seq2exp_loss
from .celltype_loss import cross_celltype_loss, gene_index
from .config import RunConfig, TrainConfig
from .metrics import SplitMetrics
from .recipe import make_optimizer, make_scheduler


class Seq2ExpLightning(LightningModel):
    """``Seq2ExpLightning(model_params, train_params)`` where ``train_params["seq2exp"]`` is the
    :class:`RunConfig` as a dict; build one with :meth:`from_run_config`."""

    def __init__(self, model_params: dict[str, Any], train_params: dict[str, Any]) -> None:
        register_grelu_models()  # gReLU builds the model by name (model_params["model_type"])
        super().__init__(model_params, train_params)
        self.run_config = RunConfig.from_dict(train_params["seq2exp"])
        self.data_params["tasks"] = {"name": ["expression" if len(self.run_config.data.cell_types) > 1
                                              else self.run_config.data.cell_type or "expression"]}
        self.val_split_metrics = SplitMetrics()

    @classmethod
    def from_run_config(cls, run: RunConfig) -> "Seq2ExpLightning":
        from .variants import model_params

        train_params = {
            # what gReLU's own __init__ reads: a one-task regression, logged; its "mse" only
            # gives the identity output (gReLU's training loop is refused by the model classes)
            "task": "regression", "loss": "mse", "logger": "csv",
            "lr": run.train.lr, "batch_size": run.train.batch_size,
            # what training really used (gReLU reads neither)
            "objective": f"seq2exp_loss: {run.train.loss} + mask.kl_weight x KL (eq. 3; no KL "
                         "without a generator)",
            "optimizer": "adamw",
            "seq2exp": run.to_dict(),
        }
        return cls(model_params(run), train_params)

    def build_model(self) -> None:
        """gReLU's build by name, where a per-cell-type head needs no cell type named: each
        batch gives its examples' (``cell_type_index``)."""
        import grelu.model.models as models

        params = {k: v for k, v in self.model_params.items() if k != "model_type"}
        self.model = getattr(models, self.model_params["model_type"])(batch_cell_types=True, **params)

    @property
    def net(self) -> torch.nn.Module:
        """The library model (Seq2ExpModel, Seq2ExpPredictor or HierarchicalCNN)."""
        return self.model.net

    def step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eq. 3 on one batch: ``{"loss", "task", "kl", "prediction", "mask"}``."""
        cfg = self.run_config
        prediction, mask = predict_batch(self.net, batch)
        kl_weight = self.net.config.mask.kl_weight if mask is not None else 0.0
        hybrid = cfg.train.loss == "hybrid"
        losses = seq2exp_loss(Seq2ExpOutput(prediction, mask), batch["target"], kl_weight,
                              "mse" if hybrid else cfg.train.loss)
        if hybrid:  # the MSE plus the cross-cell-type term, in float32 as the rest
            term = cfg.train.cross_celltype_weight * cross_celltype_loss(
                prediction.float(), batch["target"].float(), gene_index(batch["gene_id"]))
            losses = {**losses, "loss": losses["loss"] + term, "task": losses["task"] + term}
        return {**losses, "prediction": prediction,
                "mask": mask.mask if mask is not None else given_mask(self.net, batch)}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The mask sample and dropout of step s depend on (seed, s) only: resuming replays them.
        torch.manual_seed(self.run_config.train.seed + self.global_step)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.step(batch)
        size = batch["target"].shape[0]
        self.log("train_loss", out["loss"], prog_bar=True, batch_size=size)
        self.log("train_kl", out["kl"], batch_size=size)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=size)
        return out["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.step(batch)
        self.val_split_metrics.update(out["prediction"], batch["target"], out["mask"],
                                      batch["gene_id"], batch.get("cell_type"))
        self.log("val_loss", out["loss"], batch_size=batch["target"].shape[0], sync_dist=True)
        return out["loss"]

    def on_validation_epoch_end(self) -> None:
        values = self.val_split_metrics.compute()
        self.log_dict({f"val_{k}": v for k, v in values.items()}, sync_dist=False)
        train = self.run_config.train
        if train.loss == "hybrid":  # the same on every rank (the best checkpoint's criterion)
            self.log("val_hybrid_loss", values["mse"] + train.cross_celltype_weight
                     * self.val_split_metrics.cross_celltype_term(), sync_dist=True)
        self.val_split_metrics.reset()
        self.performance["val"] = values

    def configure_optimizers(self):
        cfg = self.run_config.train
        optimizer = make_optimizer(self.model, cfg)
        scheduler = make_scheduler(optimizer, cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # plain Python values only, so torch.load(weights_only=True) reads the checkpoint
        checkpoint["data_params"] = self.data_params
        checkpoint["performance"] = {
            split: {k: float(v) for k, v in values.items()} for split, values in self.performance.items()
        }


def checkpoint_metric(train: TrainConfig) -> str:
    """The validation value ``best.ckpt`` minimises: the MSE, or under ``train.loss: hybrid``
    that loss over the whole split (``val_hybrid_loss``: MSE + w x the cross-cell-type term).
    Chosen by the MSE alone, a hybrid run keeps the step where the MSE was lowest, though the
    term it was trained for may have improved since (docs/celltypes.md)."""
    return "val_hybrid_loss" if train.loss == "hybrid" else "val_mse"


def read_checkpoint(path: str) -> dict:
    """The contents of a ``seq2exp train`` checkpoint (tensors memory-mapped), or an InputError
    "not a seq2exp checkpoint: <path>: <why>" for anything else (empty, truncated, random
    bytes, a bare state_dict, another model's checkpoint)."""
    import os
    import zipfile

    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path} is a folder; give a .ckpt file in it "
                                f"(`seq2exp train` writes OUT/checkpoints/best.ckpt)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")

    def refuse(why: str) -> InputError:
        return InputError(f"not a seq2exp checkpoint: {path}: {why}")

    if os.path.getsize(path) == 0:
        raise refuse("the file is empty")
    if not zipfile.is_zipfile(path):  # what torch.save writes
        raise refuse("not a PyTorch checkpoint (no zip archive inside: truncated, or another format)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for damaged files
        why = " ".join(str(err).split())[:160]
        raise refuse(f"not a readable PyTorch checkpoint (truncated or another format): {why}") from None
    if not isinstance(checkpoint, dict):
        raise refuse(f"it holds a {type(checkpoint).__name__}, not a training checkpoint")
    if "state_dict" not in checkpoint:
        raise refuse("no 'state_dict' entry (a bare state_dict? `seq2exp train` writes full checkpoints)")
    params = checkpoint.get("hyper_parameters", {}).get("train_params", {})
    if not isinstance(params, dict) or "seq2exp" not in params:
        raise refuse("no seq2exp run configuration in its hyper_parameters (not written by `seq2exp train`)")
    return checkpoint


def load_module(path: str) -> Seq2ExpLightning:
    """A checkpoint written by ``seq2exp train``, on the CPU, in eval mode."""
    read_checkpoint(path)
    module = Seq2ExpLightning.load_from_checkpoint(path, map_location="cpu")
    return module.eval()


def load_grelu_model(path: str, cell_type: str | None = None) -> Seq2ExpLightning:
    """A ``seq2exp train`` checkpoint as a gReLU ``LightningModel`` (on the CPU, in eval mode)
    whose ``forward`` on stacked channels reads ``cell_type``'s output.

    A per-cell-type head has one output per training cell type and the stacked channels carry no
    cell type, so the model reads one, named here (``cell_type`` in its ``model_params``): by
    default the run's cell type when it was trained on one; a run on several with that head
    needs it. A name the head has no output for is refused (an InputError names the file and the
    head's cell types). The shared head serves any cell type and ignores it.
    """
    params = read_checkpoint(path)["hyper_parameters"]
    data = RunConfig.from_dict(params["train_params"]["seq2exp"]).data
    trained, cell_type = data.celltypes(), data.cell_type_or_only(cell_type)
    model_params = dict(params["model_params"])
    if cell_type is not None:
        model_params["cell_type"] = cell_type
    try:
        module = Seq2ExpLightning.load_from_checkpoint(path, map_location="cpu", model_params=model_params)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    face = module.model
    if face.has_celltype_head and face.config.n_outputs > 1 and face.cell_type_index is None:
        raise InputError(f"{path} was trained on cell types {trained} with a per-cell-type head "
                         "(model.celltype_head), one output each, and stacked channels carry no cell "
                         f"type: name the one to read, load_grelu_model(path, cell_type={trained[0]!r})")
    return module.eval()


def load_network(path: str) -> torch.nn.Module:
    """The library model inside a ``seq2exp train`` checkpoint, on the CPU, in eval mode."""
    return load_module(path).net


def freeze_generator(net: Seq2ExpModel, checkpoint: str) -> None:
    """Seq2Exp-retrain: copy a trained model's generator into ``net`` and freeze it."""
    trained = load_network(checkpoint)
    if not isinstance(trained, Seq2ExpModel):
        raise InputError(f"{checkpoint}: retrain needs a Seq2Exp checkpoint, got {type(trained).__name__}")
    try:
        net.generator.load_state_dict(trained.generator.state_dict())
    except RuntimeError as err:
        raise InputError(f"{checkpoint}: its generator does not fit this configuration: {err}") from None
    net.generator.requires_grad_(False)
    net.generator.eval()
