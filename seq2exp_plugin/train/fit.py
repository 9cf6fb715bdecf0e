"""``seq2exp train``: fit a variant with Lightning, keep the best validation checkpoint, resume.

Outputs in ``out_dir``: ``config.yaml`` (the resolved run configuration),
``checkpoints/best.ckpt`` (lowest validation MSE; under the hybrid loss, lowest validation hybrid
loss: :func:`~.module.checkpoint_metric`), ``checkpoints/last.ckpt`` (resume point),
``logs/`` (CSV, and TensorBoard if asked). ``last.ckpt`` is written at every validation and when
training ends. Running the same command again resumes from ``last.ckpt`` and ends with the same
weights as an uninterrupted run (the batch order and every random draw are functions of
(seed, step)); on a finished run it does nothing; with another configuration it refuses
(see :mod:`.run_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..data.windows import loader_workers
from ..atomic import check_writable_dir, write_text
from ..errors import InputError
from .config import PAPER_EPOCHS, RunConfig, TrainConfig, given, resolve_data_paths
from .progress import quiet_lightning, step_log


class StepBatchSampler(Sampler[list[int]]):
    """The batches of global steps ``start_step .. total_steps - 1``.

    The examples form one endless stream, epoch ``e`` being a permutation seeded by
    ``seed + e``; step ``s`` takes stream positions ``[s * batch_size, (s + 1) * batch_size)``,
    and DDP rank ``r`` of ``world`` takes every ``world``-th of them starting at ``r``. With
    ``groups`` (the example indices of each gene, several cell types) the stream is one of
    genes, ``batch_size // (cell types)`` per step, each bringing all its examples.

    Its length is ``total_steps`` whatever ``start_step``: the whole run is one Lightning epoch,
    and a resumed Lightning counts the ``start_step`` batches it restored as already fetched
    (``_TrainingEpochLoop.on_run_start``: ``fetched += batch_progress.current.ready``). With
    the remaining count as length, it saw the epoch end after one batch and began another,
    which replayed batch ``start_step``.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int, total_steps: int,
                 start_step: int = 0, rank: int = 0, world: int = 1,
                 groups: Sequence[Sequence[int]] | None = None) -> None:
        if n_examples < 1:
            raise InputError("the training split has no genes")
        self.groups = None if groups is None else [list(g) for g in groups]
        per_step = batch_size if groups is None else max(1, batch_size // max(map(len, self.groups)))
        if per_step % world:
            raise InputError(f"train.batch_size ({batch_size}) must be a multiple of the {world} processes"
                             + ("" if groups is None else " times the cell types"))
        self.n = n_examples if groups is None else len(self.groups)
        self.batch_size, self.seed = per_step, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world = rank, world

    def _order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[list[int]]:
        orders: dict[int, torch.Tensor] = {}
        for step in range(self.start_step, self.total_steps):
            batch = []
            for pos in range(step * self.batch_size + self.rank, (step + 1) * self.batch_size, self.world):
                epoch, i = divmod(pos, self.n)
                if epoch not in orders:
                    orders = {epoch: self._order(epoch)}
                unit = int(orders[epoch][i])
                batch.extend([unit] if self.groups is None else self.groups[unit])
            yield batch

    def __len__(self) -> int:
        return self.total_steps


def make_dataset(run: RunConfig, split: str | None, gene_ids=None, require_target: bool = False) -> Dataset:
    """The window dataset of a run's data section (one split, or the given genes; with
    ``data.cell_types`` one example per gene and cell type); training and validation drop
    genes without a measured target."""
    from ..data.celltypes import CellTypesDataset
    from ..data.splits import SPLIT_OPTIONS, genes_of_split
    from ..data.windows import WindowDataset
    from .variants import model_config

    d = run.data
    heads = model_config(run)  # each cell type's output of a per-cell-type head, by name
    held = None if split is None else genes_of_split(d.genes, split, d.cell_type or None,
                                                        **{k: getattr(d, k) for k in SPLIT_OPTIONS})
    if held is not None:  # a gene-level split: select its genes by id
        split, gene_ids = None, held if gene_ids is None else [g for g in gene_ids if g in set(held)]
    datasets = {cell: WindowDataset(
        genes=d.genes, genome=d.genome, signals=d.signals_of(cell), cell_type=cell,
        window=d.window, split=split, gene_ids=gene_ids, rc_minus_strand=d.rc_minus_strand,
        blacklist=d.blacklist, allow_missing_chroms=d.allow_missing_chroms,
        hic_options=given(d.hic) or None, peaks=d.peaks, require_target=require_target,
        cell_type_index=heads.celltype_index(cell),
    ) for cell in d.celltypes()}
    return CellTypesDataset(datasets) if len(datasets) > 1 else datasets[d.cell_type]


def _shard(dataset: Dataset, rank: int, world: int) -> Dataset:
    return dataset if world == 1 else Subset(dataset, list(range(rank, len(dataset), world)))


def _gene_batches(groups: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Batches of whole genes in order: ``batch_size // (cell types)`` genes each (at least one)."""
    per_batch = max(1, batch_size // max(map(len, groups), default=1))
    return [[i for g in groups[k:k + per_batch] for i in g] for k in range(0, len(groups), per_batch)]


def _data_module(run: RunConfig, train_set: Dataset, valid_set: Dataset):
    """Loaders built when Lightning asks for them, i.e. after a checkpoint restored the step."""
    import pytorch_lightning as pl

    class WindowData(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            cfg, trainer = run.train, self.trainer
            sampler = StepBatchSampler(len(train_set), cfg.batch_size, cfg.seed, cfg.max_steps,
                                       start_step=trainer.global_step, rank=trainer.global_rank,
                                       world=trainer.world_size, groups=getattr(train_set, "groups", None))
            return DataLoader(train_set, batch_sampler=sampler, **loader_workers(run.data.num_workers))

        def val_dataloader(self) -> DataLoader:
            trainer = self.trainer
            per_device = max(1, run.train.batch_size // trainer.world_size)
            groups = getattr(valid_set, "groups", None)
            if groups is not None:  # whole genes per batch and per process
                return DataLoader(valid_set, batch_sampler=_gene_batches(
                    groups[trainer.global_rank::trainer.world_size], per_device),
                    **loader_workers(run.data.num_workers))
            shard = _shard(valid_set, trainer.global_rank, trainer.world_size)
            return DataLoader(shard, batch_size=per_device, **loader_workers(run.data.num_workers))

    return WindowData()


def _last_checkpoint_callback(ckpt_dir: Path):
    """``last.ckpt`` at every validation, whether or not it improved, and when training ends,
    so the final weights are always on disk. A ModelCheckpoint, so that Lightning runs it after
    the best-checkpoint callback, whose updated state it then stores."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    class LastCheckpoint(ModelCheckpoint):
        def __init__(self) -> None:
            super().__init__(dirpath=ckpt_dir, save_top_k=0, save_last=False)
            self.saved_step = -1

        def _save(self, trainer) -> None:
            if trainer.global_step == self.saved_step or trainer.sanity_checking:
                return
            path = ckpt_dir / "last.ckpt"
            tmp = ckpt_dir / ".last.ckpt.tmp"
            # every rank takes part; rank 0 writes. Full state (optimizer, loops): it resumes
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, path)  # a kill while saving leaves the previous last.ckpt whole
            self.saved_step = trainer.global_step

        def on_validation_end(self, trainer, pl_module) -> None:
            self._save(trainer)

        def on_train_end(self, trainer, pl_module) -> None:
            self._save(trainer)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            pass

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state_dict: dict) -> None:
            pass

    return LastCheckpoint()


def training_length(cfg: TrainConfig, n_train: int) -> str:
    """The run's length in steps and in passes over its training genes, beside the paper's."""
    passes = cfg.max_steps * cfg.batch_size / max(n_train, 1)
    how = (f"train.epochs={cfg.epochs:g}" if cfg.epochs is not None else
           f"the paper's recipe: {PAPER_EPOCHS}; train.epochs sets the length in passes")
    return (f"{cfg.max_steps} steps of {cfg.batch_size} = {passes:.3g} passes over {n_train} training "
            f"genes ({how}), warm-up {cfg.warmup_steps}, validation every "
            f"{min(cfg.val_every_steps, cfg.max_steps)}")


def run_inputs(run: RunConfig) -> list[str]:
    """What a run reads that is not the user's file as given: the contact track when it is a
    power law (no Hi-C), and how a paper preset's inputs are scaled."""
    from ..data.hic import HiCContacts, is_powerlaw

    lines = [f"signal {name!r}: {HiCContacts(spec).describe()}"
             for name, spec in run.data.signals.items() if is_powerlaw(spec)]
    if run.paper_run():
        lines.append(f"preset {run.preset!r} is a paper run: " + (
            "inputs and targets as the authors read them (raw signal values and features, "
            "log10(expression + 1); scaling: none); --set scaling=auto to scale them"
            if run.scaling_mode() == "none" else
            "scaling: auto fits the input/target scaling (the authors read raw values: scaling=none)"))
    return lines


@quiet_lightning()
def fit(run: RunConfig, resume: bool = True, callbacks: Sequence = ()):
    """Train ``run``; returns the Lightning trainer (ridge regression: the checkpoint path, as
    it is fitted in closed form; a finished run: None, nothing is done). ``resume=False``
    deletes what a previous run left in ``out_dir`` and starts over. ``callbacks`` are extra
    Lightning callbacks."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from .checkpoint_io import AtomicCheckpointIO
    from .module import Seq2ExpLightning, checkpoint_metric, freeze_generator
    from .run_dir import finished_step, prepare
    from .scaling import with_fitted_scaling

    quiet_lightning()
    run.check_trainable()
    # the checkpoint's data paths are read back relative to its own folder (load_run): a run
    # built in Python with paths relative to the working directory stores them absolute
    run = RunConfig.from_dict({**run.to_dict(), "data": resolve_data_paths(run.to_dict()["data"], Path.cwd())})
    check_writable_dir(run.out_dir, "out_dir")  # before the data are read (prepare checks the rest)

    for line in run_inputs(run):
        print(f"seq2exp train: {line}", flush=True)
    # the scaling and the step count first: the run directory stores (and compares) the run
    # with its fitted scaling and its steps
    train_set = make_dataset(run, "train", require_target=True)
    run = with_fitted_scaling(run, train_set)
    run = dataclasses.replace(run, train=run.train.for_genes(len(train_set)))
    last = prepare(run, restart=not resume)  # before any loading or writing
    ridge = run.variant in ("ridge", "promoter-ridge")
    if last is not None and finished_step(last) >= run.train.max_steps and not ridge:
        print(f"seq2exp train: {run.out_dir} already finished ({run.train.max_steps} steps); nothing to do")
        return None
    if ridge:
        from .ridge import fit_ridge

        return fit_ridge(run, make_dataset(run, "train", require_target=True),
                         make_dataset(run, "valid", require_target=True))

    print(f"seq2exp train: {training_length(run.train, len(train_set))}", flush=True)
    out_dir = Path(run.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    valid_set = make_dataset(run, "valid", require_target=True)
    if len(valid_set) == 0:
        raise InputError(f"{run.data.genes}: no genes in the 'valid' split for model selection")

    pl.seed_everything(run.train.seed, workers=True, verbose=False)
    module = Seq2ExpLightning.from_run_config(run)
    if run.variant == "retrain":
        freeze_generator(module.net, run.generator_checkpoint)
    if last is None:  # a resumed run reads its fitted promoter path from last.ckpt
        from .ridge import fit_promoter_linear

        alpha = fit_promoter_linear(module.net, run, train_set, valid_set)
        if alpha is not None:
            print(f"seq2exp train: promoter path fitted in closed form (ridge penalty {alpha:g}); "
                  "the network learns what it leaves unexplained", flush=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
    loggers = [CSVLogger(out_dir, name="logs")]  # a version_N per (re)start: resuming appends
    if run.train.tensorboard:
        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    gpu = run.train.accelerator in ("gpu", "cuda") or (
        run.train.accelerator == "auto" and torch.cuda.is_available())
    precision = run.train.precision if run.train.precision != "auto" else ("bf16-mixed" if gpu else "32-true")
    trainer = pl.Trainer(
        max_steps=run.train.max_steps,
        max_epochs=-1,
        val_check_interval=min(run.train.val_every_steps, run.train.max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=run.train.grad_clip or None,
        accelerator=run.train.accelerator,
        devices=run.train.devices,
        num_nodes=run.train.num_nodes,
        strategy=run.train.strategy,
        precision=precision,
        use_distributed_sampler=False,
        logger=loggers,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=checkpoint_metric(run.train),
                                   mode="min", save_last=False, enable_version_counter=False),
                   _last_checkpoint_callback(ckpt_dir),
                   *([TQDMProgressBar()] if run.train.progress_bar else
                     [step_log(run.train.log_every_steps, run.train.max_steps)]), *callbacks],
        log_every_n_steps=min(50, run.train.val_every_steps, run.train.max_steps),
        enable_progress_bar=run.train.progress_bar,
        enable_model_summary=False,
        default_root_dir=out_dir,
        deterministic=False,
        plugins=[AtomicCheckpointIO()],
    )
    with warnings.catch_warnings():  # the step sampler resumes mid-epoch exactly (see StepBatchSampler)
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended")
        _fit_stopping_on_ctrl_c(trainer, module, datamodule=_data_module(run, train_set, valid_set),
                                ckpt_path=str(last) if last is not None else None)
    return trainer


def _fit_stopping_on_ctrl_c(trainer, *args, **kwargs) -> None:
    """``trainer.fit``, with Ctrl-C raising ``KeyboardInterrupt`` as everywhere else (exit status
    130 from ``seq2exp``): Lightning ends its clean shutdown with ``sys.exit(1)`` instead, and
    leaves Ctrl-C ignored for the rest of the process."""
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    ctrl_c = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt() from None
    finally:
        if ctrl_c is not None:
            signal.signal(signal.SIGINT, ctrl_c)
