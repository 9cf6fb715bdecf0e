"""Outputs that appear whole or not at all.

Everything is written under a temporary name beside its target and renamed into place once it is
complete, so an interrupted or failed command (Ctrl-C included) leaves no half-written file or
folder behind, and an existing output is only replaced by a complete one. Temporary names carry
the writing process's id (``.<name>.<pid>.<random>.tmp``): what a killed process left (SIGKILL,
power loss) is removed by the next command writing the same output, once that process is gone.
Under :func:`stop_on_signals` nothing is published after a SIGTERM or Ctrl-C, even one that
Python could not raise where it landed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that every temporary output is removed on the way
    out (a BaseException: no ``except Exception`` on the way swallows it)."""


_received: int | None = None  # the signal seen under stop_on_signals, until the block ends


def _raise_for(signum: int) -> None:
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _on_signal(signum: int, frame) -> None:
    global _received
    _received = signum
    _raise_for(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` and Ctrl-C ``KeyboardInterrupt`` where
    the program is (SIGINT only where it is not ignored: a script's background jobs keep ignoring
    it). A signal landing in a finaliser or garbage-collection callback, where Python cannot raise
    and would print a traceback, is remembered instead: :func:`publish` raises it rather than
    publishing, so no output appears after a signal. An error the block raises after a signal is
    that signal too: C code that a signal interrupts may report its own error instead (matplotlib:
    "Invalid bounding box"), and Ctrl-C must not read as bad input. Does nothing outside the main
    thread, where handlers cannot be set."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    hook = sys.unraisablehook

    def remember_signals(info) -> None:
        if not (_received is not None and isinstance(info.exc_value, (Terminated, KeyboardInterrupt))):
            hook(info)

    _received, sys.unraisablehook = None, remember_signals
    try:
        yield
    except Exception:
        if _received is not None:
            _raise_for(_received)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received, sys.unraisablehook = None, hook


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished ``tmp`` to ``path``, unless a signal arrived (see
    :func:`stop_on_signals`): then raise it, and the caller's clean-up removes ``tmp``."""
    if _received is not None:
        _raise_for(_received)
    os.replace(tmp, path)


@contextmanager
def atomic_output_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` that becomes ``path`` when the block ends
    normally. ``path`` must not exist, or be empty, unless ``force`` (then it is replaced)."""
    path = check_output_dir(path, force)
    with _told_about(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent))
    try:
        with _told_about(path, tmp):
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
            yield tmp
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                publish(path, old / "previous")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                publish(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, for writers that go by it); it
    replaces ``path`` when the block ends normally and is removed otherwise."""
    path = Path(path)
    with _told_about(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(path)
    try:
        with _told_about(path, tmp):
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _told_about(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """An ``OSError`` of the block (a full disk, no permission) told about ``path``, the output
    the user named, instead of the hidden temporary ``tmp`` beside it (or the one that could not
    be made): ``[Errno 28] No space left on device: 'out/plots/g.png'``."""
    try:
        yield
    except OSError as err:
        told = _about(err, path, tmp)
        if told is err:
            raise
        raise told from err


def _about(err: OSError, path: Path, tmp: Path | None) -> OSError:
    hidden = str(tmp) if tmp is not None else str(path.parent / _tmp_prefix(path.name))
    if err.errno is not None and str(err.filename or "").startswith(hidden):
        inside = str(err.filename)[len(hidden):] if tmp is not None else ""
        return type(err)(err.errno, err.strerror, str(path) + inside)
    if tmp is not None and hidden in str(err):
        return type(err)(str(err).replace(hidden, str(path)))
    return err


def temporary_beside(path: str | os.PathLike) -> Path:
    """A new empty file ``.<name>.<pid>.<random>.tmp<suffix>`` beside ``path`` (same suffix, for
    writers that go by it), after removing the stale temporaries of ``path``."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


def _tmp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


#: What follows ``.<name>.`` in a temporary's name: ``<pid>.<random>.tmp[.suffix]``, or
#: ``<random>.tmp`` (folders of versions before the process id was added).
_TMP_NAME = re.compile(r"^(?:(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(?:\.[^.]+)?|[a-z0-9_]{8}\.tmp)$")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` (files or folders ``.<name>.<pid>.*.tmp*`` beside it)
    whose process no longer runs, and those of older versions without a process id
    (``.<name>.<random>.tmp``); returns what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        match = _TMP_NAME.match(candidate.name[len(path.name) + 2:])
        if match is None or (match["pid"] and _running(int(match["pid"]))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def check_output_dir(path: str | os.PathLike, force: bool = False, what: str = "output folder") -> Path:
    """Raise before any work unless ``path`` can become a new output folder: it must not be a
    file, must be empty unless ``force``, and its nearest existing ancestor must be writable."""
    path = check_writable_dir(path, what)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{what} {path} exists and is not empty (use --force to replace it)")
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise before any work if ``path`` cannot become (or be written in as) a folder: it is a
    file, or its nearest existing ancestor is not a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} exists and is not a folder")
    _check_ancestor(path if path.is_dir() else path.parent, path, what)
    return path


def check_writable_file(path: str | os.PathLike, what: str = "output file", force: bool = True) -> Path:
    """Raise before any work if ``path`` cannot be written as a file: it is a folder, it exists
    and ``force`` is false, or its folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, expected a file name")
    if path.exists() and not force:
        raise FileExistsError(f"{what} {path} exists (use --force to replace it)")
    _check_ancestor(path.parent, path, what)
    return path


def _check_ancestor(folder: Path, path: Path, what: str) -> None:
    folder = folder.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: no permission to write in {folder}")
