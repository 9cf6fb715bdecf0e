"""benchmarks/bench_gpu.py runs end to end on the CPU (``--device cpu --tiny``): the check
made before any GPU time is spent. Its times are not looked at."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_tiny_cpu_run_reports_every_section(tmp_path, capsys):
    pytest.importorskip("triton")
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--tiny", "--repeats", "1", "--window", "512", "--json", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert len(result["check"]) == 2 * 9 + 2 * 4 and max(result["check"].values()) <= 1e-5
    assert result["machine"]["gemm_bf16_flops"] > 0 and result["machine"]["bandwidth_bytes"] > 0
    assert set(result["scan"]) == {f"{b}@{n}" for b in ("triton", "cpu", "torch") for n in (32, 96)}
    assert set(result["forward"]) == {"parameters", "batch1", "batch2"}
    train = result["train"]
    assert train["flops"] > 0 and train["bytes"] > 0 and 0 < train["achieved_fraction"]
    assert train["paper_recipe_hours"] > 0
    assert "paper recipe" in capsys.readouterr().out


def test_bench_gpu_times_the_default_training_preset_too(tmp_path):
    """``--preset learned`` (packed predictor, kept-share target) runs the model sections."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--tiny", "--repeats", "1", "--window", "512", "--sections", "forward,train",
            "--preset", "learned", "--json", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["preset"] == "learned" and set(result["forward"]) == {"parameters", "batch1", "batch2"}
    assert result["train"]["flops"] > 0 and result["train"]["step"]["seconds"] > 0
