"""``seq2exp demo`` (the README's main command) on the bundled Demo entry: its weights, trained
with the default preset by build_demo.py, show a mask that learned where the causal elements
are (issue 9's demo bars), and the outputs a user opens are written."""

from __future__ import annotations

import json

from seq2exp_plugin.discover.demo import run_demo


def test_demo_mask_finds_the_causal_elements_beyond_the_signals(tmp_path):
    recovery = run_demo(tmp_path / "demo", max_plots=2, progress=False)
    generator = recovery["generator"]
    assert generator["gain"] >= 0.10  # mask AUPRC over the signal-only ranking
    assert generator["causal_vs_decoy"] >= 0.80
    assert generator["kept_fraction"] <= 0.15
    assert recovery["Seq2Exp mask"]["auprc"] > recovery["DNase"]["auprc"]
    out = tmp_path / "demo"
    for name in ("expression.tsv", "mask.synthA.bw", "elements.synthA.bed", "recovery.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "recovery.json").read_text())["generator"]["gain"] == generator["gain"]
    assert len(list((out / "plots").glob("*.png"))) == 2
