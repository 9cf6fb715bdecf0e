"""benchmarks/bench_gpu.py runs end to end on the CPU (``--device cpu --tiny``): the check
made before any GPU time is spent. Its times are not looked at."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


def test_bench_gpu_tiny_cpu_run_reports_every_section(tmp_path, capsys):
    pytest.importorskip("triton")
    bench = load_benchmark("bench_gpu")
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
    bench = load_benchmark("bench_gpu")
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--tiny", "--repeats", "1", "--window", "512", "--sections", "forward,train",
            "--preset", "learned", "--json", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["preset"] == "learned" and set(result["forward"]) == {"parameters", "batch1", "batch2"}
    assert result["train"]["flops"] > 0 and result["train"]["step"]["seconds"] > 0
    assert result["train"]["kept_share"] is not None and result["forward"]["batch1"]["kept_share"]


def test_bench_gpu_times_a_learned_model_at_its_kept_share_target():
    """An untrained learned model keeps most positions; the benchmark moves the generator bias
    until the eval mask keeps the preset's target, as the first training steps do."""
    import torch

    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    bench = load_benchmark("bench_gpu")
    tiny = {"d_model": 8, "n_layers": 1, "d_state": 4}
    torch.manual_seed(0)
    model = Seq2ExpModel(preset("learned", generator=tiny, predictor=tiny, pool_width=100,
                                mask={"promoter_keep": 100})).train()
    seq, signals, _, _ = bench.model_batch(2, 4000, model.config.n_signals, "cpu")
    with torch.no_grad():
        assert float((model.generator.eval()(seq, signals).mask > 0.5).float().mean()) > 0.5
    model.train()
    kept = bench.match_kept_target(model, seq, signals)
    assert kept == pytest.approx(0.08, abs=0.01) and model.training
    assert bench.match_kept_target(Seq2ExpModel(preset("soft", generator=tiny, predictor=tiny)),
                                   seq, signals) is None
