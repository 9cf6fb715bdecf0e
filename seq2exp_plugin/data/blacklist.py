"""BED intervals as per-bp masks: excluded regions (the ENCODE blacklist) and peak masks.

``IntervalMask(bed_path).mask(chrom, start, end)`` returns ``bool (end - start,)``, True where the
position lies in one of the BED intervals (``Blacklist`` is the same class under the name of its
main use; the peak-mask baseline reads MACS3 narrowPeaks with it). The BED needs at least ``chrom start end`` (extra
columns ignored; plain or gzip; ``#``/``track``/``browser`` lines skipped); a malformed line raises
``ValueError`` naming the file and the line. Chromosome names are matched through aliases
(``chr1 <-> 1``); a chromosome the BED does not mention has nothing excluded.

A bundled list is named instead of a path: ``hg38`` is the ENCODE unified GRCh38 blacklist the
authors exclude (:data:`BUNDLED`; source and licence in ``blacklists/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bed import read_bed
from .genome import resolve_chrom

__all__ = ["IntervalMask", "Blacklist", "BUNDLED", "is_bundled"]

#: Blacklists shipped with the package, by the name that stands for them in ``data.blacklist``.
BUNDLED = {"hg38": Path(__file__).parent / "blacklists" / "hg38.bed"}


def is_bundled(name) -> bool:
    """True when ``name`` names a bundled blacklist (a run configuration keeps it as a name)."""
    return isinstance(name, str) and name in BUNDLED


class IntervalMask:
    """Merged BED intervals per chromosome, queried as per-bp masks."""

    def __init__(self, bed_path: str | os.PathLike, what: str = "blacklist BED"):
        self.path = BUNDLED[bed_path] if is_bundled(bed_path) else Path(bed_path)
        df = read_bed(self.path, ("chrom", "start", "end"), what=what)
        self._iv: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for chrom, g in df.groupby("chrom", sort=False):
            order = np.argsort(g["start"].to_numpy(), kind="stable")
            starts = g["start"].to_numpy(dtype=np.int64)[order]
            ends = g["end"].to_numpy(dtype=np.int64)[order]
            ms, me = [], []
            for s, e in zip(starts, ends):
                if ms and s <= me[-1]:
                    me[-1] = max(me[-1], e)
                else:
                    ms.append(s)
                    me.append(e)
            self._iv[str(chrom)] = (np.asarray(ms, dtype=np.int64), np.asarray(me, dtype=np.int64))

    @property
    def chroms(self) -> list[str]:
        return list(self._iv)

    def __repr__(self) -> str:
        n = sum(len(s) for s, _ in self._iv.values())
        return f"{type(self).__name__}({str(self.path)!r}, {n} merged intervals)"

    def intervals(self, chrom: str) -> tuple[np.ndarray, np.ndarray]:
        """Merged (starts, ends) on ``chrom`` (empty arrays if none)."""
        try:
            name = resolve_chrom(chrom, self._iv)
        except KeyError:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._iv[name]

    def mask(self, chrom: str, start: int, end: int) -> np.ndarray:
        """``bool (end - start,)``: True where ``[start, end)`` overlaps an excluded interval."""
        start, end = int(start), int(end)
        if end < start:
            raise ValueError(f"end < start for {chrom}:{start}-{end}")
        out = np.zeros(end - start, dtype=bool)
        starts, ends = self.intervals(chrom)
        if len(starts) == 0:
            return out
        i0 = int(np.searchsorted(ends, start, side="right"))
        i1 = int(np.searchsorted(starts, end, side="left"))
        for s, e in zip(starts[i0:i1], ends[i0:i1]):
            out[max(s - start, 0) : min(e - start, end - start)] = True
        return out


Blacklist = IntervalMask
