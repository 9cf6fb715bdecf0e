"""What seq2exp-plugin changes in kipoi 0.8.6, and the errors its Kipoi entries raise.

Writer shim (:func:`apply_writer_compat`, applied when this module is imported): kipoi 0.8.6's
``kipoi.writers`` under numpy 2 -

- HDF5 (and zarr) output crashes on ``np.string_`` / ``np.unicode_`` (removed in numpy 2.0):
  ``kipoi.writers`` gets a view of numpy that adds the two aliases (``np.bytes_``, ``np.str_``);
  numpy itself is untouched;
- BED output always fails: ``get_writer`` passes ``dataloader_schema=`` to ``BedBatchWriter``,
  whose parameter is ``metadata_schema``;
- TSV (and BED) output fails when the model sets ``writers: {hdf5_chunk_size: N}`` (or when
  ``kipoi test -o`` passes ``keep_metadata``): ``get_writer`` forwards those options to writers
  that take none.

``get_writer`` is wrapped so the TSV and BED writers get only the arguments they accept, under
their real names; every other suffix goes to the original. The wrapped writers check ``-o``
first (not a folder, in a writable folder) and write a temporary file that becomes ``-o`` when
kipoi closes the writer, so a failed run (a window of the wrong length...) leaves no empty or
partial output. ``kipoi.pipeline.validate_kwargs`` is wrapped so that an unknown argument of a
dataloader marked ``strict_arguments`` (ours) is an error rather than kipoi's warning. One more fix, for ``kipoi test``:
its comparison with ``test.expect`` (``kipoi.cli.main.compare_numpy_dict``) stops after the first
output (it takes ``np.testing.assert_almost_equal``'s ``None`` for "different" and prints
``false for key = ...``), so the mask was never checked; it is replaced by one that checks every
output. Each patch checks for an existing patch first (idempotent); the numpy view is skipped
where numpy still has the aliases (numpy < 2).

Errors for users (missing weights, a window of the wrong length, unreadable inputs) are
:class:`Seq2ExpKipoiError`, or the package's :data:`~seq2exp_plugin.errors.USER_ERRORS` (a
damaged checkpoint, an unwritable ``-o``); :func:`install_excepthook` prints an uncaught one as
``<program>: error: <message>`` without a traceback and hands every other exception (a bug) to
the previous hook, so ``kipoi predict`` fails with the message alone. Kipoi's entry points (the
model group's ``seq2exp_kipoi.py`` and the dataloader) install it; importing this module does not.
"""

from __future__ import annotations

import atexit
import os
import sys
import types
from pathlib import Path
from typing import Mapping

import numpy as np

from ..atomic import check_writable_file, publish, temporary_beside
from ..errors import USER_ERRORS

__all__ = [
    "Seq2ExpKipoiError",
    "MissingWeightsError",
    "InputMismatchError",
    "DataLoaderInputError",
    "OutputPathError",
    "apply_writer_compat",
    "install_excepthook",
]

#: Set on every object the shim installs (how a second call knows it has nothing to do).
_COMPAT_FLAG = "_seq2exp_compat"


# ----------------------------------------------------------------------------------- errors
class Seq2ExpKipoiError(Exception):
    """A user-facing error of the Kipoi entries; the CLI prints its message without a traceback."""

    def __str__(self) -> str:  # KeyError-style quoting never applies
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(Seq2ExpKipoiError, FileNotFoundError):
    """No checkpoint for a Kipoi entry (or the one named does not exist)."""


class InputMismatchError(Seq2ExpKipoiError, ValueError):
    """Dataloader output that does not fit the checkpoint (window length, signal channels)."""


class DataLoaderInputError(Seq2ExpKipoiError, ValueError):
    """A dataloader argument that cannot be used (missing file, unknown gene or cell type)."""


class OutputPathError(Seq2ExpKipoiError, OSError):
    """An output file (``-o``) that cannot be written: a folder, or in a folder that is not writable."""


def _excepthook(exc_type, exc, tb, _previous=None):
    if isinstance(exc, (Seq2ExpKipoiError, *USER_ERRORS)):
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return
    (_previous or sys.__excepthook__)(exc_type, exc, tb)


def install_excepthook() -> None:
    """Report user errors uncaught in this process in one line (see the module docstring); for
    Kipoi's entry points, which run inside ``kipoi``'s own command."""
    current = sys.excepthook
    if getattr(current, _COMPAT_FLAG, False):
        return

    def hook(exc_type, exc, tb):
        _excepthook(exc_type, exc, tb, _previous=current)

    setattr(hook, _COMPAT_FLAG, True)
    sys.excepthook = hook


# ------------------------------------------------------------------------------ writer shim
class _NumpyWithRemovedAliases(types.ModuleType):
    """numpy as ``kipoi.writers`` sees it: every attribute of numpy, plus ``string_`` and
    ``unicode_`` (removed in numpy 2.0) as ``bytes_`` and ``str_``."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.string_ = np.bytes_
        self.unicode_ = np.str_
        setattr(self, _COMPAT_FLAG, True)

    def __getattr__(self, name: str):
        return getattr(np, name)


def _numpy_needs_aliases() -> bool:
    return not hasattr(np, "string_") or not hasattr(np, "unicode_")


def apply_writer_compat() -> dict[str, bool]:
    """Fix kipoi 0.8.6's writers under numpy 2 (see the module docstring); idempotent.

    Returns which patches this call applied: ``{"numpy_aliases": ..., "get_writer": ...,
    "test_compare": ..., "dataloader_args": ...}`` (all False on a second call)."""
    from kipoi import writers

    applied = {"numpy_aliases": False, "get_writer": False, "test_compare": False, "dataloader_args": False}
    if _numpy_needs_aliases() and not getattr(writers.np, _COMPAT_FLAG, False):
        writers.np = _NumpyWithRemovedAliases()
        applied["numpy_aliases"] = True

    original = writers.get_writer
    if not getattr(original, _COMPAT_FLAG, False):

        def build(output_file, metadata_schema=None, **kwargs):
            ending = str(output_file).split(".")[-1]
            if ending == "tsv":
                return writers.TsvBatchWriter(file_path=output_file, nested_sep="/")
            if ending == "bed":
                if metadata_schema is None:
                    raise ValueError("metadata_schema needs to be specified for BedBatchWriter")
                return writers.BedBatchWriter(file_path=output_file, metadata_schema=metadata_schema,
                                              header=True)
            return original(output_file, metadata_schema, **kwargs)

        def get_writer(output_file, metadata_schema=None, **kwargs):
            """kipoi.writers.get_writer, with TSV/BED writers built from the arguments they take
            (the original passes HDF5/``kipoi test`` options to them, and ``dataloader_schema=``
            to ``BedBatchWriter``, whose parameter is ``metadata_schema``), writing to a
            temporary file that becomes ``output_file`` when the writer is closed."""
            target = Path(output_file)
            try:
                check_writable_file(target, "output file (-o)")
            except OSError as err:
                raise OutputPathError(str(err)) from None
            tmp = temporary_beside(target)
            _PENDING_OUTPUTS.add(tmp)
            writer = build(str(tmp), metadata_schema, **kwargs)
            close = writer.close

            def close_and_publish():
                close()
                publish(tmp, target)
                _PENDING_OUTPUTS.discard(tmp)

            writer.close = close_and_publish
            return writer

        get_writer.__wrapped__ = original
        setattr(get_writer, _COMPAT_FLAG, True)
        writers.get_writer = get_writer
        applied["get_writer"] = True

    from kipoi.cli import main as cli_main

    if not getattr(cli_main.compare_numpy_dict, _COMPAT_FLAG, False):
        cli_main.compare_numpy_dict = _compare_numpy_dict
        applied["test_compare"] = True

    import kipoi.pipeline

    validate = kipoi.pipeline.validate_kwargs
    if not getattr(validate, _COMPAT_FLAG, False):

        def validate_kwargs(dataloader, dataloader_kwargs):
            """kipoi's check, with unknown arguments of a Seq2Exp dataloader an error (kipoi
            only warns, and a misspelt file argument then falls back to a bundled default)."""
            if getattr(dataloader, "strict_arguments", False) and isinstance(dataloader_kwargs, dict):
                unknown = sorted(set(dataloader_kwargs) - set(dataloader.args))
                if unknown:
                    raise DataLoaderInputError(
                        f"unknown dataloader argument(s) {unknown}; the arguments are {sorted(dataloader.args)}")
            return validate(dataloader, dataloader_kwargs)

        setattr(validate_kwargs, _COMPAT_FLAG, True)
        kipoi.pipeline.validate_kwargs = validate_kwargs
        applied["dataloader_args"] = True
    return applied


#: Temporary outputs of writers not closed yet: removed when the process exits (a failed
#: ``kipoi predict`` leaves no empty or partial output file).
_PENDING_OUTPUTS: set[Path] = set()


@atexit.register
def _remove_pending_outputs() -> None:
    for tmp in list(_PENDING_OUTPUTS):
        tmp.unlink(missing_ok=True)
    _PENDING_OUTPUTS.clear()


def _compare_numpy_dict(a, b, exact: bool = True, decimal: int = 7) -> bool:
    """What ``kipoi test`` uses to check predictions against ``test.expect``, checking every
    output: kipoi_utils' version returns the (always None) result of
    ``np.testing.assert_almost_equal`` as "not equal", so it stops after the first key and
    prints "false for key = ...". Raises AssertionError on a mismatch (``kipoi test`` reports it
    and exits 1), returns True otherwise."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            raise AssertionError(f"outputs differ: {sorted(a)} vs expected {sorted(b)}")
        for key in a:
            try:
                _compare_numpy_dict(a[key], b[key], exact, decimal)
            except AssertionError as err:
                raise AssertionError(f"output {key!r}: {err}") from None
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            raise AssertionError(f"{len(a)} outputs vs {len(b)} expected")
        for x, y in zip(a, b):
            _compare_numpy_dict(x, y, exact, decimal)
        return True
    if a is None and b is None:
        return True
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_almost_equal(a, b, decimal=decimal)
    return True


setattr(_compare_numpy_dict, _COMPAT_FLAG, True)
