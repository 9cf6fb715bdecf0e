"""Every bad input of tests/data/bad_inputs.tsv ends with one clear error line naming it.

Each row runs ``seq2exp`` in this process (``seq2exp_plugin.cli.main``) and checks: exit status
2, exactly one error line matching the row's ``message`` (which names the key, file or gene), nothing
else on stderr that looks like a traceback. Placeholders in ``argv``: ``{ckpt}`` a tiny trained
checkpoint, ``{good_cfg}`` a valid training config, ``{cfg}`` the row's own config, ``{tmp}`` a
fresh folder, ``{file}`` an existing file, ``{full}`` a non-empty folder, ``{world}`` the small
synthetic inputs of conftest's ``data_world`` (``{tracks}`` its --tracks item for K562,
``{expression}`` K562 expression, ``{tss_beyond}`` its TSS BED with a TSS past the end of chr2), ``{variants}`` a valid variant
table, and damaged checkpoints ``{empty_ckpt}``, ``{truncated_ckpt}``, ``{random_ckpt}``,
``{state_dict_ckpt}``, ``{foreign_ckpt}``, ``{text_ckpt}``.
"""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from seq2exp_plugin.cli import main

from conftest import write_train_config

TABLE = Path(__file__).parent / "data" / "bad_inputs.tsv"


def _cases() -> list[dict]:
    with open(TABLE) as fh:
        rows = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        return list(rows)


CASES = _cases()


@pytest.fixture(scope="module")
def places(tiny_synth, tiny_checkpoint, data_world, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad_inputs")
    good = write_train_config(tiny_synth, root / "good")
    (root / "afile.txt").write_text("a file\n")
    (root / "full").mkdir()
    (root / "full" / "keep.txt").write_text("user data\n")
    raw = Path(tiny_checkpoint).read_bytes()
    (root / "empty.ckpt").write_bytes(b"")
    (root / "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    (root / "random.ckpt").write_bytes(bytes(range(256)) * 64)
    (root / "text.ckpt").write_text("variant: seq2exp\n")
    state = torch.load(tiny_checkpoint, weights_only=True)
    torch.save(state["state_dict"], root / "state_dict.ckpt")
    torch.save({"state_dict": state["state_dict"], "hyper_parameters": {"lr": 1e-3}}, root / "foreign.ckpt")
    tss = data_world.tss_bed.read_text().replace("chr2\t18500\t18501", "chr2\t25000\t25001")
    (root / "tss_beyond.bed").write_text(tss)
    (root / "expression.tsv").write_text("gene_id\tK562\nG1\t10\nG2\t0\nG3\t99\nG4\t3.5\n")
    (root / "variants.tsv").write_text("chrom\tpos\tref\talt\nchr1\t10001\tA\tC\n")
    return {"root": root, "ckpt": str(tiny_checkpoint), "good_cfg": str(good), "file": str(root / "afile.txt"),
            "full": str(root / "full"), "world": str(data_world.root), "tss_beyond": str(root / "tss_beyond.bed"),
            "tracks": f"K562:dnase={data_world.dnase_bw},h3k27ac={data_world.h3k27ac_bw}",
            "variants": str(root / "variants.tsv"), "expression": str(root / "expression.tsv"),
            **{f"{n}_ckpt": str(root / f"{n}.ckpt") for n in ("empty", "truncated", "random", "text",
                                                              "state_dict", "foreign")}}


def _fill(text: str, values: dict) -> str:
    """``text`` with the ``{name}`` placeholders of ``values`` replaced (other braces kept)."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], m[0]), text)


def _set(config: dict, key: str, value) -> None:
    *sections, name = key.split(".")
    for part in sections:
        config = config.setdefault(part, {})
    config[name] = value


def test_the_table_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({c["case"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_input_gives_one_clear_error(case, places, tiny_synth, tmp_path, capsys):
    values = {**places, "tmp": str(tmp_path), "cfg": str(tmp_path / f"{case['case']}.yaml")}
    kind, _, spec = case["setup"].partition(" ")
    if kind == "config":
        config = yaml.safe_load(Path(places["good_cfg"]).read_text())
        config["out_dir"] = str(tmp_path / "run")
        key, _, value = spec.partition("=")
        _set(config, key, yaml.safe_load(_fill(value, values)))
        Path(values["cfg"]).write_text(yaml.safe_dump(config))
    elif kind == "yaml":
        Path(values["cfg"]).write_text(spec.replace("\\n", "\n"))
    argv = [_fill(a, values) for a in shlex.split(case["argv"])]
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own errors (option values)
        status = stop.code
    out, err = capsys.readouterr()
    assert status == 2, err[-3000:]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err[-3000:]
    assert re.search(case["message"], errors[0]), errors[0]
    assert errors[0].startswith(f"seq2exp {argv[0]}: error: ")
    assert "Traceback" not in out + err
    assert Path(places["full"], "keep.txt").read_text() == "user data\n"
    assert not list(tmp_path.glob(".*.tmp*"))
