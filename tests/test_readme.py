"""The README's Python blocks run as written (paths of a tiny trained run substituted)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    matches = [b for b in blocks if containing in b]
    assert len(matches) == 1, containing
    return matches[0]


def test_model_block_runs():
    scope: dict = {}
    exec(_block("Seq2ExpModel(preset(\"soft\"))"), scope)
    assert scope["out"].expression.shape == (2,) and scope["out"].mask.score.shape == (2, 4000)


def test_grelu_ism_block_runs_and_leaves_no_lightning_logs(tiny_checkpoint, tmp_path, monkeypatch):
    code = _block("ISM_predict(").replace("runs/x/checkpoints/best.ckpt", str(tiny_checkpoint))
    code = code.replace("GENE_ID", "SYNG00001").replace("end_pos=100", "end_pos=3")
    code = code.split("attr = attributions(")[0]  # DeepSHAP: covered by tests/test_ism.py, slow here
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)
    assert scope["ism"].shape == (4, 3)
    assert list(tmp_path.iterdir()) == []
