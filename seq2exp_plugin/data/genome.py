"""Reference genome access: one-hot windows from a (bgzip) FASTA, chromosome-name aliases.

``Genome(path)`` wraps pyfaidx. Coordinates are 0-based half-open. ``one_hot`` returns
``float32 (4, end - start)`` with rows A, C, G, T; N and any other letter give an all-zero
column; soft-masked (lower-case) bases count as upper case; positions before 0 or past the
chromosome end are padded with N (all zeros).

Index files: pyfaidx wants ``<fasta>.fai`` (and ``<fasta>.gzi`` for bgzip) next to the FASTA.
An up-to-date index already sitting there is used as is; otherwise the index is built in a
per-user cache directory (``$SEQ2EXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/seq2exp``, else
``~/.cache/seq2exp``; ``index_dir=`` overrides), so read-only data directories work and the
user's data folders are never written to.

Chromosome aliases (used by every reader in ``seq2exp_plugin.data``): ``chr1 <-> 1``,
``chrM <-> MT <-> M <-> chrMT``. A name is first looked up exactly, then through its aliases.

File handles are opened lazily and reopened after ``fork``/unpickling, so a ``Genome`` can be
handed to ``torch.utils.data.DataLoader`` workers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import InputError, MissingInputError
from .handle import PerProcessHandle

__all__ = [
    "ChromNames",
    "Genome",
    "chrom_aliases",
    "resolve_chrom",
    "normalize_chrom",
    "one_hot_encode",
    "reverse_complement_one_hot",
    "reverse_complement",
    "cache_dir",
]

_MITO = ("chrM", "MT", "M", "chrMT")


def chrom_aliases(name: str) -> list[str]:
    """Candidate spellings of chromosome ``name``, the name itself first."""
    name = str(name)
    out = [name]
    if name in _MITO:
        out += [m for m in _MITO if m != name]
        return out
    if name.startswith("chr"):
        out.append(name[3:])
    else:
        out.append("chr" + name)
    return out


def normalize_chrom(name: str) -> str:
    """A canonical key for comparing chromosome names across conventions ("chr2" -> "2", chrM -> "MT")."""
    name = str(name)
    if name in _MITO:
        return "MT"
    return name[3:] if name.startswith("chr") else name


def resolve_chrom(name: str, available: Iterable[str] | Mapping[str, object], source: str = "") -> str:
    """The spelling of ``name`` used in ``available`` (exact first, then aliases).

    Raises ``KeyError`` naming the chromosome and ``source`` (a file), listing a few available names.
    """
    avail = available if isinstance(available, (set, frozenset, dict)) else set(available)
    for cand in chrom_aliases(name):
        if cand in avail:
            return cand
    raise MissingInputError(_missing_chrom_message(name, avail, source))


class ChromNames:
    """Mixin for readers with ``chrom_sizes`` and ``path``: chromosome names as the file spells
    them (``chr1``/``1``, ``chrM``/``MT``). ``allow_missing_chroms``: :meth:`resolve` gives
    ``None`` for a chromosome the file lacks instead of a ``KeyError`` naming the file."""

    allow_missing_chroms = False

    def resolve(self, chrom: str) -> str | None:
        try:
            return resolve_chrom(chrom, self.chrom_sizes, str(self.path))
        except KeyError:
            if self.allow_missing_chroms:
                return None
            raise

    def has_chrom(self, chrom: str) -> bool:
        try:
            resolve_chrom(chrom, self.chrom_sizes)
            return True
        except KeyError:
            return False


def _missing_chrom_message(name: str, available, source: str) -> str:
    names = list(available)
    few = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    where = f" in {source}" if source else ""
    return f"chromosome {name!r} not found{where} (also tried {chrom_aliases(name)[1:]}); available: {few}"


def cache_dir() -> Path:
    """Per-user cache directory for index files the package builds."""
    env = os.environ.get("SEQ2EXP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "seq2exp"


# byte -> code (0..3 for ACGT either case, 4 otherwise)
_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i
    _CODE[_b + 32] = _i
# code -> one-hot column (N -> zeros)
_EYE = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((4, 1), np.float32)], axis=1)

_COMP = bytes.maketrans(b"ACGTNacgtnRYKMBVDHSWrykmbvdhsw", b"TGCANtgcanYRMKVBHDSWyrmkvbhdsw")


def one_hot_encode(seq: str | bytes) -> np.ndarray:
    """``float32 (4, len(seq))`` one-hot (A, C, G, T rows; anything else all-zero; case-insensitive)."""
    if isinstance(seq, str):
        seq = seq.encode("ascii", errors="replace")
    codes = _CODE[np.frombuffer(seq, dtype=np.uint8)]
    return _EYE[:, codes]


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string (IUPAC codes complemented, case kept)."""
    return seq.encode("ascii").translate(_COMP)[::-1].decode("ascii")


def reverse_complement_one_hot(x: np.ndarray) -> np.ndarray:
    """Reverse complement of a ``(4, L)`` (or ``(..., 4, L)``) A,C,G,T one-hot: flip rows and positions."""
    return np.ascontiguousarray(x[..., ::-1, ::-1])


def _is_gzip(path: Path) -> tuple[bool, bool]:
    """(gzip?, bgzf?) from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return False, False
    # BGZF: FLG.FEXTRA set and an extra subfield 'BC'
    bgzf = len(head) >= 14 and (head[3] & 4) and head[12:14] == b"BC"
    return True, bool(bgzf)


class Genome(ChromNames, PerProcessHandle):
    """A FASTA genome (plain or bgzip) read through pyfaidx.

    Parameters
    ----------
    path : FASTA file (``.fa``, ``.fa.gz`` compressed with bgzip).
    index_dir : where to build missing ``.fai``/``.gzi`` files (default: the per-user cache).
    """

    def __init__(self, path: str | os.PathLike, index_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"genome FASTA not found: {self.path}")
        is_gz, is_bgzf = _is_gzip(self.path)
        if is_gz and not is_bgzf:
            raise InputError(
                f"{self.path} is gzip-compressed but not with bgzip; random access needs bgzip "
                f"(zcat {self.path.name} | bgzip > new.fa.gz) or an uncompressed FASTA"
            )
        self._bgzf = is_bgzf
        self._index_dir = Path(index_dir) if index_dir is not None else None
        self._fai, self._gzi = self._index_paths()
        fa = self._handle()  # builds/reads the index now, so errors surface at construction
        self.chrom_sizes: dict[str, int] = {name: len(fa[name]) for name in fa.keys()}

    # -- index location -------------------------------------------------------------------
    def _index_paths(self) -> tuple[str, str | None]:
        side_fai = Path(str(self.path) + ".fai")
        side_gzi = Path(str(self.path) + ".gzi")
        mtime = self.path.stat().st_mtime

        def fresh(p: Path) -> bool:
            return p.is_file() and p.stat().st_mtime >= mtime

        if self._index_dir is None and fresh(side_fai) and (not self._bgzf or fresh(side_gzi)):
            return str(side_fai), (str(side_gzi) if self._bgzf else None)
        if self._index_dir is not None:
            d = self._index_dir
        else:
            key = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
            d = cache_dir() / "fasta_index" / key
        d.mkdir(parents=True, exist_ok=True)
        fai = d / (self.path.name + ".fai")
        gzi = d / (self.path.name + ".gzi")
        if not (fresh(fai) and (not self._bgzf or fresh(gzi))):
            self._build_index_atomically(d, fai, gzi)
        return str(fai), (str(gzi) if self._bgzf else None)

    def _build_index_atomically(self, d: Path, fai: Path, gzi: Path) -> None:
        """Build .fai/.gzi under temporary names, then rename (safe with concurrent processes)."""
        import tempfile

        import pyfaidx

        with tempfile.TemporaryDirectory(dir=d, prefix=".build-") as tmp:
            tfai = Path(tmp) / fai.name
            tgzi = Path(tmp) / gzi.name
            kwargs = {"indexname": str(tfai)}
            if self._bgzf:
                kwargs["gzi_indexname"] = str(tgzi)
            try:
                pyfaidx.Faidx(str(self.path), **kwargs).close()
            except Exception as exc:  # malformed FASTA and the like: name the file
                raise InputError(f"cannot index FASTA {self.path}: {exc}") from exc
            if self._bgzf:
                os.replace(tgzi, gzi)
            os.replace(tfai, fai)

    # -- the FASTA handle, one per process (see .handle) --------------------------------------
    def _open(self):
        import pyfaidx

        kwargs = {"indexname": self._fai, "sequence_always_upper": False, "as_raw": True,
                  "rebuild": True}
        if self._gzi is not None:
            kwargs["gzi_indexname"] = self._gzi
        return pyfaidx.Fasta(str(self.path), **kwargs)

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self.chrom_sizes)} chromosomes)"

    # -- queries (resolve, has_chrom: ChromNames) ---------------------------------------------
    def chrom_length(self, chrom: str) -> int:
        return self.chrom_sizes[self.resolve(chrom)]

    def sequence(self, chrom: str, start: int, end: int) -> str:
        """Sequence of ``[start, end)`` as stored (case kept), N-padded beyond the chromosome."""
        name = self.resolve(chrom)
        start, end = int(start), int(end)
        if end < start:
            raise ValueError(f"end < start for {chrom}:{start}-{end}")
        n = self.chrom_sizes[name]
        s, e = max(start, 0), min(end, n)
        core = str(self._handle()[name][s:e]) if e > s else ""
        left = min(max(0, -start), end - start)
        right = (end - start) - left - len(core)
        return "N" * left + core + "N" * right

    def one_hot(self, chrom: str, start: int, end: int) -> np.ndarray:
        """``float32 (4, end - start)`` one-hot of ``[start, end)`` (A, C, G, T rows; N/off-chromosome = 0)."""
        return one_hot_encode(self.sequence(chrom, start, end))
