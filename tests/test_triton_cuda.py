"""On a machine with a CUDA GPU: the compiled Triton kernels against float64 on the CPU
(benchmarks/bench_gpu.py's check section, default tiles, several segments). Skipped without
a GPU, where the interpreter tests and the sm_90 compile check stand in for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_kernels_match_float64_on_the_gpu(tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, here
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--device",
                          "cuda", "--sections", "check", "--json", str(out)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    errors = json.loads(out.read_text())["check"]
    assert errors and max(errors.values()) <= 1e-5, errors
