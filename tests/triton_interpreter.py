"""Import a module of Triton kernels whose kernels run under Triton's CPU interpreter.

Triton decides between compiling and interpreting when it is first imported and when a kernel
is decorated, from ``TRITON_INTERPRET``; ``conftest.py`` sets it before any test module loads
(pytest-xdist workers included). If something imported triton earlier without it, the kernels
cannot run on CPU tensors in this process: fail with that reason rather than a cryptic error.
"""

from __future__ import annotations

import importlib
import os

import pytest


def interpreted_module(name: str):
    """The module ``name`` (which has an ``interpreted()`` function), skipping without triton."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("TRITON_INTERPRET=1 must be set before triton is imported (tests/conftest.py)")
    pytest.importorskip("triton")
    module = importlib.import_module(name)
    if not module.interpreted():
        pytest.fail(f"{name} was imported before TRITON_INTERPRET=1 was set")
    return module
