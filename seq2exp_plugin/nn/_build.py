"""Compile, cache and load the CPU kernels (``_cpu_scan.c``: selective scan, conv + SiLU).

The kernel is built at first use with the system C compiler (``$CC``, else ``cc``, ``gcc``
or ``clang``), once as float32 and once as float64 from the same source, linked into one
shared library and loaded with :mod:`ctypes`. The library is cached per user under
``$XDG_CACHE_HOME/seq2exp_plugin`` (default ``~/.cache/seq2exp_plugin``), named by a hash of
the source, the flags, the compiler (path and ``--version``) and the CPU (``-march=native``
makes the binary CPU-specific). Several processes may build at once (pytest-xdist): each
builds in a private temporary folder and moves the result in place with ``os.replace``.

This module imports neither torch nor anything else heavy, so it can be loaded on its own.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("_cpu_scan.c")
BASE_FLAGS = ["-O3", "-fPIC", "-pthread", "-ffp-contract=fast", "-fno-math-errno",
              "-fno-trapping-math", "-std=gnu11"]
ARCH_FLAGS = [["-march=native"], ["-mcpu=native"], []]  # first that compiles wins

_lock = threading.Lock()
_state: dict = {"lib": None, "error": None, "path": None, "tried": False}


class ScanArgs(ctypes.Structure):
    """Mirror of ``scan_args`` in ``_cpu_scan.c`` (field order matters)."""

    _fields_ = [(name, typ) for name, typ in (
        ("batch", ctypes.c_int64), ("dim", ctypes.c_int64), ("len", ctypes.c_int64),
        ("nstate", ctypes.c_int64), ("nthreads", ctypes.c_int64), ("ck_every", ctypes.c_int64),
        ("softplus", ctypes.c_int64), ("groups", ctypes.c_int64),
        ("u", ctypes.c_void_p), ("u_sb", ctypes.c_int64), ("u_st", ctypes.c_int64),
        ("delta", ctypes.c_void_p), ("dl_sb", ctypes.c_int64), ("dl_st", ctypes.c_int64),
        ("z", ctypes.c_void_p), ("z_sb", ctypes.c_int64), ("z_st", ctypes.c_int64),
        ("B", ctypes.c_void_p), ("B_sb", ctypes.c_int64), ("B_st", ctypes.c_int64),
        ("C", ctypes.c_void_p), ("C_sb", ctypes.c_int64), ("C_st", ctypes.c_int64),
        ("A", ctypes.c_void_p), ("D", ctypes.c_void_p), ("bias", ctypes.c_void_p),
        ("ck", ctypes.c_void_p),
        ("y", ctypes.c_void_p), ("y_sb", ctypes.c_int64), ("y_st", ctypes.c_int64),
        ("gy", ctypes.c_void_p), ("gy_sb", ctypes.c_int64), ("gy_st", ctypes.c_int64),
        ("gu", ctypes.c_void_p), ("gu_sb", ctypes.c_int64), ("gu_st", ctypes.c_int64),
        ("gdelta", ctypes.c_void_p), ("gd_sb", ctypes.c_int64), ("gd_st", ctypes.c_int64),
        ("gz", ctypes.c_void_p), ("gz_sb", ctypes.c_int64), ("gz_st", ctypes.c_int64),
        ("gB", ctypes.c_void_p), ("gB_sg", ctypes.c_int64), ("gB_sb", ctypes.c_int64),
        ("gB_st", ctypes.c_int64),
        ("gC", ctypes.c_void_p), ("gC_sg", ctypes.c_int64), ("gC_sb", ctypes.c_int64),
        ("gC_st", ctypes.c_int64),
        ("gA", ctypes.c_void_p), ("gD", ctypes.c_void_p), ("gbias", ctypes.c_void_p),
        ("pA", ctypes.c_void_p), ("pD", ctypes.c_void_p), ("pb", ctypes.c_void_p),
    )]


class ConvArgs(ctypes.Structure):
    """Mirror of ``conv_args`` in ``_cpu_scan.c`` (field order matters)."""

    _fields_ = [(name, typ) for name, typ in (
        ("batch", ctypes.c_int64), ("len", ctypes.c_int64), ("dim", ctypes.c_int64),
        ("width", ctypes.c_int64), ("reverse", ctypes.c_int64), ("nthreads", ctypes.c_int64),
        ("x", ctypes.c_void_p), ("x_sb", ctypes.c_int64), ("x_st", ctypes.c_int64),
        ("w", ctypes.c_void_p), ("bias", ctypes.c_void_p), ("y", ctypes.c_void_p),
        ("gy", ctypes.c_void_p), ("gx", ctypes.c_void_p), ("gw", ctypes.c_void_p),
        ("gb", ctypes.c_void_p),
    )]


def cache_dir() -> Path:
    """Where compiled kernels are cached: ``$XDG_CACHE_HOME/seq2exp_plugin`` (default
    ``~/.cache``), so each machine compiles once."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "seq2exp_plugin"


def find_compiler() -> str | None:
    """The C compiler to build with: ``$CC``, else the first of cc, gcc, clang on the PATH.

    Returns:
        Its path, or None when there is none.
    """
    cands = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for c in cands:
        path = shutil.which(c)
        if path:
            return path
    return None


def _cpu_identity() -> str:
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            seen = set()
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part", "cpu family",
                           "model") and key not in seen:
                    seen.add(key)
                    parts.append(line.strip())
    except OSError:
        pass
    return "\n".join(parts)


def _compiler_version(cc: str) -> str:
    try:
        res = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
        return res.stdout + res.stderr
    except (OSError, subprocess.SubprocessError) as exc:  # pragma: no cover
        return repr(exc)


def _compile(cc: str, arch: list[str], src: Path, workdir: Path) -> Path:
    """Compile the float32 and float64 objects and link them; return the library path."""
    objs = []
    procs = []
    for prec in (0, 1):
        obj = workdir / f"scan_{prec}.o"
        cmd = [cc, *BASE_FLAGS, *arch, f"-DSCAN_DOUBLE={prec}", "-c", str(src), "-o", str(obj)]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True)))
        objs.append(obj)
    errors = []
    for cmd, p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            errors.append(f"{' '.join(cmd)}\n{out}")
    if errors:
        raise RuntimeError("\n".join(errors))
    lib = workdir / "scan.so"
    cmd = [cc, "-shared", "-pthread", *[str(o) for o in objs], "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return lib


def _remove_stale_builds(out_dir: Path, max_age_s: float = 3600.0) -> None:
    """Remove temporary build folders left by killed builds (older than an hour)."""
    now = time.time()
    for p in out_dir.glob(".build-*"):
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def build(force: bool = False) -> Path:
    """Build the kernel library, or find it in the cache (keyed by source, compiler and CPU).

    Args:
        force: compile even when the cache has it.

    Returns:
        The path of the shared library.

    Raises:
        RuntimeError: no compiler, or compilation failed (the message has the compiler's output).
    """
    cc = find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install cc/gcc/clang)")
    src_bytes = SOURCE.read_bytes()
    version = _compiler_version(cc)
    cpu = _cpu_identity()
    out_dir = cache_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-", delete=True)
        probe.close()
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / f"seq2exp_plugin-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out_dir)
    last_err = None
    for arch in ARCH_FLAGS:
        key = hashlib.sha256()
        for part in (src_bytes, " ".join(BASE_FLAGS + arch).encode(), cc.encode(),
                     version.encode(), cpu.encode(), sys.platform.encode()):
            key.update(part)
            key.update(b"\0")
        final = out_dir / f"_cpu_scan-{key.hexdigest()[:20]}.so"
        if final.exists() and not force:
            return final
        work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".build-"))
        try:
            # The source is copied so that its own `#include __FILE__` sees the same bytes.
            src = work / "_cpu_scan.c"
            src.write_bytes(src_bytes)
            lib = _compile(cc, arch, src.resolve(), work)
            os.replace(lib, final)
            return final
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            last_err = exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise RuntimeError(f"building the CPU scan kernel failed:\n{last_err}")


def _declare(lib: ctypes.CDLL) -> None:
    p_args = ctypes.POINTER(ScanArgs)
    for sfx in ("f32", "f64"):
        for name in ("scan_fwd", "scan_bwd"):
            fn = getattr(lib, f"{name}_{sfx}")
            fn.argtypes = [p_args]
            fn.restype = ctypes.c_int
        for name in ("conv_silu_fwd", "conv_silu_bwd"):
            fn = getattr(lib, f"{name}_{sfx}")
            fn.argtypes = [ctypes.POINTER(ConvArgs)]
            fn.restype = ctypes.c_int
        fn = getattr(lib, f"scan_exp_array_{sfx}")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        fn = getattr(lib, f"scan_softplus_array_{sfx}")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        fn = getattr(lib, f"scan_exp_bench_{sfx}")
        fn.argtypes = [ctypes.c_int64, ctypes.c_int64]
        fn.restype = ctypes.c_int64
        fn = getattr(lib, f"scan_simd_lanes_{sfx}")
        fn.argtypes = []
        fn.restype = ctypes.c_int


def _declare_common(lib: ctypes.CDLL) -> None:
    lib.scan_advise_hugepages.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.scan_advise_hugepages.restype = ctypes.c_int


def load_library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first call; None if that failed
    (the reason is in :func:`build_error`). Thread-safe; tried once per process."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                path = build()
                lib = ctypes.CDLL(str(path))
                _declare(lib)
                _declare_common(lib)
                _state.update(lib=lib, path=path, error=None)
            except (RuntimeError, OSError, AttributeError) as exc:
                _state.update(lib=None, error=str(exc))
        return _state["lib"]


def build_error() -> str | None:
    """Why :func:`load_library` returned None (for messages), or None."""
    return _state["error"]


def library_path() -> Path | None:
    """The loaded library's path, or None before a successful :func:`load_library`."""
    return _state["path"]


def reset() -> None:
    """Forget the loaded library (tests use this to simulate a missing compiler)."""
    with _lock:
        _state.update(lib=None, error=None, path=None, tried=False)
