"""TSS-centred windows: DNA one-hot, signal tracks and the blacklist mask for each gene.

Window of a gene with 0-based TSS ``t`` and length ``L``: ``[t - L // 2, t - L // 2 + L)``
(0-based half-open), so the TSS sits at index ``L // 2``. Positions off the chromosome are N
(all-zero one-hot), zero signal and not blacklisted.

Reverse complement (``rc_minus_strand=True``): for "-" genes the one-hot is reverse-complemented
and signals and blacklist are flipped along the length; genomic ``start``/``end`` stay the same,
array index ``i`` then holds genomic position ``end - 1 - i``, and the TSS sits at index
``L - 1 - L // 2`` (``L // 2 - 1`` for even L, e.g. 99,999 for L = 200,000). Each item reports it
as ``tss_index``.

Two layers:
- :class:`WindowExtractor`: framework-free, numpy in/out, one locus at a time (reused by the
  Kipoi dataloader).
- :class:`WindowDataset`: ``torch.utils.data.Dataset`` over the genes of a gene table for one
  cell type; items are dicts (``seq`` float32 (4, L), ``signals`` float32 (n_signals, L),
  ``features`` float32 (9,), ``target`` float32 scalar, ``blacklist`` bool (L,), ``gene_id``,
  ``chrom``, ``start``, ``end``, ``strand``, ``tss``, ``tss_index``). The default collate works.

Signals: an ordered mapping ``name -> path`` (order = channel order; the model's default names
are :data:`DEFAULT_SIGNALS`). Paths ending in ``.bw``/``.bigwig`` are :class:`BigWigTrack`;
``.cool``/``.mcool[::...]``/``.hic``/``.bedpe``/``.bedgraph``/``.bg`` are :class:`HiCContacts`
(contact to this gene's TSS, options from ``hic_options``). Reader objects can be passed instead
of paths (anything with ``values(chrom, start, end)`` or ``contact_to_tss(chrom, tss, start, end)``).

Everything is validated at construction (files, cell type, chromosomes of the selected genes in
the genome and every signal, TSS inside the chromosome); file handles open lazily, so
``DataLoader(num_workers=...)`` works.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError, MissingInputError
from .blacklist import Blacklist, IntervalMask
from .genes import gene_features, read_gene_table, validate_gene_table
from .genome import Genome, resolve_chrom, reverse_complement_one_hot
from .hic import HiCContacts, is_hic_path, worker_start_method
from .tracks import BigWigTrack, is_bigwig_path

try:  # the Dataset base class; the extractor itself does not need torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object

__all__ = ["DEFAULT_SIGNALS", "DEFAULT_WINDOW", "WindowExtractor", "WindowDataset", "WindowRecord", "loader_workers",
           "open_signal", "window_bounds", "window_to_genomic"]

DEFAULT_SIGNALS = ("h3k27ac", "dnase", "hic")
DEFAULT_WINDOW = 200_000


def loader_workers(num_workers: int) -> dict:
    """``DataLoader`` arguments for ``num_workers`` window-reading processes: started as
    :func:`~seq2exp_plugin.data.hic.worker_start_method` says, and deaf to the Ctrl-C and SIGTERM
    that a terminal or a job scheduler (``scancel``) sends to every process of a job, so that the
    main process stops them itself rather than finding them killed mid-batch (and printing so)."""
    if num_workers <= 0:
        return {"num_workers": 0}
    return {"num_workers": num_workers, "multiprocessing_context": worker_start_method(num_workers),
            "worker_init_fn": _leave_signals_to_the_main_process}


def _leave_signals_to_the_main_process(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def window_bounds(tss: int, window: int) -> tuple[int, int]:
    """``(start, end)`` of the window of length ``window`` centred on ``tss`` (TSS at index window // 2)."""
    start = int(tss) - int(window) // 2
    return start, start + int(window)


@dataclass(frozen=True)
class WindowRecord:
    """Where a gene's window lies. ``reverse``: the arrays are reverse-complemented (index ``i``
    is genomic position ``end - 1 - i``). ``tss``: 0-based TSS (default: the window centre)."""

    gene_id: str
    chrom: str
    start: int
    end: int
    strand: str = "+"
    reverse: bool = False
    tss: int | None = None

    def __post_init__(self):
        if int(self.end) <= int(self.start):
            raise InputError(f"gene {self.gene_id!r}: empty window {self.chrom}:{self.start}-{self.end}")
        if self.strand not in ("+", "-", "."):
            raise InputError(f"gene {self.gene_id!r}: strand must be '+', '-' or '.', got {self.strand!r}")

    @classmethod
    def from_item(cls, item: Mapping, rc_minus_strand: bool = False) -> "WindowRecord":
        """From a window-dataset item (``gene_id, chrom, start, end, strand``, optional ``tss``);
        ``rc_minus_strand``: the dataset reverse-complemented "-" genes (an item's own
        ``reverse`` key, if present, wins)."""
        strand = str(item.get("strand", "+"))
        reverse = bool(item["reverse"]) if "reverse" in item else bool(rc_minus_strand) and strand == "-"
        tss = item.get("tss")
        return cls(str(item["gene_id"]), str(item["chrom"]), int(item["start"]), int(item["end"]), strand,
                   reverse, None if tss is None else int(tss))

    @property
    def length(self) -> int:
        return int(self.end) - int(self.start)

    @property
    def tss_position(self) -> int:
        return int(self.tss) if self.tss is not None else int(self.start) + self.length // 2

    def genomic(self, values: np.ndarray) -> np.ndarray:
        """``values`` (window order, last axis = positions) in genomic order."""
        values = np.asarray(values)
        if values.shape[-1] != self.length:
            raise ValueError(f"gene {self.gene_id!r}: {values.shape[-1]} scores for a window of "
                             f"{self.length} bp ({self.chrom}:{self.start}-{self.end})")
        return values[..., ::-1] if self.reverse else values

    def to_genomic(self, s: int, e: int) -> tuple[int, int]:
        """Window interval ``[s, e)`` as a genomic interval."""
        return window_to_genomic(s, e, self.start, self.end, self.reverse)


def window_to_genomic(s: int, e: int, start: int, end: int, reverse: bool = False) -> tuple[int, int]:
    """Window-coordinate interval ``[s, e)`` of the window ``[start, end)`` in genomic coordinates
    (``reverse``: index ``i`` is genomic ``end - 1 - i``, so ``[s, e)`` -> ``[end - e, end - s)``)."""
    s, e = int(s), int(e)
    if not 0 <= s <= e <= int(end) - int(start):
        raise ValueError(f"interval [{s}, {e}) is not inside a window of {int(end) - int(start)} bp")
    if reverse:
        return int(end) - e, int(end) - s
    return int(start) + s, int(start) + e


def open_signal(path, allow_missing_chroms: bool = False, hic_options: Mapping | None = None):
    """A reader for one signal: :class:`BigWigTrack` for bigWigs, :class:`HiCContacts` for Hi-C."""
    if hasattr(path, "values") or hasattr(path, "contact_to_tss"):
        return path
    if is_bigwig_path(path):
        return BigWigTrack(path, allow_missing_chroms=allow_missing_chroms)
    if is_hic_path(path):
        opts = dict(hic_options or {})
        opts.setdefault("allow_missing_chroms", allow_missing_chroms)
        return HiCContacts(path, **opts)
    raise InputError(
        f"signal file {path}: unknown type (expected a bigWig .bw/.bigwig or a Hi-C "
        f".cool/.mcool/.hic/.bedpe/.bedgraph file)"
    )


def _signal_has_chrom(reader, chrom) -> bool:
    if hasattr(reader, "has_chrom"):
        return reader.has_chrom(chrom) or bool(getattr(reader, "allow_missing_chroms", False))
    return True


class WindowExtractor:
    """Windows of DNA, signals and blacklist around one TSS (numpy; no torch needed).

    Parameters
    ----------
    genome : FASTA path or :class:`Genome`.
    signals : ordered mapping name -> path or reader (channel order).
    window : length ``L`` in bp.
    rc_minus_strand : reverse-complement "-" genes (see the module docstring).
    blacklist : BED path or :class:`Blacklist` (``None``: nothing excluded).
    allow_missing_chroms : signals give zeros on chromosomes their files lack.
    hic_options : keyword arguments for :class:`HiCContacts`.
    """

    def __init__(
        self,
        genome,
        signals: Mapping[str, object] | None,
        window: int = DEFAULT_WINDOW,
        rc_minus_strand: bool = False,
        blacklist=None,
        allow_missing_chroms: bool = False,
        hic_options: Mapping | None = None,
        peaks=None,
    ):
        if int(window) <= 0:
            raise InputError(f"window must be positive, got {window}")
        self.window = int(window)
        self.rc_minus_strand = bool(rc_minus_strand)
        self.genome = genome if isinstance(genome, Genome) else Genome(genome)
        signals = {} if signals is None else signals
        if not isinstance(signals, Mapping):
            raise InputError("signals must be an ordered mapping name -> path")
        self.signal_names = tuple(str(k) for k in signals)
        self.signals = [open_signal(p, allow_missing_chroms, hic_options) for p in signals.values()]
        if blacklist is None or isinstance(blacklist, Blacklist):
            self.blacklist = blacklist
        else:
            self.blacklist = Blacklist(blacklist)
        if peaks is None or isinstance(peaks, IntervalMask):
            self.peaks = peaks
        else:
            self.peaks = IntervalMask(peaks, what="peak file")

    def bounds(self, tss: int) -> tuple[int, int]:
        return window_bounds(tss, self.window)

    def tss_index(self, strand: str) -> int:
        """Index of the TSS in the returned arrays."""
        L = self.window
        if self.rc_minus_strand and strand == "-":
            return L - 1 - L // 2
        return L // 2

    def check_loci(self, chroms: Sequence[str], tss: Sequence[int], gene_ids: Sequence[str] | None = None) -> None:
        """Raise one clear error for the first locus whose chromosome or TSS is unusable."""
        chroms = np.asarray([str(c) for c in chroms], dtype=object)
        tss = np.asarray(tss, dtype=np.int64)
        ids = np.asarray(gene_ids if gene_ids is not None else [f"#{i}" for i in range(len(chroms))], dtype=object)
        for c in dict.fromkeys(chroms.tolist()):
            sel = chroms == c
            first = ids[sel][0]
            n = int(sel.sum())
            try:
                length = self.genome.chrom_length(c)
            except KeyError as exc:
                raise MissingInputError(f"gene {first!r} ({n} genes on {c!r}): {exc.args[0]}") from None
            for name, reader in zip(self.signal_names, self.signals):
                if not _signal_has_chrom(reader, c):
                    src = getattr(reader, "path", name)
                    raise MissingInputError(
                        f"gene {first!r} ({n} genes on {c!r}): chromosome {c!r} not found in signal "
                        f"{name!r} ({src}); pass allow_missing_chroms=True to use zeros"
                    )
            bad = sel & ((tss < 0) | (tss >= length))
            if bad.any():
                g = ids[bad][0]
                raise InputError(
                    f"gene {g!r}: TSS {int(tss[bad][0])} is outside chromosome {c!r} "
                    f"(length {length} in {self.genome.path})"
                )
            self._check_signal_lengths(c, sel, tss, ids)
        longest = max(self.genome.chrom_sizes.values(), default=0)
        if self.window > longest:  # windows past a chromosome end are padded, but none can fit anywhere
            raise InputError(f"window {self.window:,} bp is longer than every chromosome of {self.genome.path} "
                             f"(the longest: {longest:,} bp); choose a shorter window")

    def _check_signal_lengths(self, chrom: str, sel: np.ndarray, tss: np.ndarray, ids: np.ndarray) -> None:
        """A TSS past the end of a signal's chromosome means the signal is of another assembly
        (its windows would silently read zeros)."""
        for name, reader in zip(self.signal_names, self.signals):
            sizes = getattr(reader, "chrom_sizes", None) or {}
            try:
                spelled = resolve_chrom(chrom, sizes)
            except KeyError:  # absent: zeros were allowed (checked above)
                continue
            bad = sel & (tss >= sizes[spelled])
            if bad.any():
                src = getattr(reader, "path", name)
                raise InputError(
                    f"gene {ids[bad][0]!r}: TSS {int(tss[bad][0])} is beyond the end of {chrom!r} in signal "
                    f"{name!r} ({src}: {sizes[spelled]:,} bp); is it of another genome assembly?"
                )

    def __call__(self, chrom: str, tss: int, strand: str = "+") -> dict:
        """``seq`` float32 (4, L), ``signals`` float32 (n_signals, L), ``blacklist`` bool (L,),
        ``start``, ``end``, ``tss_index``."""
        start, end = self.bounds(tss)
        L = self.window
        seq = self.genome.one_hot(chrom, start, end)
        sig = np.zeros((len(self.signals), L), dtype=np.float32)
        for k, reader in enumerate(self.signals):
            if hasattr(reader, "contact_to_tss"):
                sig[k] = reader.contact_to_tss(chrom, tss, start, end)
            else:
                sig[k] = reader.values(chrom, start, end)
        bl = self.blacklist.mask(chrom, start, end) if self.blacklist is not None else np.zeros(L, dtype=bool)
        out = {"seq": seq, "signals": sig, "blacklist": bl}
        if self.peaks is not None:
            out["mask"] = self.peaks.mask(chrom, start, end).astype(np.float32)
        if self.rc_minus_strand and strand == "-":
            out = {k: reverse_complement_one_hot(v) if k == "seq" else np.ascontiguousarray(v[..., ::-1])
                   for k, v in out.items()}
        return {**out, "start": start, "end": end, "tss_index": self.tss_index(strand)}


class WindowDataset(_TorchDataset):
    """TSS-centred windows of the genes of a gene table, for one cell type.

    Parameters
    ----------
    genes : gene-table ``.h5ad`` path or AnnData (see :mod:`seq2exp_plugin.data.genes`).
    genome : FASTA path or :class:`Genome`.
    signals : ordered mapping name -> path/reader (channel order), e.g.
        ``{"h3k27ac": "k27.bw", "dnase": "dnase.bw", "hic": "k562.cool"}``.
    cell_type : a ``var`` name of the table (target column and promoter-activity feature).
    window : ``L`` in bp (default 200,000).
    split : keep genes whose ``obs["split"]`` is this (a string or a list of strings).
    gene_ids : keep these genes, in this order.
    rc_minus_strand, blacklist, allow_missing_chroms, hic_options : see :class:`WindowExtractor`.
    require_target : drop genes whose target is NaN (for training).
    cell_type_index : what every item's ``cell_type_index`` is: the output of a per-cell-type
        head that reads this cell type (``Seq2ExpConfig.celltype_index``; 0 for the shared head).
    """

    def __init__(
        self,
        genes,
        genome,
        signals: Mapping[str, object] | None,
        cell_type: str,
        window: int = DEFAULT_WINDOW,
        split: str | Sequence[str] | None = None,
        gene_ids: Sequence[str] | None = None,
        rc_minus_strand: bool = False,
        blacklist=None,
        allow_missing_chroms: bool = False,
        hic_options: Mapping | None = None,
        require_target: bool = False,
        peaks=None,
        cell_type_index: int = 0,
    ):
        if isinstance(genes, (str, os.PathLike)):
            adata = read_gene_table(genes)
            source = str(genes)
        else:
            adata = genes
            source = "gene table"
            validate_gene_table(adata, source)
        if cell_type not in adata.var_names:
            raise MissingInputError(f"cell type {cell_type!r} not in {source}; available: {list(adata.var_names)}")
        self.cell_type = str(cell_type)
        self.cell_type_index = int(cell_type_index)
        obs = adata.obs
        keep = np.ones(adata.n_obs, dtype=bool)
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            bad = [s for s in wanted if s not in ("train", "valid", "test")]
            if bad:
                raise InputError(f"split must be 'train', 'valid' or 'test', got {bad[0]!r}")
            keep &= obs["split"].astype(str).isin(wanted).to_numpy()
        all_ids = obs.index.astype(str)
        if gene_ids is not None:
            gene_ids = [str(g) for g in gene_ids]
            pos = {g: i for i, g in enumerate(all_ids)}
            missing = [g for g in gene_ids if g not in pos]
            twice = sorted(g for g, n in Counter(gene_ids).items() if n > 1)
            if twice:
                raise InputError(f"gene {twice[0]!r} is requested more than once ({len(twice)} duplicated "
                                 f"gene ids); give each gene once")
            if missing:
                raise MissingInputError(f"gene {missing[0]!r} not in {source} ({len(missing)} requested genes missing)")
            order = np.asarray([pos[g] for g in gene_ids], dtype=np.int64)
            order = order[keep[order]]
        else:
            order = np.flatnonzero(keep)
        col = int(np.flatnonzero(adata.var_names == cell_type)[0])
        X = np.asarray(adata.X[:, col] if not hasattr(adata.X, "toarray") else adata.X[:, col].toarray()).reshape(-1)
        if require_target:
            order = order[np.isfinite(X[order])]
        if len(order) == 0:
            raise InputError(f"no genes selected from {source} (split={split!r}, gene_ids given: {gene_ids is not None})")
        self.gene_ids = np.asarray(all_ids[order], dtype=object)
        self.chroms = obs["chrom"].astype(str).to_numpy(dtype=object)[order]
        self.tss = obs["tss"].to_numpy(dtype=np.int64)[order]
        self.strands = obs["strand"].astype(str).to_numpy(dtype=object)[order]
        self.features = gene_features(adata, cell_type)[order]
        self.targets = X[order].astype(np.float32)
        self.window = int(window)
        self.extractor = WindowExtractor(
            genome, signals, window=window, rc_minus_strand=rc_minus_strand, blacklist=blacklist,
            allow_missing_chroms=allow_missing_chroms, hic_options=hic_options, peaks=peaks,
        )
        self.signal_names = self.extractor.signal_names
        self.extractor.check_loci(self.chroms, self.tss, self.gene_ids)

    def __len__(self) -> int:
        return len(self.gene_ids)

    def get_numpy(self, i: int) -> dict:
        """Item ``i`` with numpy arrays (what the Kipoi dataloader returns)."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} genes")
        chrom, tss, strand = self.chroms[i], int(self.tss[i]), self.strands[i]
        w = self.extractor(chrom, tss, strand)
        return {
            "seq": w["seq"],
            "signals": w["signals"],
            "features": self.features[i],
            "target": np.float32(self.targets[i]),
            "blacklist": w["blacklist"],
            "gene_id": str(self.gene_ids[i]),
            "chrom": str(chrom),
            "start": int(w["start"]),
            "end": int(w["end"]),
            "strand": str(strand),
            "tss": tss,
            "tss_index": int(w["tss_index"]),
            "cell_type_index": self.cell_type_index,
            **({"mask": w["mask"]} if "mask" in w else {}),
        }

    @property
    def rc_minus_strand(self) -> bool:
        """Whether minus-strand windows come reverse-complemented (array index i = end - 1 - i)."""
        return self.extractor.rc_minus_strand

    def __getitem__(self, i: int) -> dict:
        import torch

        item = self.get_numpy(int(i))
        for k in ("seq", "signals", "features", "blacklist", "mask"):
            if k in item:
                item[k] = torch.from_numpy(np.ascontiguousarray(item[k]))
        item["target"] = torch.tensor(item["target"], dtype=torch.float32)
        return item
