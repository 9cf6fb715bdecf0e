"""The Triton kernels compile for an sm_90 GPU (H100/H200) and keep their state in registers.

No GPU is needed: triton compiles to a cubin with the ptxas it ships. A subprocess without
TRITON_INTERPRET does it (this test process interprets the kernels; see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_kernels_compile_for_sm90_without_register_spills():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    run = subprocess.run([sys.executable, str(HERE / "triton_compile_sm90.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(report) == 11
    spilled = {name: usage for name, usage in report.items() if usage["stack"] > 0}
    assert not spilled, f"register spills: {spilled}"
