"""benchmarks/discovery.py and benchmarks/mask_gradient.py run end to end on a few genes and
steps: every table the issue asks for is written. The numbers themselves are not looked at
(two training steps learn nothing); benchmarks/README.md's come from full runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import load_benchmark


def test_discovery_and_mask_gradient_run_on_a_small_case(tmp_path):
    out = tmp_path / "discovery"
    args = ["--out", str(out), "--quick", "--genes", "40", "--steps", "2", "--batch-size", "2",
            "--d-model", "8", "--layers", "1", "--variants", "seq2exp-learned", "seq-signals", "ridge"]
    assert load_benchmark("discovery").main(args) == 0
    result = json.loads((out / "results.json").read_text())
    (seed,) = result["per_seed"].values()
    assert set(seed["expression"]) == {"seq2exp-learned", "seq-signals", "ridge"}
    generator = seed["generators"]["seq2exp-learned"]
    for key in ("auprc", "auprc_signal", "auprc_sequence", "gain", "causal_vs_decoy", "kept_fraction"):
        assert np.isfinite(generator[key]), key
    assert generator["gain"] == generator["auprc"] - generator["auprc_signal"]
    assert {"signal Beta mean", "signal Beta odds x Hi-C", "hic"} <= set(result["ceilings"])
    assert (out / "results.md").is_file() and (out / "recovery.png").is_file()
    assert {"Seq2Exp-learned", "distance", "DNase", "H3K27ac", "ABC-like"} == set(seed["links"])
    assert "## Enhancer-gene links against the synthetic CRISPR truth" in (out / "results.md").read_text()

    checkpoint = out / "seed0" / "runs" / "seq2exp-learned" / "checkpoints" / "best.ckpt"
    report = load_benchmark("mask_gradient").main([str(checkpoint), "--synth", str(out / "synth"), "--max-genes", "8"])
    assert set(report["classes"]) == {"causal", "decoy", "background"}
    for row in report["classes"].values():
        assert row["abs"] >= abs(row["mean"]) and -1 <= row["ratio"] <= 1


def test_mamba_baselines_pool_as_seq2exp_learned_unless_told_not_to():
    discovery = load_benchmark("discovery")
    manifest = {"genes": {"table": "g.h5ad"}, "genome": {"fasta": "g.fa"}, "blacklist": None,
                "tracks": {"synthA": {s: f"{s}.bw" for s in discovery.SIGNALS}}}

    def model(variant, *flags):
        args = discovery.parse_args(["--out", "x", *flags])
        return discovery.run_config(args, manifest, "synthA", variant, Path("x"), Path("p"), 0)["model"]

    assert model("seq-signals")["kept_pool"] and model("peak-mask")["kept_pool"]
    assert "kept_pool" not in model("seq2exp-soft")  # the paper's run stays the paper's
    assert "kept_pool" not in model("seq-signals", "--no-kept-pool")
    from seq2exp_plugin.model.config import preset

    assert preset("learned").kept_pool and not preset("soft").kept_pool


def test_links_quick_sets_the_links_comparison_unless_told_otherwise():
    import pytest

    discovery = load_benchmark("discovery")
    args = discovery.parse_args(["--links-quick"])
    assert args.variants == ["seq2exp-learned", "seq2exp-soft", "peak-mask"] and args.seeds == [0, 1, 2]
    assert (args.d_model, args.layers, args.steps) == (16, 1, 100)
    args = discovery.parse_args(["--links-quick", "--steps", "300", "--variants", "seq2exp-learned"])
    assert (args.steps, args.variants, args.d_model) == (300, ["seq2exp-learned"], 16)
    with pytest.raises(SystemExit):
        discovery.parse_args(["--links-quick", "--quick"])
