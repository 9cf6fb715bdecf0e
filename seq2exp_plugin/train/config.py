"""The training configuration: one YAML file, one dataclass tree, stored in every checkpoint.

```yaml
variant: seq2exp          # see VARIANTS
preset: learned           # model preset (seq2exp_plugin.model.config.preset); soft: the paper's
model: {}                 # overrides of Seq2ExpConfig fields, e.g. {mask: {kl_weight: 0.02}}
data:
  genes: genes.h5ad
  genome: genome.fa
  signals: {h3k27ac: K562/h3k27ac.bw, dnase: K562/dnase.bw, hic: K562/hic.cool}
  cell_type: K562
  window: 200000
train:
  max_steps: 50000
out_dir: runs/K562-learned
```

Relative paths are resolved against the YAML file's folder. Defaults are the paper's recipe
(docs/training.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.blacklist import is_bundled
from ..data.hic import is_powerlaw
from ..errors import InputError
from ..model.config import preset
from ..typed_config import ConfigError, build, set_entries

#: What ``variant`` selects (paper Tables 1-2 and the thesis baselines).
VARIANTS = {
    "seq2exp": "Seq2Exp (soft or hard mask, per the model preset)",
    "retrain": "Seq2Exp-retrain: a trained generator frozen, its top positions kept, predictor retrained",
    "seq-only": "sequence only (Caduceus): the predictor on DNA, no signals, no mask",
    "seq-signals": "sequence + signals without a mask (Caduceus w/ signals)",
    "peak-mask": "the predictor on a MACS3 peak mask (data.peaks)",
    "hierarchical-cnn": "chromatin-to-expression CNN on signals binned at 128 bp",
    "ridge": "ExPecto-style ridge regression on spatially binned signals",
    "promoter-ridge": "ridge regression on the promoter signals (central 1 kb) and the gene features",
}

#: How ``seq2exp train`` scales inputs and targets (see seq2exp_plugin.train.scaling).
SCALING_MODES = ("auto", "none")
#: Model presets that reproduce the paper's or the authors' runs: a Seq2Exp run with one of them
#: reads the inputs as the authors did (``scaling: none``: raw bigWig values, raw features,
#: log10(expression + 1)) unless the run sets ``scaling``.
PAPER_PRESETS = ("soft", "hard", "hard-packed", "public-soft", "public-hard")


@dataclass
class HicConfig:
    """Options of the Hi-C contact-to-TSS extraction (:class:`seq2exp_plugin.data.hic.HiCContacts`,
    which documents each); None leaves the reader's default."""

    resolution: int | None = None
    balance: bool | str | None = None
    normalization: str | None = None
    diagonal: Literal["keep", "max_neighbors"] | None = None
    powerlaw_gamma: float | None = None
    powerlaw_ref: float | None = None
    pseudocount: float | None = None
    log1p: bool | None = None
    fmt: Literal["cool", "mcool", "hic", "bedpe", "bedgraph"] | None = None

    def __post_init__(self) -> None:
        if (self.resolution or 1) < 1 or (self.powerlaw_ref or 1) <= 0:
            raise InputError(f"resolution must be >= 1 and powerlaw_ref > 0 "
                             f"(got {self.resolution}, {self.powerlaw_ref})")
        if (self.powerlaw_gamma or 0) < 0 or (self.pseudocount or 0) < 0:
            raise InputError(f"powerlaw_gamma and pseudocount must be >= 0 "
                             f"(got {self.powerlaw_gamma}, {self.pseudocount})")


@dataclass
class CnnConfig:
    """Options of the hierarchical-cnn baseline (:class:`seq2exp_plugin.model.baselines.HierarchicalCNN`);
    None leaves the model's default."""

    bin_size: int | None = None
    channels: int | None = None
    n_blocks: int | None = None
    kernel_size: int | None = None
    dropout: float | None = None

    def __post_init__(self) -> None:
        if min(self.bin_size or 1, self.channels or 1, self.kernel_size or 1) < 1 or (self.n_blocks or 0) < 0:
            raise InputError("bin_size, channels and kernel_size must be >= 1 and n_blocks >= 0")
        if not 0 <= (self.dropout or 0) < 1:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")


def given(section) -> dict[str, Any]:
    """The options of a :class:`HicConfig` / :class:`CnnConfig` that are set, as keyword
    arguments (what the configuration stores: a section written ``{}`` stays ``{}``)."""
    return {k: v for k, v in dataclasses.asdict(section).items() if v is not None}


@dataclass
class DataConfig:
    #: The gene table (.h5ad) from ``seq2exp genes``.
    genes: str = ""
    #: The genome FASTA (with its .fai).
    genome: str = ""
    #: Signal tracks in channel order: name -> bigWig, or .cool/.mcool/.hic/bedpe for Hi-C, or
    #: ``powerlaw[:abc|k562|gamma=G,scale=S]`` for ABC's power-law contact where no Hi-C exists.
    signals: dict[str, str] = field(default_factory=dict)
    #: The cell type to predict: a column of the gene table. A ``{cell_type}`` in a signal's
    #: path is replaced by it (``K562/dnase.bw`` from ``"{cell_type}/dnase.bw"``).
    cell_type: str = ""
    #: Several cell types trained together (docs/celltypes.md): one example per (gene, cell
    #: type), reading the signals whose paths hold ``{cell_type}`` for each; replaces
    #: ``cell_type``. Empty: ``cell_type`` alone.
    cell_types: list[str] = field(default_factory=list)
    #: Window length in bp, centred on each TSS (the paper: 200,000).
    window: int = 200_000
    #: BED of excluded regions, or ``hg38`` for the bundled ENCODE GRCh38 blacklist.
    blacklist: str | None = None
    #: Peak file (narrowPeak/BED) for the peak-mask variant (``seq2exp peaks`` writes one).
    peaks: str | None = None
    #: Reverse-complement the windows of "-" strand genes (the paper does not).
    rc_minus_strand: bool = False
    #: A track without a gene's chromosome reads as zeros there instead of stopping.
    allow_missing_chroms: bool = False
    #: Options of the Hi-C contact-to-TSS extraction (see seq2exp_plugin.data.hic).
    hic: HicConfig = field(default_factory=HicConfig)
    #: Data-loading worker processes (0: load in the main process).
    num_workers: int = 2
    #: Gene-level splits (seq2exp_plugin.data.splits): the obs column of train/valid/test
    #: labels; or K contiguous folds along the genome with ``fold`` the test fold; or folds
    #: from the values of an obs column; or gene-list files of test / validation genes.
    split_column: str = "split"
    #: K contiguous gene folds along the genome (0: none) ...
    folds: int = 0
    #: ... with this fold as test and the next as validation.
    fold: int = 0
    #: Folds from the values of this gene-table column instead.
    fold_column: str | None = None
    #: A file of validation gene ids (one per line) ...
    valid_genes: str | None = None
    #: ... and one of test gene ids; the other genes train.
    test_genes: str | None = None

    def __post_init__(self) -> None:
        if self.window < 1 or self.num_workers < 0:
            raise InputError(f"window must be >= 1 and num_workers >= 0 (got {self.window}, {self.num_workers})")
        self.cell_types = [str(c) for c in self.cell_types]
        if len(set(self.cell_types)) != len(self.cell_types):
            raise InputError(f"data.cell_types names a cell type twice: {self.cell_types}")
        if len(self.cell_types) > 1 and self.signals and not any("{cell_type}" in str(v) for v in self.signals.values()):
            raise InputError("data.cell_types: every cell type would read the same signals; write "
                             "{cell_type} in the signal paths that differ between them (e.g. "
                             "'{cell_type}/dnase.bw')")

    def celltypes(self) -> list[str]:
        """The cell types of the run: ``cell_types``, else ``[cell_type]``."""
        return list(self.cell_types) or [self.cell_type]

    def cell_type_or_only(self, cell_type: str | None) -> str | None:
        """``cell_type``, else the run's cell type when it trained on one: the output a reader
        of one cell type (Kipoi, gReLU's stacked channels) takes by default; None for several."""
        if cell_type is not None:
            return str(cell_type)
        trained = self.celltypes()
        return trained[0] if len(trained) == 1 and trained[0] else None

    def signals_of(self, cell_type: str) -> dict[str, str]:
        """The signal paths of one cell type (``{cell_type}`` replaced)."""
        return {k: str(v).replace("{cell_type}", cell_type) for k, v in self.signals.items()}


#: What ``train.loss`` may be.
LOSSES = ("smooth_l1", "mse", "hybrid")


#: The paper's budget in passes over its training genes: 50,000 steps of 8 over the 16,021
#: training genes of its chromosome split (EPInformer's 18,413 TSSs less chr3, 21, 22 and X).
PAPER_EPOCHS = 25


@dataclass
class TrainConfig:
    #: Optimiser steps (the paper: 50,000).
    max_steps: int = 50_000
    #: The length of training in passes over the training genes; None: ``max_steps``. When set,
    #: ``seq2exp train`` replaces ``max_steps`` with ceil(epochs x training genes / batch_size)
    #: once it knows the genes (:meth:`for_genes`), so the budget follows the data: a few
    #: hundred genes need hundreds of steps, not the paper's 50,000 (``PAPER_EPOCHS`` passes).
    epochs: float | None = None
    #: Genes per step (per device).
    batch_size: int = 8
    #: AdamW's peak learning rate, reached after the warm-up.
    lr: float = 5e-4
    #: AdamW's betas.
    betas: tuple[float, float] = (0.9, 0.95)
    #: AdamW's weight decay, on every parameter but biases, norms, A_log and D.
    weight_decay: float = 1e-6
    #: Linear warm-up from ``warmup_start_lr``; None: 10% of ``max_steps`` (the paper's 5,000 of
    #: 50,000), so a shorter run set by ``max_steps`` alone keeps the recipe's shape.
    warmup_steps: int | None = None
    #: The learning rate the warm-up starts from.
    warmup_start_lr: float = 1e-5
    #: The floor of the cosine decay that follows the warm-up.
    min_lr: float = 1e-4
    #: The Seq2Exp generator's learning rate is ``lr * generator_lr_scale`` (its schedule has
    #: the same shape; ``min_lr`` stays the floor of every group). Its head starts at zero
    #: and moves by about one learning rate per Adam step, so at 1 its position-dependent
    #: part stays near 0 within a short run while the shared bias meets the kept-fraction target.
    generator_lr_scale: float = 1.0
    #: Gradient norm clipping (0: none).
    grad_clip: float = 1.0
    #: "smooth_l1" (the public implementation), "mse" (the paper's text), or "hybrid" (the
    #: thesis's: MSE + ``cross_celltype_weight`` x the cross-cell-type term, docs/celltypes.md;
    #: needs ``data.cell_types``; best.ckpt is then the lowest validation hybrid loss).
    loss: str = "smooth_l1"
    #: The weight ``w`` of the cross-cell-type term of ``loss: hybrid`` (the thesis: up to 100).
    cross_celltype_weight: float = 1.0
    #: Seed of the weights' initialisation, the data order and the mask samples.
    seed: int = 2222
    #: None: every 1,000 steps (the paper's), or after every pass over the training genes when
    #: ``epochs`` sets the length.
    val_every_steps: int | None = None
    #: "auto": bf16 autocast on GPU, fp32 on CPU.
    precision: str = "auto"
    #: Lightning's accelerator: "auto", "cpu" or "gpu".
    accelerator: str = "auto"
    #: Devices per node (a number, or Lightning's "auto" or list syntax).
    devices: int | str = 1
    #: Machines (several: ``strategy: ddp``).
    num_nodes: int = 1
    #: "auto", or "ddp" for several GPUs/nodes (also on CPU with gloo).
    strategy: str = "auto"
    #: Also write TensorBoard logs (CSV logs are always written).
    tensorboard: bool = False
    #: Show a progress bar (off: a log line every ``log_every_steps``).
    progress_bar: bool = True
    #: Without the progress bar: a log line every this many steps (and after each validation).
    log_every_steps: int = 50

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.loss not in LOSSES:
            raise InputError(f"train.loss must be one of {', '.join(map(repr, LOSSES))}, got {self.loss!r}")
        if not self.cross_celltype_weight >= 0:
            raise InputError(f"train.cross_celltype_weight must be >= 0, got {self.cross_celltype_weight}")
        if self.max_steps < 1 or self.batch_size < 1 or (self.val_every_steps or 1) < 1:
            raise InputError("train.max_steps, batch_size and val_every_steps must be >= 1")
        if self.epochs is not None and not 0 < self.epochs < 1e6:
            raise InputError(f"train.epochs must be > 0 (passes over the training genes), got {self.epochs}")
        if self.epochs is None:  # else the number of training genes decides (for_genes)
            self.val_every_steps = self.val_every_steps or 1_000
            if self.warmup_steps is None:
                self.warmup_steps = self.max_steps // 10
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.max_steps:
            raise InputError(f"train.warmup_steps ({self.warmup_steps}) must be between 0 and "
                             f"train.max_steps ({self.max_steps}); leave it out to warm up over "
                             "10% of max_steps")
        if self.lr <= 0 or self.warmup_start_lr <= 0 or self.min_lr < 0:
            raise InputError("train.lr and warmup_start_lr must be > 0 and min_lr >= 0")
        if self.generator_lr_scale <= 0:
            raise InputError(f"train.generator_lr_scale must be > 0, got {self.generator_lr_scale}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise InputError("train.weight_decay and grad_clip must be >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise InputError(f"train.betas must lie in [0, 1), got {list(self.betas)}")
        if self.num_nodes < 1 or (isinstance(self.devices, int) and self.devices < 1):
            raise InputError("train.num_nodes and devices must be >= 1")
        if not 0 <= self.seed < 2**32:
            raise InputError(f"train.seed must be in [0, 2**32), got {self.seed}")

    def for_genes(self, n_train: int) -> "TrainConfig":
        """This recipe on ``n_train`` training genes: with ``epochs``, its step count, warm-up
        (10% unless set) and validation interval (one pass unless set); otherwise unchanged."""
        if self.epochs is None:
            return self
        steps_per_pass = max(1, math.ceil(n_train / self.batch_size))
        max_steps = max(1, math.ceil(self.epochs * n_train / self.batch_size))
        warmup = max_steps // 10 if self.warmup_steps is None else self.warmup_steps
        if warmup > max_steps:
            raise InputError(f"train.warmup_steps ({warmup}) exceeds the {max_steps} steps of "
                             f"{self.epochs:g} passes over {n_train} training genes")
        return dataclasses.replace(self, max_steps=max_steps, warmup_steps=warmup,
                                   val_every_steps=self.val_every_steps or steps_per_pass)


@dataclass
class RunConfig:
    #: What to train (the variants table).
    variant: str = "seq2exp"
    #: Model preset (:func:`seq2exp_plugin.model.config.preset`). None: "learned" for the
    #: seq2exp variant (the project's default, see docs/model.md), "soft" for the others.
    preset: str | None = None
    #: Overrides of the preset's fields (the ``model.`` keys below).
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: retrain: the checkpoint whose generator is frozen.
    generator_checkpoint: str | None = None
    #: hierarchical-cnn: options of the CNN (channels, dropout, ...).
    cnn: CnnConfig = field(default_factory=CnnConfig)
    #: The run's folder: checkpoints, logs, the resolved configuration.
    out_dir: str = "runs/seq2exp"
    #: "auto": fit the input/target scaling on the training genes at the start of training and
    #: store it in the model (unless ``model.scaling`` is given); "none": the paper's raw values.
    #: None: the preset decides (:meth:`scaling_mode`), in every run made from this one (cv folds).
    scaling: str | None = None

    def __post_init__(self) -> None:
        self.data = build(DataConfig, self.data, "data")
        self.train = build(TrainConfig, self.train, "train")
        self.cnn = build(CnnConfig, self.cnn, "cnn")
        if self.variant not in VARIANTS:
            raise InputError(f"unknown variant {self.variant!r}; choose from {sorted(VARIANTS)}")
        if self.preset is None:
            self.preset = "learned" if self.variant == "seq2exp" else "soft"
        if self.variant == "retrain" and not self.generator_checkpoint:
            raise InputError("variant 'retrain' needs generator_checkpoint (a trained Seq2Exp checkpoint)")
        if self.scaling is not None and self.scaling not in SCALING_MODES:
            raise InputError(f"scaling must be one of {SCALING_MODES}, got {self.scaling!r}")
        if self.variant == "peak-mask" and not self.data.peaks:
            raise InputError("variant 'peak-mask' needs data.peaks (run `seq2exp peaks` to make one)")
        if self.model.get("celltype_head") is True and "cell_types" not in self.model:
            # the head's outputs, by name: stored with the run, so that evaluating one cell type
            # later (data.cell_type) still finds its output
            if not all(self.data.celltypes()):
                raise InputError("model.celltype_head has one output per cell type: name them in "
                                 "data.cell_types (or data.cell_type)")
            self.model = {**self.model, "cell_types": self.data.celltypes()}
        try:  # every variant's model is built from it: check names, types and ranges now
            model = preset(self.preset, **self.model_overrides())
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}" if not str(err).startswith("model") else str(err)) from None
        if model.celltype_head:
            self._check_celltype_head(model)
        for key, width, what in (("pool_width", model.pool_width, "pooled"),
                                 ("promoter_linear", model.promoter_linear, "read by the promoter path")):
            if width is not None and width > self.data.window:
                raise ConfigError(f"model.{key}: {width} bp {what} at the centre of a data.window of "
                                  f"{self.data.window} bp; it must not exceed the window")

    def _check_celltype_head(self, model) -> None:
        """A per-cell-type head needs a variant with a learned head, and an output for every cell
        type of the data (one held out of training has none)."""
        if self.variant in ("ridge", "promoter-ridge"):
            raise InputError(f"model.celltype_head: variant {self.variant!r} is one linear map "
                             "fitted in closed form, without a per-cell-type head; set "
                             "model.celltype_head to false, or train another variant (e.g. "
                             "hierarchical-cnn)")
        for cell in self.data.celltypes():
            model.celltype_index(cell)

    def check_trainable(self) -> None:
        """What training needs beyond a valid configuration (a model of several cell types
        evaluates one of them with the same configuration)."""
        if self.train.loss == "hybrid" and len(self.data.cell_types) < 2:
            raise InputError("train.loss 'hybrid' compares each gene's cell types: it needs data.cell_types "
                             f"with at least two, got {self.data.cell_types or [self.data.cell_type]}")

    def paper_run(self) -> bool:
        """A Seq2Exp run with one of the paper's or the authors' presets (:data:`PAPER_PRESETS`)."""
        return self.variant in ("seq2exp", "retrain") and self.preset in PAPER_PRESETS

    def scaling_mode(self) -> str:
        """``scaling``, or when unset "none" for a :meth:`paper_run` (the authors' raw inputs), else "auto"."""
        return self.scaling or ("none" if self.paper_run() else "auto")

    def model_overrides(self) -> dict[str, Any]:
        """The ``model`` section completed by the run: signals named by the data, and for
        ``retrain`` a frozen generator's top positions without a KL term."""
        overrides = dict(self.model)
        if self.data.signals:
            overrides.setdefault("signals", list(self.data.signals))
        if self.variant == "retrain":
            mask = dict(overrides.get("mask", {}))
            mask.setdefault("mode", "top")
            mask.setdefault("kl_weight", 0.0)  # the generator is frozen: no bottleneck to train
            overrides["mask"] = mask
        return overrides

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["data"]["hic"], out["cnn"] = given(self.data.hic), given(self.cnn)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return build(cls, data, "")


_PATH_FIELDS = ("genes", "genome", "blacklist", "peaks", "valid_genes", "test_genes")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run configuration; relative paths are taken from the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a YAML text file") from None
    if raw is None:
        raise InputError(f"{path}: the configuration is empty (see seq2exp_plugin.train.config for its keys)")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level")
    set_entries(raw, overrides or {}, str(path))
    base = path.resolve().parent
    if isinstance(raw.get("data"), dict):  # anything else is reported by the validation below
        raw["data"] = resolve_data_paths(raw["data"], base)
    for name in ("generator_checkpoint", "out_dir"):
        if isinstance(raw.get(name), str) and raw[name]:
            raw[name] = str(_resolve(base, raw[name]))
    try:
        return RunConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: {err}") from None


def resolve_data_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A ``data`` section with its relative file paths taken from ``base`` (a YAML file's
    folder, or the folder of a checkpoint that stores them relative to itself)."""
    data = dict(data)
    for name in _PATH_FIELDS:
        if isinstance(data.get(name), str) and data[name] and not (name == "blacklist" and is_bundled(data[name])):
            data[name] = str(_resolve(base, data[name]))
    if isinstance(data.get("signals"), dict):
        data["signals"] = {k: str(_resolve(base, v)) if isinstance(v, str) and not is_powerlaw(v) else v
                           for k, v in data["signals"].items()}
    return data


def _resolve(base: Path, value: str) -> Path:
    """Resolve a path against ``base``, keeping a ``::`` URI suffix (``x.mcool::/resolutions/5000``)."""
    file, sep, suffix = str(value).partition("::")
    resolved = Path(file).expanduser()
    if not resolved.is_absolute():
        resolved = base / resolved
    return Path(f"{resolved}{sep}{suffix}")
