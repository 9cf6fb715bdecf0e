"""Hi-C contact between every position of a window and the gene's TSS (the model's third signal).

(Over 500 lines on purpose: every contact source - cooler, .hic, BEDPE, bedGraph rows, the power
law - gives the same track through one class, with one set of options and one transform.)

``HiCContacts(path).contact_to_tss(chrom, tss, start, end)`` returns ``float32 (end - start,)``:
for each position ``p`` of ``[start, end)``, the (processed) contact between the bin holding ``p``
and the bin holding ``tss``. Positions off the chromosome are 0. Chromosome names go through the
aliases of :mod:`seq2exp_plugin.data.genome`; a chromosome absent from the file raises
``KeyError`` naming the file and chromosome (``allow_missing_chroms=True``: zeros instead).

Supported inputs (format from the suffix, or ``fmt=``)
------------------------------------------------------
- ``.cool``: cooler; ``balance=True`` uses the ``weight`` column (``KeyError`` if absent: run
  ``cooler balance`` or pass ``balance=False``), ``False`` raw counts, a string another weight
  column. The resolution is the file's bin size.
- ``.mcool``: ``file.mcool::/resolutions/5000`` URIs, or the plain path with ``resolution=``
  (default 5000; ``ValueError`` listing the available resolutions if absent).
- ``.hic``: Juicer files through hictkpy (a core dependency with binary wheels);
  ``normalization=`` "KR" (default), "VC", "VC_SQRT", "SCALE" or "NONE" (``ValueError`` listing
  the file's normalizations if absent); ``resolution=`` default 5000.
- ``.bedpe`` (optionally gzip): ``chrom1 start1 end1 chrom2 start2 end2 count`` at one fixed
  resolution (``end1 - start1``, all rows); read into memory; inter-chromosomal rows ignored;
  each pair counted once whatever its orientation (stored upper-triangular, duplicates summed).
- ``.bedgraph``/``.bg`` (optionally gzip): contact-to-TSS profiles already computed. 5 columns
  ``chrom start end tss value`` (one profile per viewpoint ``tss``, 0-based; asking for a TSS not
  in the file is a ``KeyError``) or 4 columns ``chrom start end value`` (one viewpoint-free
  profile used for any TSS). Intervals play the role of bins; positions covered by no interval
  are 0 (no transform applied to them).
- ``powerlaw`` (no file; :func:`is_powerlaw`): for a cell type without Hi-C, ABC's power-law
  fallback (its ``get_powerlaw_at_distance``) from each position's distance ``d`` (bp) to the
  TSS: ``exp(scale - gamma * ln(max(d, 5000) + 1))``. ``powerlaw`` and ``powerlaw:abc`` are
  ABC's reference fit (gamma 0.87, scale -4.80 + 11.63 gamma); ``powerlaw:k562`` ABC's K562 fit
  (gamma 1.02424, scale 5.95945, the chr16 fixture's run); ``powerlaw:gamma=G,scale=S`` any
  other. Every chromosome is accepted; positions before the chromosome start are 0.

Post-processing of the contacts of the TSS bin's row, in this order (ABC-style, all options):
1. NaN (e.g. balancing-filtered bins) -> 0.
2. ``diagonal="max_neighbors"``: the TSS bin's self-contact is replaced by the larger of its two
   neighbours (self-ligation / short-range artefacts); ``"keep"`` (default) leaves it.
3. ``powerlaw_gamma=g`` (e.g. 0.87, ABC's ``hic_gamma``): divide by the power-law expected
   contact at that distance relative to the reference distance ``r`` (``powerlaw_ref``, default
   the resolution): ``x * (max(d, r) / r) ** g``, ``d`` = distance between bin centres (bp).
   ``None`` (default): no scaling.
4. ``+ pseudocount`` (default 0).
5. ``log1p=True`` (default): ``log10(1 + x)``.

Handles are opened lazily and reopened after ``fork``/unpickling (DataLoader workers).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, MissingInputError
from .bed import open_text
from .genome import ChromNames
from .handle import PerProcessHandle

__all__ = ["HiCContacts", "HIC_SUFFIXES", "POWERLAW_FITS", "is_hic_path", "is_powerlaw", "powerlaw_contact"]

HIC_SUFFIXES = (".cool", ".mcool", ".hic", ".bedpe", ".bedpe.gz", ".bedgraph", ".bedgraph.gz", ".bg", ".bg.gz")
#: Named power-law fits ``(gamma, scale)``: ABC's reference (its ``hic_gamma_reference`` 0.87 and
#: ``scale = -4.80 + 11.63 * gamma``) and its K562 fit (README of the chr16 fixture).
POWERLAW_FITS = {"abc": (0.87, -4.80 + 11.63 * 0.87), "k562": (1.02424, 5.95945)}
#: ABC's minimum distance of the power law (bp): closer positions get its contact at 5 kb.
POWERLAW_MIN_DISTANCE = 5000


def is_powerlaw(spec) -> bool:
    """True for a power-law contact ``powerlaw[:...]`` given where a Hi-C file would be."""
    return isinstance(spec, str) and (spec == "powerlaw" or spec.startswith("powerlaw:"))


def _powerlaw_fit(spec: str) -> tuple[float, float]:
    """``(gamma, scale)`` of ``powerlaw``, ``powerlaw:<fit name>`` or ``powerlaw:gamma=G,scale=S``."""
    how = spec.partition(":")[2] or "abc"
    if how in POWERLAW_FITS:
        return POWERLAW_FITS[how]
    pairs = dict(item.partition("=")[::2] for item in how.split(","))
    try:
        gamma, scale = float(pairs.pop("gamma")), float(pairs.pop("scale"))
    except (KeyError, ValueError):
        gamma = scale = float("nan")
    if pairs or not (np.isfinite(gamma) and np.isfinite(scale)) or gamma < 0:
        raise InputError(f"Hi-C contact {spec!r}: expected powerlaw, powerlaw:<{'|'.join(POWERLAW_FITS)}> "
                         f"or powerlaw:gamma=G,scale=S with numbers (gamma >= 0)")
    return gamma, scale


def powerlaw_contact(distance: np.ndarray, gamma: float, scale: float) -> np.ndarray:
    """ABC's power-law contact at ``distance`` (bp, >= 0): ``exp(scale - gamma * ln(max(d, 5000) + 1))``."""
    d = np.maximum(np.asarray(distance, dtype=np.float64), POWERLAW_MIN_DISTANCE)
    return np.exp(scale - gamma * np.log(d + 1.0))


def _split_uri(path) -> tuple[str, str | None]:
    s = str(path)
    if "::" in s:
        f, grp = s.split("::", 1)
        return f, grp
    return s, None


def _detect_format(path) -> str:
    if is_powerlaw(path):
        return "powerlaw"
    f, _ = _split_uri(path)
    low = f.lower()
    for suf, fmt in ((".mcool", "mcool"), (".cool", "cool"), (".hic", "hic"), (".bedpe", "bedpe"),
                     (".bedpe.gz", "bedpe"), (".bedgraph", "bedgraph"), (".bedgraph.gz", "bedgraph"),
                     (".bg", "bedgraph"), (".bg.gz", "bedgraph")):
        if low.endswith(suf):
            return fmt
    raise InputError(f"cannot tell the Hi-C format of {path} from its name (expected one of {HIC_SUFFIXES}); pass fmt=")


def is_hic_path(path) -> bool:
    try:
        _detect_format(path)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# backends: each gives chrom_sizes, resolution and row(chrom, tss, b0, b1) -> per-bin raw contacts
# ----------------------------------------------------------------------------------------------
def worker_start_method(num_workers: int) -> str | None:
    """How DataLoader workers must start: ``None`` (the default, fork) unless hictkpy is loaded.

    hictkpy installs a native at-fork handler that can deadlock a forked child (seen in the test
    suite: a worker stuck inside fork() in hictkpy's handler), so once a ``.hic`` file has been
    opened, workers start from a fresh interpreter ("forkserver") and reopen their own handles.
    """
    return "forkserver" if num_workers > 0 and "hictkpy" in sys.modules else None


def _missing_resolution(path, resolution: int, available: list[int]) -> str:
    return (f"{path}: resolution {resolution} not available; available: {available} (choose one: "
            f"data.hic.resolution in a run configuration or --set, resolution= for HiCContacts)")


@contextmanager
def _damage_named(uri: str, errors: type | tuple = Exception) -> Iterator[None]:
    """Around cooler/h5py reading ``uri``: a damaged or truncated file makes them raise errors of
    many types, without the file's name (h5py: "Unable to synchronously open object"); report
    ``errors`` as bad input naming the file."""
    try:
        yield
    except errors as err:
        raise InputError(f"{uri}: not a readable cooler file (damaged or truncated?): "
                         f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from None


class _CoolerBackend(PerProcessHandle):
    def __init__(self, path, fmt, resolution, balance):
        fname, group = _split_uri(path)
        if fmt == "mcool" and group is None:
            import cooler

            res = 5000 if resolution is None else int(resolution)
            with _damage_named(fname):
                groups = cooler.fileops.list_coolers(fname)
            avail = sorted(int(g.rsplit("/", 1)[-1]) for g in groups if g.startswith("/resolutions/"))
            if res not in avail:
                raise InputError(_missing_resolution(fname, res, avail))
            group = f"/resolutions/{res}"
        self.uri = fname if group is None else f"{fname}::{group}"
        self.balance = balance
        with _damage_named(self.uri):
            clr = self._handle()
            binsize, chrom_sizes, columns = clr.binsize, clr.chromsizes.items(), list(clr.bins().columns)
        self.resolution = int(binsize) if binsize else None
        if self.resolution is None:
            raise InputError(f"{self.uri}: variable-size bins are not supported")
        if resolution is not None and int(resolution) != self.resolution:
            raise InputError(f"{self.uri}: resolution is {self.resolution} bp, not {resolution}")
        self.chrom_sizes = {str(k): int(v) for k, v in chrom_sizes}
        if balance is not False:
            col = "weight" if balance is True else str(balance)
            if col not in columns:
                raise MissingInputError(
                    f"{self.uri}: balancing weight column {col!r} not found in bins "
                    f"(run `cooler balance` on the file, or read raw counts: data.hic.balance=false in a run "
                    f"configuration or --set, balance=False for HiCContacts)"
                )
            self._weight = col
        else:
            self._weight = None

    def _open(self):
        import cooler

        return cooler.Cooler(self.uri)

    def row(self, chrom, tss_bin, b0, b1):
        res = self.resolution
        n = self.chrom_sizes[chrom]
        with _damage_named(self.uri, OSError):  # h5py, reading truncated pixels (the rest is checked)
            mat = self._handle().matrix(balance=self._weight if self._weight else False, sparse=False)
            m = mat.fetch((chrom, tss_bin * res, min((tss_bin + 1) * res, n)), (chrom, b0 * res, min(b1 * res, n)))
        return np.asarray(m, dtype=np.float64).reshape(-1)[: b1 - b0]


class _HictkBackend(PerProcessHandle):
    """``.hic`` files through hictkpy (binary wheels; reads Juicer .hic v6-v9)."""

    def __init__(self, path, resolution, normalization):
        import hictkpy

        # no filter for hictkpy's fork warning: workers do not fork once it is loaded
        # (worker_start_method), and a fork elsewhere deserves the warning
        self.path = str(path)
        self.normalization = str(normalization).upper()
        self.resolution = 5000 if resolution is None else int(resolution)
        avail = sorted(int(r) for r in hictkpy.MultiResFile(self.path).resolutions())
        if self.resolution not in avail:
            raise InputError(_missing_resolution(self.path, self.resolution, avail))
        hic = self._handle()
        if self.normalization != "NONE" and self.normalization not in hic.avail_normalizations():
            raise InputError(f"{self.path}: normalization {self.normalization!r} not in the file at "
                             f"{self.resolution} bp; available: {['NONE', *hic.avail_normalizations()]} "
                             f"(choose one: data.hic.normalization in a run configuration or --set, "
                             f"normalization= for HiCContacts)")
        self.chrom_sizes = {str(c): int(n) for c, n in hic.chromosomes().items() if str(c).lower() != "all"}

    def _open(self):
        import hictkpy

        return hictkpy.File(self.path, self.resolution)

    def row(self, chrom, tss_bin, b0, b1):
        # .hic stores the upper triangle and refuses asymmetric queries crossing the diagonal:
        # fetch the symmetric block over the bins and read the TSS bin's row
        res, n = self.resolution, self.chrom_sizes[chrom]
        lo, hi = min(b0, tss_bin), max(b1, tss_bin + 1)
        block = self._handle().fetch(f"{chrom}\t{lo * res}\t{min(hi * res, n)}", normalization=self.normalization,
                                     count_type="float", query_type="BED").to_numpy()
        out = np.zeros(b1 - b0, dtype=np.float64)
        row = np.asarray(block[tss_bin - lo, b0 - lo : b1 - lo], dtype=np.float64)
        out[: len(row)] = row
        return out


class _BedpeBackend:
    def __init__(self, path, resolution):
        from scipy import sparse

        self.path = str(path)
        df = _read_whitespace_table(self.path, min_cols=7, int_cols=(1, 2, 4, 5), float_cols=(6,), what="bedpe")
        c1, s1, e1, c2, s2, e2, cnt = (df[i] for i in range(7))
        widths = np.concatenate([e1 - s1, e2 - s2])
        if len(widths) == 0:
            raise InputError(f"{self.path}: no contacts")
        res = int(widths[0])
        bad = np.flatnonzero(widths != res)
        if len(bad):
            raise InputError(
                f"{self.path}: all bins must have the same width (first row: {res} bp); "
                f"data row {bad[0] % len(s1) + 1} differs"
            )
        if resolution is not None and int(resolution) != res:
            raise InputError(f"{self.path}: resolution is {res} bp, not {resolution}")
        self.resolution = res
        cis = c1 == c2
        self.chrom_sizes = {}
        self._mats = {}
        for chrom in np.unique(np.concatenate([c1, c2])):
            sel = cis & (c1 == chrom)
            ends = np.concatenate([e1[c1 == chrom], e2[c2 == chrom]])
            self.chrom_sizes[str(chrom)] = int(ends.max())
            nb = -(-self.chrom_sizes[str(chrom)] // res)
            i = s1[sel] // res
            j = s2[sel] // res
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            up = sparse.coo_matrix((cnt[sel], (lo, hi)), shape=(nb, nb)).tocsr()  # duplicates summed
            up.sum_duplicates()
            full = (up + up.T - sparse.diags(up.diagonal())).tocsr()
            self._mats[str(chrom)] = full

    def row(self, chrom, tss_bin, b0, b1):
        m = self._mats[chrom]
        nb = m.shape[0]
        out = np.zeros(b1 - b0, dtype=np.float64)
        if tss_bin >= nb:
            return out
        hi = min(b1, nb)
        if hi > b0:
            out[: hi - b0] = m[tss_bin, b0:hi].toarray().reshape(-1)
        return out


def _read_whitespace_table(path, min_cols, int_cols, float_cols, what):
    """Columns of a whitespace-separated text table as numpy arrays; errors name file and line."""
    cols: list[list] = []
    n = None
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.split()
            if n is None:
                n = len(f)
                if n < min_cols:
                    raise InputError(f"{path}, line {lineno}: a {what} line needs at least {min_cols} columns, found {n}")
                cols = [[] for _ in range(n)]
                # a header line (non-numeric coordinate) is skipped
                try:
                    int(f[int_cols[0]])
                except ValueError:
                    n = None
                    continue
            if len(f) != n:
                raise InputError(f"{path}, line {lineno}: expected {n} columns, found {len(f)}")
            for k in range(n):
                v = f[k]
                if k in int_cols:
                    try:
                        v = int(v)
                    except ValueError:
                        raise InputError(f"{path}, line {lineno}: column {k + 1} is not an integer: {v!r}") from None
                elif k in float_cols:
                    try:
                        v = float(v)
                    except ValueError:
                        raise InputError(f"{path}, line {lineno}: column {k + 1} is not a number: {v!r}") from None
                cols[k].append(v)
    if n is None:
        raise InputError(f"{path}: empty {what} file")
    out = {}
    for k in range(n):
        if k in int_cols:
            out[k] = np.asarray(cols[k], dtype=np.int64)
        elif k in float_cols:
            out[k] = np.asarray(cols[k], dtype=np.float64)
        else:
            out[k] = np.asarray(cols[k], dtype=object)
    out["ncol"] = n
    return out


class _BedgraphBackend:
    """Precomputed contact-to-TSS profiles (intervals, not a matrix)."""

    def __init__(self, path):
        self.path = str(path)
        t = _read_whitespace_table(self.path, min_cols=4, int_cols=(1, 2), float_cols=(), what="bedgraph")
        ncol = t["ncol"]
        if ncol >= 5:
            try:
                tss = t[3].astype(np.int64)
                val = t[4].astype(np.float64)
            except ValueError:
                raise InputError(f"{self.path}: 5-column bedgraph must be 'chrom start end tss value'") from None
        else:
            tss = None
            try:
                val = t[3].astype(np.float64)
            except ValueError:
                raise InputError(f"{self.path}: column 4 (value) is not numeric") from None
        self.per_tss = tss is not None
        self.resolution = None
        self.chrom_sizes = {}
        self._prof = {}
        chrom = t[0]
        for c in np.unique(chrom):
            sel = chrom == c
            s, e, v = t[1][sel], t[2][sel], val[sel]
            self.chrom_sizes[str(c)] = int(e.max())
            if self.per_tss:
                ts = tss[sel]
                for tv in np.unique(ts):
                    k = ts == tv
                    o = np.argsort(s[k], kind="stable")
                    self._prof[(str(c), int(tv))] = (s[k][o], e[k][o], v[k][o])
            else:
                o = np.argsort(s, kind="stable")
                self._prof[(str(c), None)] = (s[o], e[o], v[o])

    def intervals(self, chrom, tss, start, end):
        key = (chrom, int(tss) if self.per_tss else None)
        if key not in self._prof:
            if self.per_tss:
                raise MissingInputError(f"{self.path}: no contact profile for TSS {chrom}:{tss}")
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        s, e, v = self._prof[key]
        keep = (e > start) & (s < end)
        return s[keep], e[keep], v[keep]


# ----------------------------------------------------------------------------------------------
class HiCContacts(ChromNames):
    """Contact-to-TSS profiles from a Hi-C file (see the module docstring for formats and options).

    Parameters
    ----------
    path : ``.cool``, ``.mcool[::/resolutions/N]``, ``.hic``, ``.bedpe[.gz]``, ``.bedgraph``/``.bg[.gz]``,
        or ``powerlaw[:...]`` (no file, see the module docstring).
    resolution : bin size in bp (checked against single-resolution files; picks the level of
        ``.mcool``/``.hic``, default 5000 there).
    balance : cooler weights (True = "weight", False = raw, or a column name).
    normalization : .hic normalization ("KR", "VC", "VC_SQRT", "SCALE", "NONE").
    diagonal : "keep" or "max_neighbors".
    powerlaw_gamma, powerlaw_ref : power-law distance scaling (off when gamma is None).
    pseudocount : added after scaling.
    log1p : apply ``log10(1 + x)`` last.
    allow_missing_chroms : zeros instead of ``KeyError`` for chromosomes absent from the file.
    fmt : override the format detected from the suffix.
    """

    def __init__(
        self,
        path,
        resolution: int | None = None,
        balance: bool | str = True,
        normalization: str = "KR",
        diagonal: str = "keep",
        powerlaw_gamma: float | None = None,
        powerlaw_ref: float | None = None,
        pseudocount: float = 0.0,
        log1p: bool = True,
        allow_missing_chroms: bool = False,
        fmt: str | None = None,
    ):
        self.path = str(path)
        fname, _ = _split_uri(path)
        self.fmt = fmt or _detect_format(path)
        if self.fmt not in ("cool", "mcool", "hic", "bedpe", "bedgraph", "powerlaw"):
            raise InputError(f"unknown Hi-C format {self.fmt!r} for {self.path}")
        if self.fmt != "powerlaw" and not Path(fname).is_file():
            raise FileNotFoundError(f"Hi-C file not found: {fname}")
        if diagonal not in ("keep", "max_neighbors"):
            raise InputError(f"diagonal must be 'keep' or 'max_neighbors', got {diagonal!r}")
        if powerlaw_gamma is not None and float(powerlaw_gamma) < 0:
            raise InputError("powerlaw_gamma must be >= 0")
        if float(pseudocount) < 0:
            raise InputError("pseudocount must be >= 0")
        self.diagonal = diagonal
        self.powerlaw_gamma = None if powerlaw_gamma is None else float(powerlaw_gamma)
        self.pseudocount = float(pseudocount)
        self.log1p = bool(log1p)
        self.allow_missing_chroms = bool(allow_missing_chroms)
        if self.fmt in ("cool", "mcool"):
            self._b = _CoolerBackend(path, self.fmt, resolution, balance)
        elif self.fmt == "hic":
            self._b = _HictkBackend(fname, resolution, normalization)
        elif self.fmt == "bedpe":
            self._b = _BedpeBackend(fname, resolution)
        elif self.fmt == "powerlaw":
            self.gamma, self.scale = _powerlaw_fit(self.path)
            self._b = None
        else:
            self._b = _BedgraphBackend(fname)
        self.resolution = None if self._b is None else self._b.resolution
        self.powerlaw_ref = float(powerlaw_ref) if powerlaw_ref is not None else float(self.resolution or 5000)
        self.chrom_sizes: dict[str, int] = {} if self._b is None else dict(self._b.chrom_sizes)

    def has_chrom(self, chrom: str) -> bool:
        return self.fmt == "powerlaw" or super().has_chrom(chrom)

    def describe(self) -> str:
        """Which contact this is, for the start of a run's output."""
        if self.fmt == "powerlaw":
            return (f"ABC's power law of the distance to the TSS, exp({self.scale:g} - {self.gamma:g} "
                    f"ln(max(d, {POWERLAW_MIN_DISTANCE}) + 1)), no Hi-C ({self.path})")
        return f"Hi-C {self.path} ({self.fmt}, {self.resolution} bp bins)"

    def __repr__(self) -> str:
        return f"HiCContacts({self.path!r}, fmt={self.fmt!r}, resolution={self.resolution})"

    def options(self) -> dict:
        """The post-processing settings (for provenance)."""
        return {"fmt": self.fmt, "resolution": self.resolution, "diagonal": self.diagonal,
                "powerlaw_gamma": self.powerlaw_gamma, "powerlaw_ref": self.powerlaw_ref,
                "pseudocount": self.pseudocount, "log1p": self.log1p}

    def _transform(self, x: np.ndarray, dist: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if self.powerlaw_gamma is not None:
            r = self.powerlaw_ref
            x = x * (np.maximum(dist, r) / r) ** self.powerlaw_gamma
        x = x + self.pseudocount
        if self.log1p:
            x = np.log10(1.0 + np.maximum(x, 0.0))
        return x

    def contact_to_tss(self, chrom: str, tss: int, start: int, end: int) -> np.ndarray:
        """``float32 (end - start,)``: processed contact of each position's bin with the TSS bin."""
        tss, start, end = int(tss), int(start), int(end)
        if end < start:
            raise ValueError(f"end < start for {chrom}:{start}-{end}")
        out = np.zeros(end - start, dtype=np.float32)
        if self.fmt == "powerlaw":
            s = max(start, 0)
            dist = np.abs(np.arange(s, end, dtype=np.float64) - tss)
            out[s - start :] = self._transform(powerlaw_contact(dist, self.gamma, self.scale), dist)
            return out
        name = self.resolve(chrom)
        if name is None:
            return out
        n = self.chrom_sizes[name]
        if self.fmt == "bedgraph":
            s, e, v = self._b.intervals(name, tss, start, end)
            if len(s) == 0:
                return out
            mid = (s + e) / 2.0
            vals = self._transform(v.astype(np.float64), np.abs(mid - tss))
            for a, b, val in zip(s, e, vals):
                out[max(a - start, 0) : min(b - start, end - start)] = val
            return out
        if not 0 <= tss < n:
            raise InputError(f"TSS {chrom}:{tss} is outside the chromosome ({n} bp in {self.path})")
        s, e = max(start, 0), min(end, n)
        if e <= s:
            return out
        res = self.resolution
        nbins = -(-n // res)
        tb = tss // res
        b0, b1 = s // res, (e - 1) // res + 1
        # one extra bin each side for the diagonal neighbours
        f0, f1 = max(b0 - 1, 0), min(b1 + 1, nbins)
        row = np.nan_to_num(self._b.row(name, tb, f0, f1).astype(np.float64), nan=0.0)
        if self.diagonal == "max_neighbors" and f0 <= tb < f1:
            nb = []
            if tb - 1 >= 0:
                nb.append(tb - 1)
            if tb + 1 < nbins:
                nb.append(tb + 1)
            nb_vals = [self._neighbour(name, tb, j, row, f0, f1) for j in nb]
            if nb_vals:
                row[tb - f0] = max(nb_vals)
        bins = np.arange(f0, f1)
        vals = self._transform(row, np.abs(bins - tb) * float(res))
        idx = np.arange(s, e) // res - f0
        out[s - start : e - start] = vals[idx]
        return out

    def _neighbour(self, name, tb, j, row, f0, f1):
        if f0 <= j < f1:
            return float(row[j - f0])
        return float(np.nan_to_num(self._b.row(name, tb, j, j + 1)[0]))
