"""Write the texts that describe the code from the code, so that they cannot drift from it.

``python docs/generate.py`` rewrites, between their ``BEGIN generated: NAME`` and
``END generated: NAME`` marker lines:

- ``docs/training.md``: the configuration reference, from the dataclasses of
  ``train/config.py``, ``model/config.py`` and ``nn/config.py`` (field names, type hints as
  ``typed_config`` checks them, defaults, and each field's ``#:`` comment);
- ``README.md``: the command table (from ``seq2exp``'s argparse parser) and the presets table
  (each preset's settings as it differs from the paper's soft run, and its parameter count);
- ``model_zoo/Seq2Exp/model-template.yaml``: each entry's description, from its ``train.yaml``
  and the preset that file trains.

``python docs/generate.py --check`` writes nothing and exits 1 naming the stale files
(``tests/test_docs.py`` runs it). A script, not a package module: it edits files of the
repository, which an installed package does not have.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python docs/generate.py"

#: What each preset is and when to use it; the settings and sizes are read from the code.
PRESETS = {
    "learned": "the default of `seq2exp train` and of the model-zoo recipes, not the paper: a hard mask "
               "with a kept-share target, generator on DNA + signals times a learned power of the Hi-C "
               "contact, predictor on the kept positions. Use it to find elements and predict "
               "([why](docs/model.md#the-learned-preset))",
    "soft": "the paper's soft run (all defaults). Use it to reproduce the paper",
    "hard": "the paper's hard run (straight-through 0/1 mask), full-length predictor",
    "hard-packed": "`hard` with the predictor on the kept positions only (faster)",
    "public-soft": "the authors' public soft run, structure for structure (parity: docs/model.md)",
    "public-hard": "the authors' public hard run, less two defects of their code (docs/model.md)",
}

# ------------------------------------------------------------------------ dataclass fields


def field_notes(cls) -> dict[str, str]:
    """Each field's ``#:`` comment, read from the class's source.

    Args:
        cls: a dataclass.

    Returns:
        Field name -> its comment lines joined, reST markup as Markdown; "" when there is none.
    """
    lines, _ = inspect.getsourcelines(cls)
    body = ast.parse(textwrap.dedent("".join(lines))).body[0].body
    notes = {}
    for node in (n for n in body if isinstance(n, ast.AnnAssign)):
        comment, row = [], node.lineno - 2  # the line above, 0-based
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(comment))
        notes[node.target.id] = text.replace("``", "`")
    return notes


def type_text(hint: Any) -> str:
    """A type hint as the YAML value ``typed_config`` accepts for it (``float | null``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else type_text(a) for a in args)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(type_text(a) for a in args) + "]"
        return f"list of {type_text(args[0]) if args else 'any'}"
    if origin is dict or hint is dict:
        return "mapping" + (f" of {type_text(args[1])}" if args and args[1] is not Any else "")
    if hint is Any:
        return "any"
    return {bool: "true/false", int: "int", float: "float", str: "text"}[hint]


def value_text(value: Any) -> str:
    """A default as it would be written in the YAML file."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(value_text(v).strip("`") for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{value}`" if isinstance(value, int) else f"`{value:g}`"


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def config_table(cls, prefix: str, learned: Any = None) -> str:
    """One Markdown table of a configuration dataclass.

    Args:
        cls: the dataclass.
        prefix: the dotted key of its section (``train.``, ``model.mask.``).
        learned: the same section as the preset ``learned`` sets it: adds a column with the
            values that differ from the defaults.

    Returns:
        The table, one row per field; sections (nested dataclasses) are left to their own table.
    """
    hints, notes = typing.get_type_hints(cls), field_notes(cls)
    head = "| key | type | default |" + (" `learned` |" if learned is not None else "") + " what it is |"
    rows = [head, "|" + "---|" * head.count(" |")]
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            continue
        default = _default(field)
        cells = [f"`{prefix}{field.name}`", type_text(hints[field.name]), value_text(default)]
        if learned is not None:
            value = getattr(learned, field.name)
            cells.append(value_text(value) if value != default else "")
        cells.append(notes[field.name].replace("|", "\\|"))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def config_reference() -> str:
    """Every key of a run configuration, section by section, with the variants."""
    from seq2exp_plugin.model.config import MaskConfig, ScalingConfig, Seq2ExpConfig, preset
    from seq2exp_plugin.nn.config import StackConfig
    from seq2exp_plugin.train.config import VARIANTS, DataConfig, RunConfig, TrainConfig

    learned = preset("learned")
    variants = "\n".join(["| `variant` | what it trains |", "|---|---|"]
                         + [f"| `{name}` | {what} |" for name, what in VARIANTS.items()])
    sections = [
        ("The file", "", config_table(RunConfig, "")),
        ("`data`", "", config_table(DataConfig, "data.")),
        ("`train`", "", config_table(TrainConfig, "train.")),
        ("`model`", "Overrides of the preset's values (`model: {pool_width: 1000}`); the defaults "
         "are the paper's soft run.", config_table(Seq2ExpConfig, "model.", learned)),
        ("`model.mask`", "", config_table(MaskConfig, "model.mask.", learned.mask)),
        ("`model.generator`, `model.predictor`", "Each of the two Mamba stacks.",
         config_table(StackConfig, "model.generator.", learned.generator)),
        ("`model.scaling`", "Fitted by `seq2exp train` (`scaling: auto`) and stored in the "
         "checkpoint; not set by hand.", config_table(ScalingConfig, "model.scaling.")),
    ]
    parts = [f"Variants:\n\n{variants}"]
    parts += [f"#### {title}\n\n" + (f"{intro}\n\n" if intro else "") + table for title, intro, table in sections]
    return "\n\n".join(parts)


# --------------------------------------------------------------------- commands and presets


def command_table() -> str:
    """``seq2exp``'s subcommands: name, positional and required arguments (one of each required
    group), help line."""
    from seq2exp_plugin.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    rows = ["| command | what it does |", "|---|---|"]
    for name, parser in sub.choices.items():
        choices = {id(a): group for group in parser._mutually_exclusive_groups if group.required
                   for a in group._group_actions}
        needed = []
        for action in parser._actions:
            group = choices.get(id(action))
            if group is not None and action is group._group_actions[0]:
                needed.append("(" + " \\| ".join(_argument(a) for a in group._group_actions) + ")")
            elif group is None and (action.required or not action.option_strings):
                needed.append(f"[{_argument(action)}]" if action.nargs == "?" else _argument(action))
        rows.append(f"| `seq2exp {' '.join([name] + needed)}` | {helps[name]} |")
    return "\n".join(rows)


def _argument(action: argparse.Action) -> str:
    """An argument as its usage line writes it: ``--out OUT``, ``CONFIG``."""
    return " ".join(action.option_strings[-1:] + [action.metavar or action.dest.upper()])


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: ``{"mask": {"mode": "hard"}}`` -> ``{"mask.mode": "hard"}``."""
    out = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def preset_changes(name: str) -> list[str]:
    """The settings of preset ``name`` that differ from the paper's soft run, as ``key=value``."""
    from seq2exp_plugin.model.config import preset

    base, this = _flat(preset("soft").to_dict()), _flat(preset(name).to_dict())
    return [f"{key}={value_text(value).strip('`')}" for key, value in this.items() if value != base[key]]


def parameter_count(config) -> int:
    """Trainable and fixed parameters of a Seq2Exp model built from ``config``."""
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    return sum(p.numel() for p in Seq2ExpModel(config).parameters())


def preset_table() -> str:
    """The presets, one row each: what and when, settings, parameters at the default size."""
    from seq2exp_plugin.model.config import preset

    rows = ["| preset | what it is, when to use it | settings that differ from `soft` | parameters |",
            "|---|---|---|---|"]
    for name, what in PRESETS.items():
        changes = ", ".join(f"`{c}`" for c in preset_changes(name)) or "-"
        rows.append(f"| `{name}` | {what} | {changes} | {parameter_count(preset(name)):,} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------- model zoo


def zoo_entries(group: Path) -> str:
    """Jinja dictionaries ``summary`` and ``procedure`` (entry -> text) for model-template.yaml,
    from each entry's ``train.yaml`` and the preset it names."""
    import csv

    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.train.config import load_config

    with open(group / "models.tsv") as fh:
        entries = [row["model"] for row in csv.DictReader(fh, delimiter="\t")]
    summary, procedure = {}, {}
    for entry in entries:
        run = load_config(group / entry / "train.yaml")
        model, train = preset(run.preset, **run.model_overrides()), run.train
        mask = model.mask
        regulariser = (f"{mask.kl_weight:g} x the KL of the kept share to its target {mask.kept_target:g}"
                       if mask.kept_target is not None else
                       f"{mask.kl_weight:g} x the KL to Beta({mask.prior_alpha:g}, {mask.prior_beta:g}) per bp")
        changes = preset_changes(run.preset)
        overrides = [f"{key}={value_text(value).strip('`')}" for key, value in _flat(run.model).items()]
        summary[entry] = (f"Seq2Exp, preset {run.preset} ({PRESETS[run.preset].split('. ')[0]}; "
                          f"{parameter_count(model):,} parameters)")
        warmup = train.warmup_steps if train.warmup_steps is not None else train.max_steps // 10
        procedure[entry] = (
            f"seq2exp train {entry}/train.yaml: preset {run.preset}"
            + (f" ({', '.join(changes)} over the paper's soft run)" if changes else "")
            + (f", with {', '.join(overrides)}" if overrides else "")
            + f"; loss {train.loss} on log10(expression + 1) + {regulariser}; AdamW lr {train.lr:g} "
            f"(betas {train.betas[0]:g}/{train.betas[1]:g}, weight decay {train.weight_decay:g}), "
            f"{warmup:,} warm-up steps from {train.warmup_start_lr:g}, cosine to {train.min_lr:g} over "
            f"{train.max_steps:,} steps, batch {train.batch_size}, gradient clipping {train.grad_clip:g}, "
            f"seed {train.seed}; the checkpoint with the best validation MSE is kept")

    def jinja(name: str, texts: dict[str, str]) -> str:
        assert not any(c in t for t in texts.values() for c in '"\\{}'), "text breaks the Jinja literal"
        items = ",\n".join(f'  "{k}": "{v}"' for k, v in texts.items())
        return f"{{%- set {name} = {{\n{items}}} %}}"

    return jinja("summary", summary) + "\n" + jinja("procedure", procedure)


# -------------------------------------------------------------------------------- files


def blocks(root: Path = ROOT) -> dict[Path, dict[str, str]]:
    """Generated text of every block, by file and block name."""
    return {
        root / "README.md": {"commands": command_table(), "presets": preset_table()},
        root / "docs" / "training.md": {"config-reference": config_reference()},
        root / "model_zoo" / "Seq2Exp" / "model-template.yaml": {"entries": zoo_entries(root / "model_zoo" / "Seq2Exp")},
    }


def fill(text: str, name: str, content: str, where: Path) -> str:
    """``text`` with the lines between its ``BEGIN generated: name`` and ``END generated: name``
    marker lines replaced by ``content``."""
    lines = text.split("\n")
    begin = [i for i, line in enumerate(lines) if f"BEGIN generated: {name} " in line + " "]
    end = [i for i, line in enumerate(lines) if f"END generated: {name} " in line + " "]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise ValueError(f"{where}: needs one 'BEGIN generated: {name}' line and one 'END generated: {name}' after it")
    return "\n".join(lines[: begin[0] + 1] + content.split("\n") + lines[end[0]:])


def stale(root: Path = ROOT, write: bool = False) -> list[Path]:
    """The files whose generated blocks differ from what the code gives now.

    Args:
        root: the repository.
        write: rewrite those files.

    Returns:
        The stale files (before rewriting).
    """
    found = []
    for path, named in blocks(root).items():
        text = path.read_text()
        new = text
        for name, content in named.items():
            new = fill(new, name, content, path)
        if new != text:
            found.append(path)
            if write:
                path.write_text(new)
    return found


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))  # describe this checkout's code, whatever is installed
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    found = stale(write=not args.check)
    for path in found:
        print(f"{path.relative_to(ROOT)}: {'stale, regenerate with: ' + COMMAND if args.check else 'rewritten'}")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
