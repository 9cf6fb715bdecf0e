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


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_no_bundled_checkpoint_stores_an_absolute_path():
    """Bundled checkpoints work from any copy of the repository: their data paths are relative
    to their folder, and no other string names a place on the machine that built them."""
    import os
    from pathlib import Path

    import torch

    zoo = Path(__file__).resolve().parents[1] / "model_zoo"
    checkpoints = sorted(zoo.rglob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        absolute = [s for s in _strings(checkpoint) if os.path.isabs(s) or s.startswith("~")]
        assert not absolute, f"{path}: {absolute[:3]}"


def test_a_copy_of_the_demo_elsewhere_reads_its_own_data(tmp_path):
    """The Demo checkpoint's data come from the folder it lies in (what `seq2exp ism` and
    `seq2exp predict` read without --data), so a copy at another path reads the copy."""
    import shutil
    from pathlib import Path

    from seq2exp_plugin.train.evaluate import load_run

    demo = Path(__file__).resolve().parents[1] / "model_zoo" / "Seq2Exp" / "Demo"
    copy = tmp_path / "Demo"
    shutil.copytree(demo, copy)
    _, run = load_run(str(copy / "best.ckpt"))
    assert run.data.genes == str(copy / "data" / "genes.h5ad")
    assert run.data.blacklist == str(copy / "data" / "blacklist.bed")
    assert set(run.data.signals.values()) == {str(copy / "data" / "synthA" / f"{name}")
                                              for name in ("h3k27ac.bw", "dnase.bw", "hic.cool")}
