"""Importing any module of the package changes nothing process-wide: no import hook
(``sys.meta_path``), no ``sys.excepthook``, no warning filter. Our entry points set what they
need for as long as they run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seq2exp_plugin"

#: Third-party libraries imported first: what they change when they load is not ours to test.
THIRD_PARTY = ("torch", "numpy", "pandas", "anndata", "pyBigWig", "pyfaidx", "cooler", "hictkpy",
               "h5py", "yaml", "matplotlib", "pytorch_lightning", "torchmetrics", "grelu.lightning",
               "grelu.model.models", "kipoi", "kipoi.writers", "kipoi.pipeline", "kipoi.cli.main")


def _modules() -> list[str]:
    """Every module, the package itself first."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


CHECK = """
import importlib, sys, warnings

def state():
    return list(sys.meta_path), sys.excepthook, list(warnings.filters)

changed = []
package, *modules = {modules!r}
for i, name in enumerate([package, *modules]):
    if i == 1:  # the package was imported alone (gReLU not loaded: the old hook went there)
        for other in {third_party!r}:
            try:
                importlib.import_module(other)
            except ImportError:
                pass
    before = state()
    try:
        importlib.import_module(name)
    except ImportError as err:  # an optional backend (triton) absent on this machine
        print("skipped", name, err)
        continue
    for what, a, b in zip(("sys.meta_path", "sys.excepthook", "warnings.filters"), before, state()):
        if a != b:
            changed.append(f"{{name}} changed {{what}}")
print("CHANGED", changed)
"""


def test_importing_every_module_changes_no_global_state(tmp_path):
    modules = _modules()
    assert "seq2exp_plugin.adapters.kipoi" in modules and len(modules) > 40
    code = CHECK.format(third_party=THIRD_PARTY, modules=modules)
    env = {**os.environ, "HOME": str(tmp_path)}  # kipoi writes its config under HOME
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env=env, cwd=PACKAGE.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CHANGED []" in res.stdout, res.stdout[-3000:]


def test_training_leaves_the_warning_filters_and_lightning_logging_as_they_were():
    import logging
    import warnings

    from seq2exp_plugin.train.metrics import expression_metrics
    from seq2exp_plugin.train.progress import _LIGHTNING_LOGS, quiet_lightning

    before = list(warnings.filters)
    expression_metrics()
    with quiet_lightning():
        assert len(warnings.filters) == len(before) + 2
        assert all(logging.getLogger(n).filters for n in _LIGHTNING_LOGS)
    assert warnings.filters == before
    assert not any(logging.getLogger(n).filters for n in _LIGHTNING_LOGS)
