"""Per-base-pair signal tracks from bigWig files (DNase, H3K27ac, ...).

``BigWigTrack(path).values(chrom, start, end)`` returns ``float32 (end - start,)``: the bigWig value
at every position of ``[start, end)`` (0-based half-open), 0 where the file has no interval or
stores NaN (NaN means no data, everywhere: :meth:`BigWigTrack.background` counts it as uncovered),
and 0 for positions before 0 or past the chromosome end. An infinite value is refused with the
file and its position. Chromosome names are matched
through the aliases of :mod:`seq2exp_plugin.data.genome` (``chr1 <-> 1``, ``chrM <-> MT``).
A chromosome absent from the file raises ``KeyError`` naming the file and the chromosome, unless
``allow_missing_chroms=True`` (then the track is all zeros there).

The pyBigWig handle is opened lazily and reopened after ``fork``/unpickling (DataLoader workers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .genome import ChromNames
from .handle import PerProcessHandle

__all__ = ["BigWigTrack", "BIGWIG_SUFFIXES", "is_bigwig_path"]

BIGWIG_SUFFIXES = (".bw", ".bigwig")


def is_bigwig_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(BIGWIG_SUFFIXES)


class BigWigTrack(ChromNames, PerProcessHandle):
    """A bigWig signal track.

    Parameters
    ----------
    path : bigWig file.
    allow_missing_chroms : return zeros (instead of raising ``KeyError``) for chromosomes
        absent from the file.
    """

    def __init__(self, path: str | os.PathLike, allow_missing_chroms: bool = False):
        self.path = Path(path)
        self.allow_missing_chroms = bool(allow_missing_chroms)
        if not self.path.is_file():
            raise FileNotFoundError(f"bigWig file not found: {self.path}")
        bw = self._handle()
        if not bw.isBigWig():
            raise InputError(f"{self.path} is not a bigWig file (bigBed?)")
        self.chrom_sizes: dict[str, int] = {str(k): int(v) for k, v in bw.chroms().items()}

    def _open(self):
        import pyBigWig

        try:
            bw = pyBigWig.open(str(self.path))
        except RuntimeError as exc:
            raise InputError(f"cannot open {self.path} as a bigWig file: {exc}") from exc
        if bw is None:
            raise InputError(f"cannot open {self.path} as a bigWig file")
        return bw

    def __repr__(self) -> str:
        return f"BigWigTrack({str(self.path)!r})"

    def values(self, chrom: str, start: int, end: int) -> np.ndarray:
        """``float32 (end - start,)`` per-bp values of ``[start, end)``; NaN, gaps, off-chromosome -> 0."""
        start, end = int(start), int(end)
        if end < start:
            raise ValueError(f"end < start for {chrom}:{start}-{end} ({self.path})")
        out = np.zeros(end - start, dtype=np.float32)
        name = self.resolve(chrom)
        if name is None:
            return out
        n = self.chrom_sizes[name]
        s, e = max(start, 0), min(end, n)
        if e <= s:
            return out
        vals = np.asarray(self._handle().values(name, s, e, numpy=True), dtype=np.float32)
        finite = np.isfinite(vals)
        if not finite.all():
            infinite = np.flatnonzero(np.isinf(vals))
            if infinite.size:
                self._refuse_infinite(name, s + int(infinite[0]))
            vals[~finite] = 0.0
        out[s - start : e - start] = vals
        return out

    def _refuse_infinite(self, chrom: str, position: int) -> None:
        raise InputError(f"{self.path}: infinite value at {chrom}:{position} (0-based); a bigWig must "
                         f"hold finite numbers (NaN is read as no data)")

    def background(self) -> float:
        """Genome-wide background: the mean value per bp over the chromosomes that hold data,
        uncovered positions counting as 0 (so files that store zeros and files that omit them
        agree). From the file's summary levels (pyBigWig ``stats``), hence cheap; a chromosome
        whose summary is not a finite number (NaN or inf stored there) is summed from its
        intervals instead, NaN as no data (a chromosome of NaN only holds none). Dividing by it
        puts fold-change, signal p-value and read-depth (RPM) tracks on one scale: fold over the
        track's own average. ``InputError`` if the file holds no signal or an infinite value."""
        bw = self._handle()
        total, length = 0.0, 0
        for name, size in self.chrom_sizes.items():
            covered = bw.stats(name, 0, size, type="coverage")[0]
            if not covered:
                continue
            mean = bw.stats(name, 0, size, type="mean")[0]
            if mean is not None and np.isfinite(mean):
                total += float(mean) * float(covered) * size
                length += size
                continue
            summed = self._finite_sum(name)
            if summed is not None:
                total += summed
                length += size
        if length == 0 or not total > 0:
            raise InputError(f"{self.path}: no positive signal to scale by (sum over the genome is {total})")
        return total / length

    def _finite_sum(self, chrom: str) -> float | None:
        """Sum over the bp of ``chrom`` of its finite values (NaN: no data); None if it has none."""
        intervals = np.asarray(self._handle().intervals(chrom) or np.zeros((0, 3)), dtype=np.float64)
        starts, ends, vals = intervals.reshape(-1, 3).T
        infinite = np.flatnonzero(np.isinf(vals))
        if infinite.size:
            self._refuse_infinite(chrom, int(starts[infinite[0]]))
        finite = np.isfinite(vals)
        return float(((ends - starts) * vals)[finite].sum()) if finite.any() else None

    def mean(self, chrom: str, start: int, end: int) -> float:
        """Mean of :meth:`values` over ``[start, end)`` (uncovered/off-chromosome positions count as 0)."""
        if end <= start:
            return 0.0
        return float(self.values(chrom, start, end).mean(dtype=np.float64))
