"""Bad input reads as bad input (one line, exit 2); a bug in our code reads as a bug (its
traceback, a request to report it, exit 1) - in the ``seq2exp`` command and through Kipoi."""

from __future__ import annotations

import pytest

from seq2exp_plugin import errors
from seq2exp_plugin.cli import main


def _synth_raising(monkeypatch, exc: Exception) -> None:
    import seq2exp_plugin.data.synth as synth

    def generate(*args, **kwargs):
        raise exc

    monkeypatch.setattr(synth, "generate", generate)


def test_an_internal_error_shows_its_traceback_and_says_bug(monkeypatch, tmp_path, capsys):
    _synth_raising(monkeypatch, ValueError("index 7 out of range in our own code"))
    status = main(["synth", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" in err and "ValueError: index 7 out of range" in err
    assert "bug" in err.splitlines()[-1] and "report" in err.splitlines()[-1]


@pytest.mark.parametrize("exc", [errors.InputError("genes.tsv: column 'x' is not numeric"),
                                 errors.MissingInputError("genes.tsv: column 'x' missing"),
                                 FileNotFoundError("genes.tsv not found")])
def test_an_input_error_stays_one_line(monkeypatch, tmp_path, capsys, exc):
    _synth_raising(monkeypatch, exc)
    status = main(["synth", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("seq2exp synth: error: genes.tsv")
    assert "'genes.tsv" not in err  # no KeyError quoting


def test_seq2exp_debug_shows_the_traceback_of_an_input_error(monkeypatch, tmp_path, capsys):
    _synth_raising(monkeypatch, errors.InputError("genes.tsv: bad"))
    monkeypatch.setenv("SEQ2EXP_DEBUG", "1")
    assert main(["synth", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "seq2exp synth: error: genes.tsv: bad"


def test_input_errors_are_still_the_builtin_errors():
    """Library users' ``except ValueError`` / ``except KeyError`` keep working."""
    assert issubclass(errors.InputError, ValueError)
    assert issubclass(errors.MissingInputError, KeyError) and issubclass(errors.MissingInputError, ValueError)
    from seq2exp_plugin.typed_config import ConfigError

    assert issubclass(ConfigError, errors.InputError)


def test_kipoi_reports_input_errors_in_one_line_and_bugs_with_their_traceback(capsys):
    from seq2exp_plugin.adapters.kipoi_patches import _excepthook

    seen = []
    _excepthook(errors.InputError, errors.InputError("not a seq2exp checkpoint: x.cool"), None,
                _previous=lambda *a: seen.append(a))
    _excepthook(PermissionError, PermissionError("out.tsv: no permission"), None,
                _previous=lambda *a: seen.append(a))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("error: not a seq2exp checkpoint: x.cool") and len(lines) == 2
    assert seen == []
    bug = ValueError("internal")
    _excepthook(ValueError, bug, None, _previous=lambda *a: seen.append(a))
    assert seen == [(ValueError, bug, None)] and capsys.readouterr().err == ""
