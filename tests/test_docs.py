"""The texts generated from the code (docs/generate.py) match the code, and the generator sees drift."""

from __future__ import annotations

import dataclasses
import re
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)


def test_committed_texts_match_what_the_generator_writes_now():
    stale = [str(p.relative_to(ROOT)) for p in generate.stale(ROOT)]
    assert stale == [], f"generated text out of date in {stale}: run `{generate.COMMAND}` and commit the result"


def test_check_mode_reports_a_stale_block(tmp_path):
    text = "intro\n<!-- BEGIN generated: t -->\nold\n<!-- END generated: t -->\nend"
    assert generate.fill(text, "t", "new\nlines", tmp_path) == (
        "intro\n<!-- BEGIN generated: t -->\nnew\nlines\n<!-- END generated: t -->\nend")
    assert generate.fill(text, "t", "old", tmp_path) == text
    with pytest.raises(ValueError, match="BEGIN generated: other"):
        generate.fill(text, "other", "x", tmp_path)


@dataclasses.dataclass
class _Example:
    #: First line
    #: and its second, ``code`` and :func:`f`.
    first: int = 1
    second: str | None = None


def test_field_notes_are_the_comment_lines_above_each_field():
    assert generate.field_notes(_Example) == {"first": "First line and its second, `code` and `f`.", "second": ""}
    table = generate.config_table(_Example, "x.")
    assert "| `x.first` | int | `1` | First line" in table
    assert "| `x.second` | text \\| null | `null` |  |" in table


def test_reference_lists_every_key_of_every_section():
    from seq2exp_plugin.model.config import MaskConfig
    from seq2exp_plugin.train.config import TrainConfig

    text = (ROOT / "docs" / "training.md").read_text()
    for cls, prefix in ((TrainConfig, "train."), (MaskConfig, "model.mask.")):
        for field in dataclasses.fields(cls):
            assert f"| `{prefix}{field.name}` |" in text


def test_zoo_entries_describe_the_preset_and_recipe_each_entry_trains():
    """Rendered as Kipoi renders the group: one entry per models.tsv row."""
    import csv

    import jinja2

    from seq2exp_plugin.train.config import load_config

    group = ROOT / "model_zoo" / "Seq2Exp"
    template = jinja2.Template((group / "model-template.yaml").read_text())
    with open(group / "models.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        info = yaml.safe_load(template.render(**row))["info"]
        run = load_config(group / row["model"] / "train.yaml")
        assert info["training_procedure"].startswith(f"seq2exp train {row['model']}/train.yaml: preset {run.preset}")
        assert f"over {run.train.max_steps:,} steps, batch {run.train.batch_size}" in info["training_procedure"]
        assert f"preset {run.preset}" in info["doc"]


def _slug(heading: str) -> str:
    """A Markdown heading's anchor as GitHub writes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", "docs/model.md", "docs/data.md", "docs/training.md",
                                  "docs/gpu.md", "benchmarks/README.md", "model_zoo/Seq2Exp/README.md"])
def test_links_between_pages_reach_a_file_and_a_heading(page):
    path = ROOT / page
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith("http"):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{page}: {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page}: {target}"


def test_readme_is_a_guide_of_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
