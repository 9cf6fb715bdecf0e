"""Configuration checking derived from dataclass fields and type hints (seq2exp_plugin.typed_config)."""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from seq2exp_plugin.typed_config import ConfigError, build


@dataclass
class Inner:
    k: int = 3
    mode: Literal["a", "b"] = "a"


@dataclass
class Section:
    """Stands for a section another module adds fields to: every field is checked by its hint."""

    rate: float = 0.1
    steps: int = 10
    names: tuple[str, ...] = ()
    pair: tuple[float, float] = (0.0, 1.0)
    folds: dict[str, list[str]] = field(default_factory=dict)
    maybe: int | None = None
    either: int | str = 1
    flag: bool = False
    free: dict[str, Any] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def test_values_are_converted_by_their_hints():
    got = build(Section, {"rate": "5e-4", "steps": 2.0, "names": ["x"], "pair": [1, 2],
                          "folds": {"a": ["chr1"]}, "maybe": None, "either": "auto", "flag": True,
                          "free": {"anything": [1]}, "inner": {"k": 4, "mode": "b"}}, "train")
    assert got == Section(5e-4, 2, ("x",), (1.0, 2.0), {"a": ["chr1"]}, None, "auto", True,
                          {"anything": [1]}, Inner(4, "b"))
    assert isinstance(got.steps, int) and isinstance(got.pair[0], float)


@pytest.mark.parametrize("data, message", [
    ({"rat": 1}, r"^train.rat: unknown key; known keys of train: \['either', 'flag'"),
    ({"rate": "fast"}, r"^train.rate: expected a number, got 'fast'$"),
    ({"rate": float("nan")}, r"^train.rate: expected a number"),
    ({"steps": "many"}, r"^train.steps: expected an integer, got 'many'$"),
    ({"steps": 2.5}, r"^train.steps: expected an integer, got 2.5$"),
    ({"steps": True}, r"^train.steps: expected an integer, got True$"),
    ({"names": "x"}, r"^train.names: expected a list, got 'x'$"),
    ({"names": [1]}, r"^train.names\[0\]: expected text, got 1$"),
    ({"pair": [1]}, r"^train.pair: expected 2 values, got 1$"),
    ({"folds": [1]}, r"^train.folds: expected a mapping"),
    ({"folds": {"a": "chr1"}}, r"^train.folds.a: expected a list, got 'chr1'$"),
    ({"maybe": "x"}, r"^train.maybe: expected an integer, got 'x'$"),
    ({"either": [1]}, r"^train.either: expected an integer, got \[1\] or expected text, got \[1\]$"),
    ({"flag": "yes please"}, r"^train.flag: expected true or false"),
    ({"inner": {"k": "x"}}, r"^train.inner.k: expected an integer"),
    ({"inner": {"mode": "c"}}, r"^train.inner.mode: expected one of \['a', 'b'\], got 'c'$"),
    ({"inner": {"j": 1}}, r"^train.inner.j: unknown key"),
    ({"inner": 5}, r"^train.inner: expected a mapping of Inner fields, got 5$"),
    ({"steps": 0}, r"^train: steps must be >= 1$"),
])
def test_every_bad_entry_is_named(data, message):
    with pytest.raises(ConfigError, match=message):
        build(Section, data, "train")


def test_hic_and_cnn_sections_are_typed_and_stored_as_given():
    """``data.hic`` / ``cnn`` options are checked like every section, and stored as written
    (``{}`` stays ``{}``), so configurations and checkpoints of earlier runs read the same."""
    from seq2exp_plugin.train.config import CnnConfig, HicConfig, RunConfig, given

    run = RunConfig.from_dict({"data": {"hic": {"normalization": "VC", "resolution": "5000"}},
                               "cnn": {"channels": 8}})
    assert run.data.hic == HicConfig(normalization="VC", resolution=5000) and run.cnn == CnnConfig(channels=8)
    assert run.to_dict()["data"]["hic"] == {"normalization": "VC", "resolution": 5000}
    assert run.to_dict()["cnn"] == {"channels": 8} and given(RunConfig().data.hic) == {}
    assert RunConfig.from_dict(run.to_dict()) == run
    with pytest.raises(ConfigError, match=r"^data.hic.normalisation: unknown key"):
        RunConfig.from_dict({"data": {"hic": {"normalisation": "VC"}}})
    with pytest.raises(ConfigError, match=r"^data.hic: powerlaw_gamma and pseudocount must be >= 0"):
        RunConfig.from_dict({"data": {"hic": {"pseudocount": -1}}})


def test_hic_options_reach_the_reader_and_cnn_options_the_model():
    import inspect

    from seq2exp_plugin.data.hic import HiCContacts
    from seq2exp_plugin.model.baselines import HierarchicalCNN
    from seq2exp_plugin.train.config import CnnConfig, HicConfig

    reader = set(inspect.signature(HiCContacts).parameters) - {"path", "allow_missing_chroms"}
    # the model configuration gives the rest (n_outputs: model.celltype_head)
    model = set(inspect.signature(HierarchicalCNN).parameters) - {"n_signals", "window", "n_features", "scaling",
                                                                  "n_outputs"}
    assert {f.name for f in dataclasses.fields(HicConfig)} == reader
    assert {f.name for f in dataclasses.fields(CnnConfig)} == model
