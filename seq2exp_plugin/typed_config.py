"""Build a dataclass tree from a plain mapping (YAML), checking every key and value first.

The rules come from the dataclasses themselves - their field names and type hints - so a field
added to any configuration dataclass is validated without touching this module. Errors name the
dotted key (``model.generator.dmodel``, ``train.lr``) and what was expected; range checks stay
in each dataclass's ``__post_init__`` and are reported under the section's key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping, Sequence, Union

from .errors import InputError


class ConfigError(InputError):
    """A configuration entry with the wrong name, type or value; the message names its key."""


def build(cls, data: Any, where: str):
    """``cls(**data)`` with every key of ``data`` (recursively) checked against ``cls``'s fields
    and type hints; ``where`` is the dotted key of ``data`` (for messages)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'the configuration'}: expected a mapping of {cls.__name__} fields, "
                          f"got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{_key(where, unknown[0])}: unknown key; known keys"
                          f"{' of ' + where if where else ''}: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: convert(value, hints[name], _key(where, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type hint ``hint`` (numbers from strings such as ``5e-4``,
    which YAML reads as text, are converted); raises :class:`ConfigError` naming ``key``."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, key)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[1])
        raise ConfigError(f"{key}: {' or '.join(errors)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return origin(convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping (name: value), got {_show(value)}")
        key_hint, value_hint = args or (Any, Any)
        return {convert(k, key_hint, f"{key} key"): convert(v, value_hint, _key(key, k)) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        number = _number(value)
        if number is None or number != int(number):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        return int(number)
    if hint is float:
        number = _number(value)
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {_show(value)}")
        return value
    raise TypeError(f"{key}: no rule for the type hint {hint!r}")  # a programming error


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _key(where: str, name: Any) -> str:
    return f"{where}.{name}" if where else str(name)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``key.sub=value`` pairs (``--set``, ``--data``; values parsed as YAML: numbers, booleans,
    lists)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set expects key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def set_entries(raw: dict[str, Any], entries: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` (a run configuration's mapping) with each dotted ``section.key`` of ``entries``
    set, sections made as needed; ``where`` names the configuration in the error raised when a
    section is not a mapping."""
    for key, value in entries.items():
        section, _, name = key.rpartition(".")
        target = raw
        for part in filter(None, section.split(".")):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise InputError(f"{where}: {key}: {part} is not a section (a mapping)")
        target[name] = value
    return raw
