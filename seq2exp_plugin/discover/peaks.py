"""MACS3 peaks for the peak-mask baseline (paper Table 1, "MACS3"): call them, read them as masks.

Peak calling is MACS3's own (the ``peaks`` extra: ``pip install "seq2exp-plugin[peaks]"``), run
as the ``macs3`` executable of the *running* environment (the ``bin`` folder of
``sys.executable``) in a subprocess: MACS3's Python commands take the argparse namespace built
inside that script, so the executable is its clean interface; a subprocess also keeps MACS3's
logging and memory apart from ours. Two modes:

- :func:`call_peaks_on_reads` - ``macs3 callpeak`` on DNase reads (BED/BAM/..., plain or gzip),
  DNase defaults ``--nomodel --shift -100 --extsize 200`` (cut sites extended to 200 bp fragments
  centred on them), ``--keep-dup all`` (DNase cut sites pile up at the same base for real; MACS3's
  own default ``1`` is for ChIP PCR duplicates), q-value cut-off 0.05 (MACS3's default). The
  genome size ``-g`` is the total length of the genome's ``.fai``/``.sizes`` (or FASTA), or
  given (a number or a MACS3 shortcut: ``hs``, ``mm``, ``ce``, ``dm``; for human the effective
  size ``hs`` is better than the FASTA total, which counts N runs).
- :func:`call_peaks_on_signal` - ``macs3 bdgpeakcall`` on a signal bigWig, converted to bedGraph
  with pyBigWig first (runs of equal values; positions without data are left out and so are zero
  runs when the cut-off is positive). ``cutoff`` is on the track's own scale (5 by default, as
  MACS3; for a fold-change DNase track such as the synthetic ``dnase.bw`` that means 5x background).

Output: a directory (``out``), built in a temporary directory beside it and renamed into place
only when MACS3 has finished (an interrupted or failed run leaves nothing)::

    peaks.narrowPeak    the peaks (BED6+4; :func:`read_narrowpeak`)
    macs3.log           the MACS3 command line, version, and everything it printed
    peaks.xls, summits.bed     (callpeak only) MACS3's peak table and summits

The peak-mask baseline reads ``peaks.narrowPeak`` as a per-bp mask through the window dataset
(``WindowDataset(..., peaks=path)``, :class:`~seq2exp_plugin.data.blacklist.IntervalMask`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_output_dir
from ..data.blacklist import IntervalMask
from ..errors import InputError

__all__ = [
    "INSTALL_HINT",
    "NARROWPEAK_COLUMNS",
    "MACS3NotFoundError",
    "MACS3Error",
    "PeakCallResult",
    "find_macs3",
    "macs3_version",
    "macs3_genome_size",
    "call_peaks_on_reads",
    "call_peaks_on_signal",
    "bigwig_to_bedgraph",
    "read_narrowpeak",
    "resolve_peaks_path",
]

INSTALL_HINT = 'pip install "seq2exp-plugin[peaks]"'
NARROWPEAK_COLUMNS = ("chrom", "start", "end", "name", "score", "strand", "signal_value", "p_value",
                      "q_value", "peak")
PEAKS_FILE = "peaks.narrowPeak"
LOG_FILE = "macs3.log"
_GENOME_SHORTCUTS = ("hs", "mm", "ce", "dm")
_READ_FORMATS = ("AUTO", "BED", "ELAND", "ELANDMULTI", "ELANDEXPORT", "SAM", "BAM", "BOWTIE", "BAMPE",
                 "BEDPE", "FRAG")


class MACS3NotFoundError(ImportError):
    """MACS3 is not installed in the running environment."""


class MACS3Error(RuntimeError):
    """MACS3 ran and failed (the message carries the end of its log)."""


# ------------------------------------------------------------------------------- the tool
_find_spec = importlib.util.find_spec  # a module attribute so tests can simulate a missing MACS3


def find_macs3() -> Path:
    """The ``macs3`` script of the running environment; :class:`MACS3NotFoundError` if MACS3 is
    not installed there."""
    bindir = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    script = bindir / ("macs3.exe" if os.name == "nt" else "macs3")
    if _find_spec("MACS3") is None or not script.is_file():
        raise MACS3NotFoundError(
            f"MACS3 is not installed in this environment ({sys.executable}; no MACS3 module or no "
            f"{script}); install it with: {INSTALL_HINT}")
    return script


def _macs3_command(script: Path) -> list[str]:
    # the script is a Python file; run it with this interpreter (no reliance on its shebang)
    with open(script, "rb") as fh:
        head = fh.read(2)
    return [sys.executable, str(script)] if head == b"#!" else [str(script)]


def macs3_version() -> str:
    """``macs3 --version`` of the running environment, e.g. ``"macs3 3.0.4"``."""
    cmd = _macs3_command(find_macs3()) + ["--version"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return (res.stdout or res.stderr).strip()


# --------------------------------------------------------------------------- genome size
def macs3_genome_size(genome: str | os.PathLike | None = None, size: str | int | float | None = None) -> str:
    """The ``-g`` argument: ``size`` if given (a positive number, ``2.7e9`` or ``hs/mm/ce/dm``),
    else the total length of ``genome`` (a ``.fai``/``.sizes`` table or a FASTA)."""
    if size is not None:
        s = str(size).strip()
        if s in _GENOME_SHORTCUTS:
            return s
        try:
            v = float(s)
        except ValueError:
            raise InputError(f"genome size must be a number or one of {', '.join(_GENOME_SHORTCUTS)}; "
                             f"got {size!r}") from None
        if not np.isfinite(v) or v < 1:
            raise InputError(f"genome size must be positive, got {size!r}")
        return str(int(round(v)))
    if genome is None:
        raise InputError("give the genome (FASTA, .fai or .sizes) or a genome size for MACS3 -g")
    from .regions import read_chrom_sizes

    return str(sum(read_chrom_sizes(genome).values()))


def _run_macs3(args: list[str], workdir: Path, log: Path) -> None:
    """Run ``macs3 <args>`` in ``workdir``; everything it prints goes to ``log``."""
    cmd = _macs3_command(find_macs3()) + args
    version = macs3_version()
    with open(log, "w") as fh:
        fh.write(f"# {version}\n# command: macs3 {shlex.join(args)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        except BaseException:  # KeyboardInterrupt and the like: stop MACS3 too
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-6:]
        raise MACS3Error(f"macs3 {args[0]} failed (exit {rc}):\n  " + "\n  ".join(tail))


@dataclass
class PeakCallResult:
    """What a call wrote: the output directory, its narrowPeak and log, and a summary."""

    out: Path
    narrowpeak: Path
    log: Path
    mode: str
    n_peaks: int
    total_bp: int
    median_width: float
    command: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.n_peaks:,} peaks, {self.total_bp:,} bp in peaks, median width "
                f"{self.median_width:.0f} bp -> {self.narrowpeak}")


def _result(out: Path, mode: str, command: list[str]) -> PeakCallResult:
    peaks = read_narrowpeak(out / PEAKS_FILE)
    widths = (peaks["end"] - peaks["start"]).to_numpy()
    iv = IntervalMask(out / PEAKS_FILE, what="peaks file")
    merged = sum(int((e - s).sum()) for s, e in (iv.intervals(c) for c in iv.chroms))
    return PeakCallResult(out, out / PEAKS_FILE, out / LOG_FILE, mode, len(peaks), merged,
                          float(np.median(widths)) if len(widths) else 0.0, command)


def _read_format(paths: Sequence[Path], fmt: str | None) -> str:
    if fmt is not None:
        f = str(fmt).upper()
        if f not in _READ_FORMATS:
            raise InputError(f"read format must be one of {', '.join(_READ_FORMATS)}, got {fmt!r}")
        return f
    names = [p.name.lower() for p in paths]
    if all(n.endswith(".bam") for n in names):
        return "BAM"
    if all(re.search(r"\.bed(\.gz)?$", n) for n in names):
        return "BED"
    return "AUTO"


# -------------------------------------------------------------------------------- callpeak
def call_peaks_on_reads(
    reads: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    genome: str | os.PathLike | None = None,
    genome_size: str | int | float | None = None,
    control: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    fmt: str | None = None,
    qvalue: float | None = 0.05,
    pvalue: float | None = None,
    shift: int = -100,
    extsize: int = 200,
    nomodel: bool = True,
    keep_dup: str | int = "all",
    extra_args: Sequence[str] = (),
    force: bool = False,
) -> PeakCallResult:
    """``macs3 callpeak`` on reads (see the module docstring); writes ``out/peaks.narrowPeak``.

    ``genome_size`` overrides the size computed from ``genome``; ``pvalue`` (if given) replaces
    the q-value cut-off; ``extra_args`` are passed to MACS3 as they are."""
    reads_l = [Path(reads)] if isinstance(reads, (str, os.PathLike)) else [Path(r) for r in reads]
    ctrl_l = ([] if control is None else [Path(control)] if isinstance(control, (str, os.PathLike))
              else [Path(c) for c in control])
    if not reads_l:
        raise InputError("no read files given")
    for p in reads_l + ctrl_l:
        if not p.is_file():
            raise FileNotFoundError(f"reads file not found: {p}")
        if p.stat().st_size == 0:  # MACS3 answers an empty file with its own traceback
            raise InputError(f"reads file {p} is empty")
    fmt_s = _read_format(reads_l + ctrl_l, fmt)
    gsize = macs3_genome_size(genome, genome_size)
    if pvalue is None and (qvalue is None or not 0.0 < float(qvalue) <= 1.0):
        raise InputError(f"q-value cut-off must be in (0, 1], got {qvalue}")
    if pvalue is not None and not 0.0 < float(pvalue) <= 1.0:
        raise InputError(f"p-value cut-off must be in (0, 1], got {pvalue}")
    if int(extsize) < 1:
        raise InputError(f"extsize must be >= 1, got {extsize}")
    keep = str(keep_dup)
    if keep not in ("all", "auto") and not keep.isdigit():
        raise InputError(f"keep_dup must be 'all', 'auto' or a number, got {keep_dup!r}")
    out = Path(out)
    find_macs3()  # fail early, before any work, when MACS3 is missing
    args = ["callpeak", "-t", *[str(p.resolve()) for p in reads_l]]
    if ctrl_l:
        args += ["-c", *[str(p.resolve()) for p in ctrl_l]]
    args += ["-f", fmt_s, "-g", gsize, "-n", "macs3", "--outdir", ".", "--keep-dup", keep]
    if nomodel:
        args += ["--nomodel", "--shift", str(int(shift)), "--extsize", str(int(extsize))]
    args += ["-p", str(pvalue)] if pvalue is not None else ["-q", str(qvalue)]
    args += [str(a) for a in extra_args]
    with atomic_output_dir(out, force) as tmp:
        _run_macs3(args, tmp, tmp / LOG_FILE)
        produced = tmp / "macs3_peaks.narrowPeak"
        if not produced.is_file():
            raise MACS3Error(f"macs3 callpeak wrote no narrowPeak (see the log in {out / LOG_FILE})")
        os.replace(produced, tmp / PEAKS_FILE)
        for src, dst in (("macs3_peaks.xls", "peaks.xls"), ("macs3_summits.bed", "summits.bed")):
            if (tmp / src).is_file():
                os.replace(tmp / src, tmp / dst)
    return _result(out, "callpeak", args)


# ----------------------------------------------------------------------------- bdgpeakcall
def bigwig_to_bedgraph(bigwig: str | os.PathLike, bedgraph: str | os.PathLike, drop_zeros: bool = True,
                       chunk: int = 1 << 22) -> int:
    """Write a bigWig's values as a bedGraph (runs of equal values merged; NaN / no data left out;
    zero runs left out when ``drop_zeros``); returns the number of lines."""
    import pyBigWig

    bigwig = Path(bigwig)
    if not bigwig.is_file():
        raise FileNotFoundError(f"bigWig file not found: {bigwig}")
    try:
        bw = pyBigWig.open(str(bigwig))
    except RuntimeError as exc:
        raise InputError(f"cannot open {bigwig} as a bigWig file: {exc}") from None
    if bw is None or not bw.isBigWig():
        raise InputError(f"{bigwig} is not a bigWig file")
    n_lines = 0
    try:
        with open(bedgraph, "w") as fh:
            for chrom, length in bw.chroms().items():
                for lo in range(0, int(length), chunk):
                    hi = min(lo + chunk, int(length))
                    v = np.asarray(bw.values(chrom, lo, hi, numpy=True), dtype=np.float64)
                    ok = np.isfinite(v)
                    if drop_zeros:
                        ok &= v != 0
                    if not ok.any():
                        continue
                    brk = np.ones(hi - lo, dtype=bool)
                    brk[1:] = (v[1:] != v[:-1]) | (ok[1:] != ok[:-1])
                    starts = np.flatnonzero(brk)
                    ends = np.append(starts[1:], hi - lo)
                    sel = ok[starts]
                    starts, ends, vals = starts[sel] + lo, ends[sel] + lo, v[starts[sel]]
                    fh.write("".join(f"{chrom}\t{s}\t{e}\t{x:.6g}\n" for s, e, x in zip(starts, ends, vals)))
                    n_lines += len(starts)
    finally:
        bw.close()
    return n_lines


def call_peaks_on_signal(
    bigwig: str | os.PathLike,
    out: str | os.PathLike,
    cutoff: float = 5.0,
    min_length: int = 200,
    max_gap: int = 30,
    extra_args: Sequence[str] = (),
    force: bool = False,
) -> PeakCallResult:
    """``macs3 bdgpeakcall`` on a bigWig signal (converted to bedGraph first); writes
    ``out/peaks.narrowPeak``. ``cutoff`` on the track's scale, ``min_length`` (-l) and
    ``max_gap`` (-g) in bp."""
    bigwig = Path(bigwig)
    if not bigwig.is_file():
        raise FileNotFoundError(f"bigWig file not found: {bigwig}")
    if not np.isfinite(float(cutoff)):
        raise InputError(f"cutoff must be a finite number, got {cutoff}")
    if int(min_length) < 1 or int(max_gap) < 0:
        raise InputError(f"min_length must be >= 1 and max_gap >= 0 (got {min_length}, {max_gap})")
    out = Path(out)
    find_macs3()
    args = ["bdgpeakcall", "-i", "signal.bdg", "-c", repr(float(cutoff)), "-l", str(int(min_length)),
            "-g", str(int(max_gap)), "--no-trackline", "--outdir", ".", "--o-prefix", "macs3",
            *[str(a) for a in extra_args]]
    with atomic_output_dir(out, force) as tmp:
        bigwig_to_bedgraph(bigwig, tmp / "signal.bdg", drop_zeros=float(cutoff) > 0)
        _run_macs3(args, tmp, tmp / LOG_FILE)
        (tmp / "signal.bdg").unlink()
        produced = sorted(tmp.glob("macs3*.narrowPeak"))
        if len(produced) != 1:
            raise MACS3Error(f"macs3 bdgpeakcall wrote no narrowPeak (see the log in {out / LOG_FILE})")
        os.replace(produced[0], tmp / PEAKS_FILE)
        with open(tmp / LOG_FILE, "a") as fh:
            fh.write(f"# input bigWig: {bigwig.resolve()}\n")
    return _result(out, "bdgpeakcall", args)


# ------------------------------------------------------------------------------ reading
def resolve_peaks_path(path: str | os.PathLike) -> Path:
    """A peaks file, or the ``peaks.narrowPeak`` inside a ``seq2exp peaks`` output directory."""
    p = Path(path)
    if p.is_dir():
        p = p / PEAKS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"peaks file not found: {p}")
    return p


def read_narrowpeak(path: str | os.PathLike):
    """A narrowPeak (or BED3+ peaks file) as a DataFrame with :data:`NARROWPEAK_COLUMNS` names."""
    from ..data.bed import read_bed

    df = read_bed(resolve_peaks_path(path), ("chrom", "start", "end"), what="peaks file")
    n = min(len(df.columns), len(NARROWPEAK_COLUMNS))
    df.columns = list(NARROWPEAK_COLUMNS[:n]) + list(df.columns[n:])
    for c in ("signal_value", "p_value", "q_value"):
        if c in df.columns:
            df[c] = df[c].astype(np.float64)
    return df
