"""Outputs whole or absent: stale temporaries removed, SIGTERM and Ctrl-C leave nothing behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2exp_plugin.atomic import (Terminated, atomic_output_dir, remove_stale_temporaries, stop_on_signals,
                                   write_text)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "pred"
    dead = tmp_path / ".pred.999999999.abcd_123.tmp"  # beyond any pid_max: no such process
    old_style = tmp_path / ".pred.k2j4h5g6.tmp"  # written before temporaries carried a pid
    alive = tmp_path / f".pred.{os.getpid()}.zz99yy88.tmp"
    stale_file = tmp_path / ".pred.999999999.abcdefgh.tmp.bw"
    other = tmp_path / ".pred.x.999999999.abcdefgh.tmp"  # another output's temporary
    for d in (dead, old_style, alive, other):
        d.mkdir()
        (d / "part.bw").write_bytes(b"x" * 1000)
    stale_file.write_bytes(b"x")
    with atomic_output_dir(target) as tmp:
        (tmp / "a.txt").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "pred"])
    assert remove_stale_temporaries(target) == []
    write_text(tmp_path / "x.tsv", "a\n")
    (tmp_path / ".x.tsv.999999999.abcdefgh.tmp.tsv").write_text("half")
    write_text(tmp_path / "x.tsv", "b\n")
    assert not list(tmp_path.glob(".x.tsv.*")) and (tmp_path / "x.tsv").read_text() == "b\n"


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C as in a terminal, whatever the test runner inherited."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _SignalledWhenCollected:
    """Sends a signal from its finaliser, where Python prints the handler's exception and goes on."""

    def __init__(self, signum):
        self.signum = signum

    def __del__(self):
        signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_python_could_not_raise_still_stops_the_output(tmp_path, capfd, monkeypatch, ctrl_c_raises,
                                                                signum, raised):
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # Python's, which prints
    went_on = False
    with pytest.raises(raised), stop_on_signals():
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "part.txt").write_text("x")
            _SignalledWhenCollected(signum)  # collected at once: the signal lands in its finaliser
            went_on = True
    assert went_on  # the block went on ...
    assert list(tmp_path.iterdir()) == []  # ... but nothing was published
    assert capfd.readouterr().err == ""  # and no traceback of the finaliser was printed
    with atomic_output_dir(tmp_path / "out") as tmp:  # the next command publishes as usual
        (tmp / "part.txt").write_text("x")
    assert (tmp_path / "out" / "part.txt").exists()


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_an_error_a_signal_caused_is_reported_as_the_signal(tmp_path, ctrl_c_raises, signum, raised):
    """Seen with Ctrl-C mid-plot: matplotlib's C code turned it into ValueError('Invalid bounding
    box'), which ``seq2exp`` reported as bad input (exit 2) instead of an interruption (130)."""
    with pytest.raises(raised) as caught, stop_on_signals():
        with atomic_output_dir(tmp_path / "out"):
            try:
                signal.raise_signal(signum)
            except (Terminated, KeyboardInterrupt):
                raise ValueError("Invalid bounding box") from None
    assert isinstance(caught.value.__context__, ValueError)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError), stop_on_signals():  # without a signal an error stays itself
        raise ValueError("bad input")


def test_stop_on_signals_restores_the_handlers_and_keeps_an_ignored_ctrl_c(ctrl_c_raises):
    term_before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell script's background job
    with stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not term_before
    assert signal.getsignal(signal.SIGTERM) is term_before
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ``seq2exp`` as run from a terminal, where Ctrl-C reaches it. A CI runner may start the tests as a
# shell script's background job, which inherits SIGINT ignored (and Python then keeps ignoring it),
# so the child takes Ctrl-C back before running the command. Not with ``preexec_fn``: Python code
# between fork and exec can deadlock in a process with threads (the xdist worker has several).
_AS_FROM_A_TERMINAL = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                       "from seq2exp_plugin.cli import main; sys.exit(main())")


def _start_predict(checkpoint, out: Path, workers: int) -> subprocess.Popen:
    genes = [f"SYNG{i:05d}" for i in range(1, 21)]
    return subprocess.Popen(
        [sys.executable, "-c", _AS_FROM_A_TERMINAL, "predict", str(checkpoint), "--out", str(out),
         "--genes", *genes, "--plots", "20", "--num-workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("signum, status, word, workers", [
    (signal.SIGTERM, 143, "terminated", 0),
    (signal.SIGINT, 130, "interrupted", 0),
    (signal.SIGTERM, 143, "terminated", 2),  # to every process, as a job scheduler does
    (signal.SIGINT, 130, "interrupted", 2),  # to every process, as a terminal does
])
def test_a_signal_mid_predict_removes_the_temporary_folder(tiny_checkpoint, tmp_path, signum, status, word,
                                                           workers):
    out = tmp_path / "pred"
    proc = _start_predict(tiny_checkpoint, out, workers)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".pred.*.tmp/plots/*.png")) and proc.poll() is None:
            assert time.monotonic() < deadline, "predict never started writing"
            time.sleep(0.05)
        assert proc.poll() is None, "predict finished before the signal: " + proc.communicate(timeout=60)[1][-2000:]
        os.killpg(proc.pid, signum)  # predict and its data workers
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.returncode is None:  # a failed test leaves no process behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == status, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert f"seq2exp predict: {word}" in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_output_not_its_hidden_temporary(tmp_path, monkeypatch):
    """A full disk or a refused folder is reported about the path the user gave."""
    import errno
    import tempfile

    from seq2exp_plugin.atomic import atomic_file

    out = tmp_path / "p"
    with pytest.raises(OSError) as err:
        with atomic_output_dir(out) as tmp:
            (tmp / "plots").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "plots" / "g.png"))
    assert str(err.value) == f"[Errno 28] No space left on device: '{out}/plots/g.png'"
    with pytest.raises(OSError) as err:
        with atomic_file(tmp_path / "x.tsv") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(err.value) == f"[Errno 28] No space left on device: '{tmp_path / 'x.tsv'}'"

    def refused(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}ab12cd34{suffix}"))

    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    with pytest.raises(PermissionError, match=rf"^\[Errno 13\] Permission denied: '{out}'$"):
        with atomic_output_dir(out):
            pass
    assert not list(tmp_path.glob(".*"))
