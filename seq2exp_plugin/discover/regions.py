"""From per-gene mask scores to genome-browser files: a bigWig of the soft mask and a BED of elements.

(Over 500 lines on purpose: calling elements and the two streaming writers share one coordinate
convention, the window-to-genome mapping described here.)

A gene's scores are an array over its window (what the generator returns, one value per bp).
:class:`WindowRecord` says where that window lies: ``chrom``, ``start``, ``end`` (0-based
half-open), ``strand`` and ``reverse`` - whether the window was reverse-complemented (the
dataset's ``rc_minus_strand`` for a "-" gene). Forward: index ``i`` is genomic position
``start + i``. Reversed: index ``i`` is genomic position ``end - 1 - i``, so a window interval
``[s, e)`` is the genomic interval ``[end - e, end - s)``.

Two outputs per cell type:

- **bigWig** (:class:`MaskWriter`, :func:`write_mask_bigwig`): the soft mask per bp in genomic
  coordinates. Windows of nearby genes overlap; where they do, the bigWig holds the **maximum**
  of their scores (a position is shown as kept if any gene's mask keeps it). Positions no window
  covers have no data; positions off the chromosome are dropped. Chromosome sizes come from a
  ``.fai``/``.sizes`` table or a FASTA (:func:`read_chrom_sizes`). Windows are added sorted
  by chromosome and start and streamed out, so memory stays flat for any number of genes;
  ``decimals`` rounds values (runs of equal values are stored once,
  which makes files much smaller).
- **BED of discovered elements** (:func:`call_elements`, :class:`ElementWriter`): runs of kept
  positions (``score >= threshold``, default 0.5, or the window's top ``top_fraction`` of
  positions), runs separated by at most ``min_gap`` bp merged, runs shorter than ``min_length``
  dropped. Each element is named ``<gene_id>:<n>`` (n = 1, 2, ... along the genome); columns:
  chrom, start, end, name, score (``round(1000 * mean score)``, 0-1000), strand (the gene's),
  gene_id, mean_score, max_score, distance (element centre - TSS, bp, genomic orientation; TSS
  = the window's ``tss`` if given, else its centre ``start + L // 2``). Sorted like
  ``sort -k1,1 -k2,2n`` (what bedtools and bedToBigBed expect), one header line starting with ``#``.

Both files are written under a temporary name beside the target and renamed when complete; a
failure or an exception inside ``with MaskWriter(...)`` leaves nothing.
:class:`RegionWriter` does both for one cell type. The buffering of both is shared with other
per-window outputs: a :class:`MaskWriter` may buffer several scores per bp and write files
derived from them (two cell types' masks and their difference), and :class:`SortedBedWriter`
streams any per-gene BED rows as the element BED is streamed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from ..atomic import publish, temporary_beside
from ..data.genome import resolve_chrom
from ..data.windows import WindowRecord
from ..errors import InputError

__all__ = [
    "Element",
    "read_chrom_sizes",
    "call_elements",
    "top_fraction_threshold",
    "elements_to_genomic",
    "MaskWriter",
    "write_mask_bigwig",
    "SortedBedWriter",
    "ElementWriter",
    "write_elements_bed",
    "read_elements_bed",
    "RegionWriter",
    "ELEMENT_COLUMNS",
    "genomic_order",
]

ELEMENT_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "gene_id", "mean_score",
                   "max_score", "distance")


# ------------------------------------------------------------------------------ chrom sizes
def read_chrom_sizes(path: str | os.PathLike | Mapping[str, int]) -> dict[str, int]:
    """Chromosome lengths from a ``.fai`` / ``.sizes`` table (name, length, ...) or a FASTA
    (its ``.fai`` beside it if present, else indexed through :class:`~seq2exp_plugin.data.genome.Genome`).
    A mapping is returned as a dict."""
    if isinstance(path, Mapping):
        return {str(k): int(v) for k, v in path.items()}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chromosome sizes / genome file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b">" or head == b"\x1f\x8b":  # FASTA (plain or bgzip)
        fai = Path(str(path) + ".fai")
        if fai.is_file() and fai.stat().st_mtime >= path.stat().st_mtime:
            return read_chrom_sizes(fai)
        from ..data.genome import Genome

        return dict(Genome(path).chrom_sizes)
    sizes: dict[str, int] = {}
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            try:
                if len(fields) < 2:
                    raise ValueError
                n = int(fields[1])
                if n <= 0:
                    raise ValueError
            except ValueError:
                raise InputError(f"{path}, line {lineno}: expected 'name length' (a .fai/.sizes "
                                 f"table), found {line.rstrip()[:80]!r}") from None
            sizes[fields[0]] = n
    if not sizes:
        raise InputError(f"{path}: no chromosome sizes found")
    return sizes


# ---------------------------------------------------------------------------------- elements
class Element(NamedTuple):
    """A called element in window coordinates: ``[start, end)`` and its mean score."""

    start: int
    end: int
    score: float


def top_fraction_threshold(score: np.ndarray, fraction: float) -> float:
    """The score of the ``round(fraction * n)``-th highest position (at least the first; as the
    model's "top" mask, :func:`seq2exp_plugin.model.mask.top_fraction`): keep ``score >= it``
    (ties may keep a little more). NaN positions are not counted."""
    score = np.asarray(score, dtype=np.float64).ravel()
    if not 0.0 < float(fraction) <= 1.0:
        raise InputError(f"top fraction must be in (0, 1], got {fraction}")
    finite = score[np.isfinite(score)]
    if finite.size == 0:
        return math.inf
    k = min(finite.size, max(1, int(round(float(fraction) * finite.size))))
    return float(np.partition(finite, finite.size - k)[finite.size - k])


def _runs(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the runs of True in a boolean vector."""
    d = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _kept_runs(score: np.ndarray, threshold: float | None, top_fraction: float | None,
               min_gap: int, min_length: int) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {score.shape}")
    if min_gap < 0 or min_length < 1:
        raise InputError(f"min_gap must be >= 0 and min_length >= 1 (got {min_gap}, {min_length})")
    if top_fraction is not None:
        thr = top_fraction_threshold(score, top_fraction)
    elif threshold is not None:
        thr = float(threshold)
    else:
        raise InputError("give a threshold or a top_fraction")
    with np.errstate(invalid="ignore"):
        keep = score >= thr  # NaN is never kept
    starts, ends = _runs(keep)
    if len(starts) > 1 and min_gap > 0:
        join = (starts[1:] - ends[:-1]) <= min_gap
        first = np.concatenate([[True], ~join])
        last = np.concatenate([~join, [True]])
        starts, ends = starts[first], ends[last]
    ok = (ends - starts) >= min_length
    return starts[ok], ends[ok]


def call_elements(
    score: np.ndarray,
    threshold: float | None = 0.5,
    min_gap: int = 0,
    min_length: int = 1,
    top_fraction: float | None = None,
) -> list[Element]:
    """Elements of one window: runs of ``score >= threshold`` (or of the window's top
    ``top_fraction`` of positions, which overrides ``threshold``), runs at most ``min_gap`` bp
    apart merged, runs shorter than ``min_length`` bp dropped. Window coordinates; ``score`` of an
    element = mean score over all its positions (merged gaps included)."""
    score = np.asarray(score, dtype=np.float64)
    starts, ends = _kept_runs(score, threshold, top_fraction, int(min_gap), int(min_length))
    if len(starts) == 0:
        return []
    csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(score, nan=0.0))])
    means = (csum[ends] - csum[starts]) / (ends - starts)
    return [Element(int(s), int(e), float(m)) for s, e, m in zip(starts, ends, means)]


def elements_to_genomic(elements: Iterable[Sequence], record: WindowRecord,
                        chrom_size: int | None = None) -> list[tuple[int, int, float]]:
    """``(start, end, score)`` window elements as genomic ``(start, end, score)``, sorted by start,
    clipped to ``[0, chrom_size)`` (empty ones dropped)."""
    out = []
    for el in elements:
        gs, ge = record.to_genomic(el[0], el[1])
        gs = max(gs, 0)
        if chrom_size is not None:
            ge = min(ge, int(chrom_size))
        if ge > gs:
            out.append((gs, ge, float(el[2])))
    out.sort()
    return out


# ------------------------------------------------------------------------------ atomic files
def _tmp_beside(path: Path) -> Path:
    """An empty temporary beside ``path`` (see :func:`~seq2exp_plugin.atomic.temporary_beside`),
    readable as an ordinary file once renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it 0600
    return tmp


def _check_target(path: Path, force: bool) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory")
    if path.exists() and not force:
        raise FileExistsError(f"output {path} exists (use force=True / --force to replace it)")


# --------------------------------------------------------------------------------- ordering
def genomic_order(records: Sequence[tuple[str, int]], sizes) -> list[int]:
    """Indices of ``(chrom, window start)`` pairs in the order the writers need: chromosome name
    as ``sort -k1,1`` (aliases such as ``1`` resolved to the sizes' ``chr1``), then start."""
    sizes = read_chrom_sizes(sizes)
    keys = [(resolve_chrom(c, sizes, "the chromosome sizes"), int(s)) for c, s in records]
    return sorted(range(len(keys)), key=keys.__getitem__)


class _SortedInput:
    """Refuses a window that comes before the previous one (chromosome name, then start)."""

    def __init__(self, what: str) -> None:
        self.what, self.last = what, None

    def check(self, record: WindowRecord, chrom: str) -> None:
        key = (chrom, int(record.start))
        if self.last is not None and key < self.last:
            raise ValueError(f"gene {record.gene_id!r}: {self.what} takes windows sorted by chromosome and "
                             f"start ({chrom}:{record.start} came after {self.last[0]}:{self.last[1]}); "
                             f"sort them first (genomic_order)")
        self.last = key


# ---------------------------------------------------------------------------------- bigWig
class _AllOrNothing:
    """A writer of one file under a temporary name (``_tmp``): :meth:`close` finishes it
    (``_finish``) and publishes it as ``path``, :meth:`abort` drops it. As a context manager:
    ``close()`` when the block ends normally, ``abort()`` when it raises."""

    def close(self) -> Path:
        """Write what is buffered, finish the file and rename it into place; returns the path."""
        if not self._closed:
            try:
                self._finish()
                self._closed = True
                for tmp, path in self._outputs():
                    publish(tmp, path)
            finally:
                self.abort()
        return self.path

    def _outputs(self) -> list[tuple[Path, Path]]:
        """(temporary, final) of each file written."""
        return [(self._tmp, self.path)]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class MaskWriter(_AllOrNothing):
    """Streams per-gene scores into one bigWig (max where windows overlap).

    ``with MaskWriter(path, sizes) as w: w.add(record, score)`` - the file appears when the block
    exits normally; :meth:`abort` (or an exception in the block) removes everything. Windows
    must come sorted by chromosome name, then start (:func:`genomic_order`): every position
    before the latest window's start is final and written out at once, so memory holds one
    window and its overlaps, whatever the number of genes.

    Parameters
    ----------
    path : the bigWig to write.
    sizes : chromosome sizes (mapping or a ``.fai``/``.sizes``/FASTA path).
    decimals : round values to this many decimals before writing (``None``: exact float32).
    force : replace an existing file.
    """

    _CHUNK = 1 << 22

    def __init__(self, path: str | os.PathLike, sizes, decimals: int | None = None, force: bool = False):
        self._open([path], sizes, decimals, force, channels=1)

    def _open(self, paths: Sequence[str | os.PathLike], sizes, decimals: int | None, force: bool,
              channels: int) -> None:
        """Buffers of ``channels`` scores per bp (each the maximum over the windows that cover it),
        written to the bigWigs ``paths`` through :meth:`_files` (subclasses with several)."""
        import pyBigWig

        self.paths = [Path(p) for p in paths]
        self.path = self.paths[0]
        for path in self.paths:
            _check_target(path, force)
        self.sizes = read_chrom_sizes(sizes)
        self.decimals = None if decimals is None else int(decimals)
        self.n_records = 0
        self._order = _SortedInput("the mask bigWig")
        self._chrom: str | None = None
        self._lo = 0  # genomic position of _values[:, 0]
        self._values = np.empty((channels, 0), np.float32)
        self._covered = np.empty(0, bool)
        self._closed = False
        self._tmps: list[Path] = []
        self._bws: list = []
        for path in self.paths:
            self._tmps.append(_tmp_beside(path))
            self._bws.append(pyBigWig.open(str(self._tmps[-1]), "w"))
            if self._bws[-1] is None:
                self._bws.pop()
                self.abort()
                raise OSError(f"pyBigWig cannot create {path} (writing {self._tmps[-1].name} beside it)")
            self._bws[-1].addHeader([(c, int(self.sizes[c])) for c in sorted(self.sizes)], maxZooms=10)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.n_records} windows)"

    def _outputs(self) -> list[tuple[Path, Path]]:
        return list(zip(self._tmps, self.paths))

    def add(self, record: WindowRecord, score: np.ndarray) -> None:
        """Add one gene's window scores (window order; flipped here if ``record.reverse``)."""
        self._add(record, [score])

    def _add(self, record: WindowRecord, scores: Sequence[np.ndarray]) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed")
        vals = np.stack([np.asarray(record.genomic(np.asarray(s, dtype=np.float32).reshape(-1)), dtype=np.float32)
                         for s in scores])
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"gene {record.gene_id!r}: mask scores contain NaN or infinite values")
        chrom = resolve_chrom(record.chrom, self.sizes, "the chromosome sizes")
        self._order.check(record, chrom)
        lo, hi = max(int(record.start), 0), min(int(record.end), self.sizes[chrom])
        if hi <= lo:
            return
        if chrom != self._chrom:
            self._flush(None)
            self._chrom, self._lo = chrom, lo
        else:
            self._flush(lo)
        grow = hi - self._lo - self._values.shape[1]
        if grow > 0:
            self._values = np.concatenate([self._values, np.zeros((len(self._values), grow), np.float32)], axis=1)
            self._covered = np.concatenate([self._covered, np.zeros(grow, bool)])
        seg = slice(lo - self._lo, hi - self._lo)
        new = vals[:, lo - int(record.start): hi - int(record.start)]
        self._values[:, seg] = np.where(self._covered[seg], np.maximum(self._values[:, seg], new), new)
        self._covered[seg] = True
        self.n_records += 1

    def _flush(self, before: int | None) -> None:
        """Write the buffered positions before ``before`` (all of them for None)."""
        if self._chrom is None:
            return
        n = self._values.shape[1]
        k = n if before is None else min(max(before - self._lo, 0), n)
        if k:
            for bw, values in zip(self._bws, self._files(self._rounded(self._values[:, :k]))):
                self._write(bw, self._chrom, self._lo, values, self._covered[:k])
            self._values, self._covered = self._values[:, k:].copy(), self._covered[k:].copy()
        self._lo += k
        if before is not None and not self._values.shape[1]:
            self._lo = max(self._lo, before)

    def _rounded(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64)
        return values if self.decimals is None else np.round(values, self.decimals)

    def _files(self, values: np.ndarray) -> list[np.ndarray]:
        """What each bigWig gets from the buffered channels ``(channels, n)``: here the one channel."""
        return [values[0]]

    def _write(self, bw, chrom: str, offset: int, values: np.ndarray, covered: np.ndarray) -> None:
        for lo in range(0, len(values), self._CHUNK):
            hi = min(lo + self._CHUNK, len(values))
            cov = covered[lo:hi]
            if not cov.any():
                continue
            vals = values[lo:hi]
            # runs of equal values (a new run wherever coverage starts or the value changes)
            brk = np.ones(hi - lo, dtype=bool)
            brk[1:] = (vals[1:] != vals[:-1]) | (cov[1:] != cov[:-1])
            starts = np.flatnonzero(brk)
            ends = np.append(starts[1:], hi - lo)
            keep = cov[starts]
            starts, ends = starts[keep], ends[keep]
            base = offset + lo
            if len(starts) <= int(cov.sum()) // 2:  # compressible: bedGraph-style entries
                bw.addEntries([chrom] * len(starts), (starts + base).tolist(),
                              ends=(ends + base).tolist(), values=vals[starts].tolist())
            else:  # one value per bp: fixed-step entries per covered stretch (about 4x faster)
                cs, ce = _runs(cov)
                for a, b in zip(cs, ce):
                    bw.addEntries(chrom, int(a + base), values=vals[a:b], span=1, step=1)

    def _finish(self) -> None:
        self._flush(None)
        for bw in self._bws:
            bw.close()

    def abort(self) -> None:
        """Drop everything; no output is written."""
        if not self._closed:
            self._closed = True
            for bw in self._bws:
                bw.close()
        self._values = self._values[:, :0]
        self._covered = np.empty(0, bool)
        for tmp in self._tmps:
            tmp.unlink(missing_ok=True)

    def __del__(self):  # pragma: no cover - best effort if the writer is dropped unclosed
        try:
            self.abort()
        except Exception:
            pass


def write_mask_bigwig(records: Iterable[tuple[WindowRecord, np.ndarray]], sizes, path: str | os.PathLike,
                      decimals: int | None = None, force: bool = False) -> Path:
    """One bigWig from ``(record, score)`` pairs in any order (see :class:`MaskWriter`)."""
    records = list(records)
    sizes = read_chrom_sizes(sizes)
    with MaskWriter(path, sizes, decimals=decimals, force=force) as w:
        for i in genomic_order([(r.chrom, r.start) for r, _ in records], sizes):
            w.add(*records[i])
    return w.path


# ------------------------------------------------------------------------------------ BED
class SortedBedWriter(_AllOrNothing):
    """Streams each gene's BED rows into one file sorted like ``sort -k1,1 -k2,2n``, under a
    ``#`` header of ``columns``. Windows come sorted as for :class:`MaskWriter`: rows starting
    before the latest window are final and written out, so memory holds a window's rows."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], sizes=None, force: bool = False):
        self.path = Path(path)
        _check_target(self.path, force)
        self.sizes = read_chrom_sizes(sizes) if sizes is not None else None
        self._order = _SortedInput(f"the BED {self.path.name}")
        self._pending: list[tuple] = []
        self._tmp = _tmp_beside(self.path)
        self._fh = open(self._tmp, "w")
        self._fh.write("#" + "\t".join(columns) + "\n")
        self._closed = False

    def _chrom(self, record: WindowRecord) -> tuple[str, int | None]:
        """The record's chromosome as the sizes spell it, and its size (None without sizes)."""
        if self.sizes is None:
            return record.chrom, None
        chrom = resolve_chrom(record.chrom, self.sizes, "the chromosome sizes")
        return chrom, self.sizes[chrom]

    def _emit(self, record: WindowRecord, chrom: str, rows: list[tuple]) -> None:
        """Take one window's rows (first 4 columns chrom, start, end, name)."""
        if self._closed:
            raise ValueError(f"BED writer for {self.path} is closed")
        self._order.check(record, chrom)
        # rows of later windows start at or after this window's start: the earlier ones are final
        first = (chrom, max(int(record.start), 0))
        self._pending.sort(key=_row_key)
        done = [r for r in self._pending if (r[0], int(r[1])) < first]
        self._pending = self._pending[len(done):] + rows
        self._fh.writelines(self._format(r) for r in done)

    def _format(self, row: Sequence) -> str:
        return "\t".join(map(str, row)) + "\n"

    def _finish(self) -> None:
        self._fh.writelines(self._format(r) for r in sorted(self._pending, key=_row_key))
        self._fh.close()

    def abort(self) -> None:
        self._closed = True
        self._pending = []
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class ElementWriter(SortedBedWriter):
    """Calls elements in each gene's window and streams them into one sorted BED (see the
    module docstring for the columns). ``add`` returns the gene's genomic element rows."""

    def __init__(self, path: str | os.PathLike, threshold: float | None = 0.5, min_gap: int = 0,
                 min_length: int = 1, top_fraction: float | None = None, sizes=None, force: bool = False):
        if top_fraction is None and threshold is None:
            raise InputError("give a threshold or a top_fraction")
        if top_fraction is not None and not 0.0 < float(top_fraction) <= 1.0:
            raise InputError(f"top fraction must be in (0, 1], got {top_fraction}")
        if threshold is not None and top_fraction is None and not 0.0 < float(threshold) <= 1.0:
            raise InputError(f"threshold must be in (0, 1] (mask scores lie in [0, 1]), got {threshold}")
        if int(min_gap) < 0 or int(min_length) < 1:
            raise InputError(f"min_gap must be >= 0 and min_length >= 1 (got {min_gap}, {min_length})")
        super().__init__(path, ELEMENT_COLUMNS, sizes, force)
        self.threshold = threshold
        self.top_fraction = top_fraction
        self.min_gap = int(min_gap)
        self.min_length = int(min_length)

    def add(self, record: WindowRecord, score: np.ndarray) -> list[tuple]:
        if self._closed:
            raise ValueError(f"element writer for {self.path} is closed")
        score = np.asarray(score, dtype=np.float64).reshape(-1)
        record.genomic(score)  # length check
        els = call_elements(score, self.threshold, self.min_gap, self.min_length, self.top_fraction)
        chrom, size = self._chrom(record)
        gscore = record.genomic(score)
        rows = []
        for n, (gs, ge, _) in enumerate(elements_to_genomic(els, record, size), start=1):
            seg = gscore[gs - record.start: ge - record.start]
            mean, mx = float(np.nanmean(seg)), float(np.nanmax(seg))
            bed_score = int(min(max(round(1000 * mean), 0), 1000))
            centre = (gs + ge) // 2
            rows.append((chrom, gs, ge, f"{record.gene_id}:{n}", bed_score, record.strand, record.gene_id,
                         mean, mx, centre - record.tss_position))
        self._emit(record, chrom, rows)
        return rows

    def _format(self, row: Sequence) -> str:
        return _format_row(row)


def _row_key(r: Sequence) -> tuple:
    return (str(r[0]), int(r[1]), int(r[2]), str(r[3]))


def _format_row(r: Sequence) -> str:
    return (f"{r[0]}\t{int(r[1])}\t{int(r[2])}\t{r[3]}\t{int(r[4])}\t{r[5]}\t{r[6]}\t"
            f"{float(r[7]):.4f}\t{float(r[8]):.4f}\t{int(r[9])}\n")


def write_elements_bed(rows: Iterable[Sequence], path: str | os.PathLike, force: bool = True) -> Path:
    """Write element rows (:data:`ELEMENT_COLUMNS`) sorted by chrom (lexicographic), start, end,
    name; atomically."""
    path = Path(path)
    _check_target(path, force)
    rows = sorted(rows, key=_row_key)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "w") as fh:
            fh.write("#" + "\t".join(ELEMENT_COLUMNS) + "\n")
            fh.writelines(_format_row(r) for r in rows)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_elements_bed(path: str | os.PathLike):
    """An elements BED written by :func:`write_elements_bed` (or any BED3+) as a DataFrame."""
    from ..data.bed import read_bed

    df = read_bed(path, ("chrom", "start", "end"), what="elements BED")
    names = list(ELEMENT_COLUMNS)
    df.columns = names[: min(len(df.columns), len(names))] + list(df.columns[len(names):])
    for c in ("score", "distance"):
        if c in df.columns:
            df[c] = df[c].astype(np.int64)
    for c in ("mean_score", "max_score"):
        if c in df.columns:
            df[c] = df[c].astype(np.float64)
    return df


class RegionWriter(_AllOrNothing):
    """Both outputs for one cell type: ``with RegionWriter(bigwig=..., bed=..., sizes=...) as w:
    w.add(record, score)``. Either path may be ``None``. Element options as :class:`ElementWriter`."""

    def __init__(self, sizes, bigwig: str | os.PathLike | None = None, bed: str | os.PathLike | None = None,
                 threshold: float | None = 0.5, min_gap: int = 0, min_length: int = 1,
                 top_fraction: float | None = None, decimals: int | None = None, force: bool = False):
        self.sizes = read_chrom_sizes(sizes)
        self.elements = (ElementWriter(bed, threshold, min_gap, min_length, top_fraction, self.sizes, force)
                         if bed is not None else None)
        self.mask = MaskWriter(bigwig, self.sizes, decimals=decimals, force=force) if bigwig is not None else None

    def add(self, record: WindowRecord, score: np.ndarray) -> list[tuple]:
        if self.mask is not None:
            self.mask.add(record, score)
        return self.elements.add(record, score) if self.elements is not None else []

    def close(self) -> None:
        if self.mask is not None:
            self.mask.close()
        if self.elements is not None:
            self.elements.close()

    def abort(self) -> None:
        if self.mask is not None:
            self.mask.abort()
        if self.elements is not None:
            self.elements.abort()
