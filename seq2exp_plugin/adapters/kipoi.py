"""Seq2Exp for Kipoi: the model class and the dataset behind the dataloader.

The Kipoi group lives in ``model_zoo/Seq2Exp`` (entries ``K562``, ``GM12878``, ``Demo``) and its
dataloader in ``dataloaders/``; both are thin and call this module.

Model: :class:`Seq2ExpKipoiModel` (a ``kipoi.model.BaseModel``) loads a checkpoint written by
``seq2exp train`` on the CPU (or a GPU with ``device="auto"``), in eval mode, and predicts under
``torch.inference_mode()``. ``predict_on_batch`` returns ``{"expression": (N,), "mask": (N, L)}``
float32: the predicted ``log10(CAGE + 1)`` and the per-bp mask score (the posterior mean of the
mask, promoter kept and blacklisted positions zeroed; array index ``i`` = genomic position
``start + i``, reversed for "-" genes of a model trained with ``rc_minus_strand``). A
per-cell-type head gives the output of the model argument ``cell_type`` (each entry passes its
own) for every gene.

Weights (:func:`resolve_weights`), first match wins:

1. the environment variable named by the entry (``SEQ2EXP_K562_WEIGHTS``,
   ``SEQ2EXP_GM12878_WEIGHTS``, ``SEQ2EXP_DEMO_WEIGHTS``); a relative path there is taken from
   the shell's working directory (``$PWD``: Kipoi builds the model inside the group's folder);
2. the entry's key in ``$XDG_CONFIG_HOME/seq2exp/weights.yaml`` (default
   ``~/.config/seq2exp/weights.yaml``), e.g. ``K562: /data/runs/K562-learned/checkpoints/best.ckpt``;
   relative paths there are taken from that file's folder;
3. the weights bundled with the entry (only ``Demo`` has some).

Without any, loading fails at once with :class:`MissingWeightsError`, whose message gives the
``seq2exp train`` command and configuration that train the entry.

Dataset: :class:`KipoiWindows` wraps :class:`seq2exp_plugin.data.windows.WindowDataset` (a gene
table) - or, for a TSS BED, a gene table built in memory by
:func:`seq2exp_plugin.data.genes.build_gene_table` - and turns each gene into Kipoi's
``{"inputs", "metadata"}`` item (the measured expression is metadata: see the class).

The patches of kipoi's internals (its writers under numpy 2, ``kipoi test``'s comparison,
strict dataloader arguments), the one-line error hook and the error classes are in
:mod:`seq2exp_plugin.adapters.kipoi_patches`; importing this module applies the patches
(:func:`apply_writer_compat`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import USER_ERRORS, InputError
from .kipoi_patches import (DataLoaderInputError, InputMismatchError, MissingWeightsError, Seq2ExpKipoiError,
                            apply_writer_compat)

__all__ = [
    "Seq2ExpKipoiModel",
    "KipoiWindows",
    "inputs_from_checkpoint",
    "resolve_input_path",
    "resolve_weights",
    "weights_config_path",
    "weights_env_var",
]

#: The dataloader's signal channels, in order (``dataloaders/dataloader.yaml``).
DATALOADER_SIGNALS = ("h3k27ac", "dnase", "hic")


# ---------------------------------------------------------------------------------- weights
def weights_env_var(entry: str) -> str:
    """``SEQ2EXP_<ENTRY>_WEIGHTS`` (upper case, non-alphanumerics as ``_``)."""
    key = "".join(ch if ch.isalnum() else "_" for ch in str(entry)).upper()
    return f"SEQ2EXP_{key}_WEIGHTS"


def weights_config_path() -> Path:
    """``$XDG_CONFIG_HOME/seq2exp/weights.yaml`` (``~/.config/seq2exp/weights.yaml`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "seq2exp" / "weights.yaml"


def _train_hint(entry: str, train_config: str | None, env_var: str) -> str:
    config = weights_config_path()
    lines = [f"No weights for Seq2Exp/{entry}."]
    if train_config:
        cfg = Path(train_config).resolve()
        run = _train_out_dir(cfg)
        lines += [
            "Train them with the paper's recipe (that file lists the data: ENCODE/4DN/FANTOM5 "
            "accessions and where it expects them; override paths with --set data.genome=...):",
            f"    seq2exp train {cfg}",
        ]
        ckpt = f"{run}/checkpoints/best.ckpt" if run else "OUT/checkpoints/best.ckpt"
    else:
        ckpt = "OUT/checkpoints/best.ckpt"
        lines.append("Train them with `seq2exp train CONFIG.yaml`.")
    lines += [
        "Then point the entry at the checkpoint, either with",
        f"    export {env_var}={ckpt}",
        f"or with the line `{entry}: {ckpt}` in {config}.",
    ]
    return "\n".join(lines)


def _train_out_dir(config: Path) -> str | None:
    try:
        import yaml

        with open(config) as fh:
            raw = yaml.safe_load(fh) or {}
        out = raw.get("out_dir")
    except (OSError, ValueError, AttributeError):
        return None
    if not out:
        return None
    out = Path(str(out)).expanduser()
    return str(out if out.is_absolute() else config.parent / out)


def resolve_weights(entry: str, bundled: str | None = None, env_var: str | None = None,
                    train_config: str | None = None) -> Path:
    """The checkpoint of a Kipoi entry: env var, then the weights config file, then ``bundled``.

    Raises :class:`MissingWeightsError` (with the training command) when none is set, or when
    the path that is set does not exist.
    """
    env_var = env_var or weights_env_var(entry)
    value = os.environ.get(env_var, "").strip()
    if value:
        path = Path(value).expanduser()
        # Kipoi builds the model inside the group's folder: a relative path is taken from the
        # shell's working directory ($PWD, which that chdir leaves alone), then from the current one
        tried = [path] if path.is_absolute() else [
            *([Path(os.environ["PWD"]) / path] if os.environ.get("PWD") else []), Path.cwd() / path]
        for candidate in tried:
            if candidate.is_file():
                return candidate.resolve()
        raise MissingWeightsError(
            f"Seq2Exp/{entry}: ${env_var} points to {value}, which is not a file "
            f"(looked for {', '.join(str(c) for c in dict.fromkeys(tried))}; expected a checkpoint "
            f"written by `seq2exp train`, OUT/checkpoints/best.ckpt; an absolute path is safest)")
    config = weights_config_path()
    if config.is_file():
        import yaml

        try:
            with open(config) as fh:
                table = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise MissingWeightsError(f"{config}: not valid YAML ({err})") from None
        if not isinstance(table, Mapping):
            raise MissingWeightsError(f"{config}: expected lines `ENTRY: /path/to/best.ckpt`")
        if table.get(entry):
            path = Path(str(table[entry])).expanduser()
            if not path.is_absolute():
                path = config.parent / path
            if not path.is_file():
                raise MissingWeightsError(
                    f"Seq2Exp/{entry}: {config} gives {table[entry]}, which is not a file")
            return path.resolve()
    if bundled:
        path = Path(bundled).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"Seq2Exp/{entry}: the bundled weights {path.resolve()} are missing "
                f"(rebuild them, e.g. model_zoo/Seq2Exp/Demo/build_demo.py for the Demo entry)")
        return path.resolve()
    raise MissingWeightsError(_train_hint(entry, train_config, env_var))


# ------------------------------------------------------------------------------------ model
def _kipoi_base_model():
    from kipoi.model import BaseModel

    return BaseModel


class Seq2ExpKipoiModel(_kipoi_base_model()):
    """A ``seq2exp train`` checkpoint as a Kipoi model.

    Parameters (the ``args`` of the model YAML; relative paths are taken from the working
    directory Kipoi loads the model in, the model group's folder)
    ----------
    weights : the entry's bundled checkpoint (``None``: the user supplies one, see
        :func:`resolve_weights`).
    entry : the entry's name (``K562``), used in messages and the weights config file.
    weights_env : the environment variable holding a checkpoint path (default
        :func:`weights_env_var`).
    train_config : the entry's ``seq2exp train`` configuration, quoted when weights are missing.
    device : ``"cpu"``, ``"cuda"``, or ``"auto"`` (a GPU if torch sees one).
    max_batch : genes per forward pass (Kipoi batches are split; on the CPU also to
        ``model.batch.CPU_INFERENCE_POSITIONS`` positions per pass: one 200 kb window).
    cell_type : the cell type whose output a per-cell-type head (``model.celltype_head``) gives
        for every gene (the dataloader's signals must be its); by default the run's cell type
        when it was trained on one, needed for a run on several; one the head has no output for
        is refused. The shared head serves any cell type and ignores it. Each entry of the
        group passes its own (``K562``...).
    """

    #: What Kipoi looks for in the entry's dependencies (`kipoi test` warns without it).
    MODEL_PACKAGE = "seq2exp-plugin"

    def __init__(self, weights: str | None = None, entry: str = "Seq2Exp",
                 weights_env: str | None = None, train_config: str | None = None,
                 device: str = "auto", max_batch: int = 8, cell_type: str | None = None) -> None:
        self.entry = str(entry)
        # before the heavy imports: without weights, stop at once
        self.weights = resolve_weights(self.entry, weights, weights_env, train_config)

        import torch

        from ..model.seq2exp import Seq2ExpModel
        from ..train.module import load_module

        module = load_module(str(self.weights))
        if not isinstance(module.net, Seq2ExpModel):
            raise Seq2ExpKipoiError(
                f"Seq2Exp/{self.entry}: {self.weights} holds a {module.run_config.variant!r} model "
                f"({type(module.net).__name__}); the Kipoi entries serve Seq2Exp checkpoints "
                f"(variant 'seq2exp' or 'retrain'), which predict a mask")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.run_config = module.run_config
        self.net = module.net.to(self.device).eval()
        self.window = int(self.run_config.data.window)
        self.signal_names = tuple(self.net.config.signals)
        if self.signal_names != DATALOADER_SIGNALS:
            raise InputMismatchError(
                f"Seq2Exp/{self.entry}: {self.weights} reads the signal tracks "
                f"{list(self.signal_names)} in this order, the Kipoi dataloader gives "
                f"{list(DATALOADER_SIGNALS)}: its weights must come from a run with data.signals "
                "h3k27ac, dnase, hic in that order")
        self.n_features = int(self.net.config.n_features)
        self.max_batch = max(1, int(max_batch))
        self.cell_type_index = self._output_of(cell_type)

    def _output_of(self, cell_type: str | None) -> int:
        """The head output every gene reads: ``cell_type``'s, by default the run's only cell type's."""
        config, trained = self.net.config, self.run_config.data.celltypes()
        cell_type = self.run_config.data.cell_type_or_only(cell_type)
        if cell_type is None:
            if config.n_outputs > 1:
                raise InputMismatchError(
                    f"Seq2Exp/{self.entry}: {self.weights} was trained on cell types {trained} with "
                    f"a per-cell-type head (model.celltype_head), one output each: name the one to "
                    f"read with the model argument cell_type (e.g. cell_type: {config.cell_types[0]} "
                    "in the entry's model.yaml args, or Seq2ExpKipoiModel(..., cell_type=...)); the "
                    "dataloader's signals must be that cell type's")
            return 0
        try:
            return config.celltype_index(cell_type)
        except InputError as err:
            raise InputMismatchError(f"Seq2Exp/{self.entry}: {self.weights}: {err}") from None

    def _check(self, seq: np.ndarray, signals: np.ndarray, features: np.ndarray) -> None:
        where = f"Seq2Exp/{self.entry} ({self.weights})"
        if seq.ndim != 3 or seq.shape[1] != 4:
            raise InputMismatchError(f"{where}: 'seq' must be (N, 4, L) one-hot, got {seq.shape}")
        if seq.shape[2] != self.window:
            raise InputMismatchError(
                f"{where}: trained on {self.window:,} bp windows, the dataloader gave "
                f"{seq.shape[2]:,} bp; pass --dataloader_args '{{\"window\": {self.window}}}'")
        if signals.ndim != 3 or signals.shape[1] != len(self.signal_names) or signals.shape[2] != seq.shape[2]:
            raise InputMismatchError(
                f"{where}: 'signals' must be (N, {len(self.signal_names)}, {seq.shape[2]}) "
                f"({', '.join(self.signal_names)}), got {signals.shape}")
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise InputMismatchError(f"{where}: 'features' must be (N, {self.n_features}), got {features.shape}")

    def predict_on_batch(self, x: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``x``: ``seq (N, 4, L)``, ``signals (N, d, L)``, ``features (N, 9)``, optional
        ``blacklist (N, L)``. Returns ``expression (N,)`` and ``mask (N, L)``, float32."""
        import torch

        from ..model.batch import cpu_rows_per_call, predict_batch

        seq = np.asarray(x["seq"], dtype=np.float32)
        signals = np.asarray(x["signals"], dtype=np.float32)
        features = np.asarray(x["features"], dtype=np.float32)
        blacklist = x.get("blacklist") if hasattr(x, "get") else None
        self._check(seq, signals, features)
        expressions, masks = [], []
        with torch.inference_mode():
            per_call = cpu_rows_per_call(seq.shape[-1], self.device)
            step = self.max_batch if per_call is None else min(self.max_batch, per_call)
            for lo in range(0, seq.shape[0], step):
                hi = lo + step
                batch = {
                    "seq": torch.from_numpy(np.ascontiguousarray(seq[lo:hi])).to(self.device),
                    "signals": torch.from_numpy(np.ascontiguousarray(signals[lo:hi])).to(self.device),
                    "features": torch.from_numpy(np.ascontiguousarray(features[lo:hi])).to(self.device),
                    "cell_type_index": torch.full((min(hi, seq.shape[0]) - lo,), self.cell_type_index,
                                                  device=self.device),
                }
                if blacklist is not None:
                    batch["blacklist"] = torch.from_numpy(np.asarray(blacklist[lo:hi]) != 0).to(self.device)
                expression, mask = predict_batch(self.net, batch)
                expressions.append(expression.float().cpu().numpy())
                masks.append(mask.score.float().cpu().numpy())
        return {"expression": np.concatenate(expressions).astype(np.float32, copy=False),
                "mask": np.concatenate(masks).astype(np.float32, copy=False)}


# ---------------------------------------------------------------------------------- dataset
def _gene_id_list(gene_ids) -> list[str] | None:
    """A list, a comma-separated string, or a file with one id per line."""
    if gene_ids is None:
        return None
    if isinstance(gene_ids, (str, os.PathLike)):
        text = str(gene_ids)
        if os.path.isfile(text):
            with open(text) as fh:
                return [line.strip() for line in fh if line.strip() and not line.startswith("#")]
        return [g.strip() for g in text.split(",") if g.strip()]
    return [str(g) for g in gene_ids]


def _table_from_tss_bed(tss_bed, cell_type: str, dnase, h3k27ac, genome, halflife):
    """An in-memory gene table for a TSS BED: no targets, half-life features from ``halflife``
    (zeros without it), promoter activity from the DNase and H3K27ac bigWigs."""
    import pandas as pd

    from ..data.gene_sources import read_tss_bed
    from ..data.genes import build_gene_table
    from ..data.tracks import is_bigwig_path

    for name, path in (("dnase", dnase), ("h3k27ac", h3k27ac)):
        if path is None or not is_bigwig_path(path):
            raise DataLoaderInputError(
                f"a TSS BED needs the {name} signal as a bigWig (for the promoter-activity "
                f"feature), got {path!r}")
    ids = read_tss_bed(tss_bed)["gene_id"].tolist()
    expression = pd.DataFrame({"gene_id": ids, cell_type: np.full(len(ids), np.nan)})
    import warnings

    with warnings.catch_warnings():
        if halflife is None:
            warnings.filterwarnings("ignore", message="no half-life features")
        return build_gene_table(tss=tss_bed, expression=expression,
                                tracks={cell_type: {"dnase": dnase, "h3k27ac": h3k27ac}},
                                halflife=halflife, genome=genome)


def inputs_from_checkpoint(weights: str | os.PathLike | None, rc_minus_strand: bool | None = None,
                           blacklist: str | None = None, hic_options: Mapping | None = None
                           ) -> tuple[bool, str | None, dict | None]:
    """``(rc_minus_strand, blacklist, hic_options)`` for the dataloader: the ones the checkpoint
    ``weights`` was trained with (its stored run configuration), so that the windows are read as
    in training; an argument given (not None) must agree with it, else
    :class:`DataLoaderInputError` names both. Without ``weights``: the arguments (False, none,
    the reader's defaults where None)."""
    if weights is None:
        return bool(rc_minus_strand), blacklist, None if hic_options is None else dict(hic_options)
    from ..train.module import read_checkpoint

    data = read_checkpoint(str(weights))["hyper_parameters"]["train_params"]["seq2exp"]["data"]
    trained = f"{weights} was trained with"
    rc = bool(data.get("rc_minus_strand", False))
    if rc_minus_strand is not None and bool(rc_minus_strand) != rc:
        raise DataLoaderInputError(f"rc_minus_strand={bool(rc_minus_strand)}: {trained} "
                                   f"rc_minus_strand={rc}; leave the argument out")
    hic = dict(data.get("hic") or {})
    if hic_options is not None and dict(hic_options) != hic:
        raise DataLoaderInputError(f"hic_options {dict(hic_options)}: {trained} the Hi-C options "
                                   f"{hic} (resolution, normalisation, ...); leave the argument out")
    return rc, _trained_blacklist(data.get("blacklist"), blacklist, Path(weights).parent, trained), hic


def _trained_blacklist(stored: str | None, given: str | None, base: Path, trained: str) -> str | None:
    """The checkpoint's blacklist (``stored``; relative paths from the checkpoint's folder), or
    ``given`` where it is the same file's contents or the stored one is not on this machine."""
    import filecmp

    if stored is None:
        if given is not None:
            raise DataLoaderInputError(f"blacklist {given}: {trained} no blacklist; leave the "
                                       "argument out")
        return None
    from ..data.blacklist import BUNDLED, is_bundled

    path = BUNDLED[stored] if is_bundled(stored) else Path(stored).expanduser()
    path = path if path.is_absolute() else base / path
    given = str(BUNDLED[given]) if is_bundled(given) else given
    if given is None:
        if not path.is_file():
            raise DataLoaderInputError(f"{trained} the blacklist {stored}, which is not here; "
                                       f"pass blacklist=<that BED> (the model never reads "
                                       "blacklisted bases)")
        return str(path)
    if path.is_file() and os.path.isfile(given) and not filecmp.cmp(path, given, shallow=False):
        raise DataLoaderInputError(f"blacklist {given}: {trained} another blacklist, {path}; "
                                   "leave the argument out")
    return given


class KipoiWindows:
    """The genes of a gene table (or a TSS BED) as Kipoi items.

    ``item(i)`` = ``{"inputs": {"seq" (4, L), "signals" (d, L), "features" (9,), "blacklist"
    (L,) bool}, "metadata": {"ranges": GenomicRanges(chr, start, end, id=gene_id, strand),
    "tss": int, "tss_index": int, "measured_expression": float}}``; ``ranges`` is the window
    (0-based half-open; ``start`` can be negative near a chromosome start, where the window is
    padded with N); ``measured_expression`` is the gene table's log10(CAGE + 1) (NaN if unknown,
    always NaN for a TSS BED).

    The measurement is metadata, not ``targets``: Kipoi checks that a dataloader's targets cover
    every model output, and the mask has no measured counterpart (every run would print a schema
    mismatch); as metadata it is also written next to the predictions by ``kipoi predict -m``
    (``targets`` only with ``--keep_inputs``, i.e. with the full windows).
    """

    def __init__(self, fasta_file, signals: Mapping[str, Any], cell_type: str, window: int,
                 genes=None, tss_bed=None, gene_ids=None, blacklist=None, halflife=None,
                 rc_minus_strand: bool = False, allow_missing_chroms: bool = False,
                 hic_options: Mapping | None = None) -> None:
        from ..data.windows import WindowDataset

        missing = [k for k, v in {"fasta_file": fasta_file, **signals}.items() if v is None]
        if missing:
            raise DataLoaderInputError(
                f"dataloader argument(s) missing: {', '.join(missing)} (e.g. --dataloader_args "
                f"'{{\"fasta_file\": \"hg38.fa\", \"h3k27ac\": \"k27ac.bw\", ...}}')")
        if (genes is None) == (tss_bed is None):
            raise DataLoaderInputError("give exactly one of 'genes' (a gene-table .h5ad) and 'tss_bed'")
        try:
            table = genes
            if tss_bed is not None:
                table = _table_from_tss_bed(tss_bed, cell_type, signals.get("dnase"),
                                            signals.get("h3k27ac"), fasta_file, halflife)
            self.dataset = WindowDataset(
                table, fasta_file, dict(signals), cell_type, window=int(window),
                gene_ids=_gene_id_list(gene_ids), rc_minus_strand=bool(rc_minus_strand),
                blacklist=blacklist, allow_missing_chroms=bool(allow_missing_chroms),
                hic_options=dict(hic_options) if hic_options else None)
        except USER_ERRORS as err:
            raise DataLoaderInputError(str(err)) from err

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, i: int) -> dict[str, Any]:
        from kipoi.metadata import GenomicRanges

        g = self.dataset.get_numpy(int(i))
        return {
            "inputs": {"seq": g["seq"], "signals": g["signals"], "features": g["features"],
                       "blacklist": g["blacklist"]},
            "metadata": {
                "ranges": GenomicRanges(chr=g["chrom"], start=g["start"], end=g["end"],
                                        id=g["gene_id"], strand=g["strand"]),
                "tss": int(g["tss"]),
                "tss_index": int(g["tss_index"]),
                "measured_expression": float(g["target"]),
            },
        }


def resolve_input_path(path, source_dir: str | None):
    """A dataloader path argument, made absolute (files open lazily, maybe after Kipoi has left
    the folder it built the dataloader in): relative to the working directory when it exists
    there, else relative to ``source_dir`` (the model group's folder, where an entry's bundled
    files live) when it exists there; unchanged (``~`` expanded) when found nowhere, so errors
    name it as given. ``file::group`` URIs keep their suffix."""
    if path is None or not isinstance(path, (str, os.PathLike)):
        return path
    file, sep, suffix = str(path).partition("::")
    expanded = os.path.expanduser(file)
    for candidate in (expanded, os.path.join(source_dir, expanded) if source_dir else None):
        if candidate is not None and os.path.exists(candidate):
            return os.path.abspath(candidate) + sep + suffix
    return expanded + sep + suffix


apply_writer_compat()
