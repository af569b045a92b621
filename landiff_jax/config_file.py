"""Experiment files: `configs/<name>.py` defines `get_config()` returning a (frozen) dataclass,
and command-line `key=value` overrides replace fields, dotted for nested dataclasses
(`optimizer.learning_rate=3e-4`, `lm.layers=4`). Values are Python literals (`ast.literal_eval`);
a bare word that is not a literal is taken as a string (`data.path=/tmp/shards`). A value must fit
the kind of the field's current one (a whole number for an int, a number for a float, true or
false for a bool; a string field takes the text as written).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Sequence


class ConfigError(ValueError):
    """A config file or an override that cannot be used; the message is one line for the user."""


def load(path: str | Path, overrides: Sequence[str] = ()) -> Any:
    """Import `path`, call its `get_config()` and apply `overrides` (`key=value` strings)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_landiff_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a user's file: report it in one line
        raise ConfigError(f"{path}: cannot be imported: {type(e).__name__}: {e}") from e
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"{path}: defines no get_config() function")
    config = module.get_config()
    if not dataclasses.is_dataclass(config):
        raise ConfigError(f"{path}: get_config() must return a dataclass, got {type(config).__name__}")
    return apply_overrides(config, overrides, source=str(path))


def parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: Any, overrides: Sequence[str], source: str = "config") -> Any:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        config = _replace(config, key.split("."), value, key, source)
    return config


KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "a string"}


def _typed(old: Any, text: str, key: str) -> Any:
    """The override's text as a value of the kind of the field's current value `old`."""
    value = parse_value(text)
    kind = next((k for k in KINDS if isinstance(old, k)), None)  # (bool before int: True is an int)
    if kind is None or value is None:
        return value
    if kind is str:
        return value if isinstance(value, str) else text
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"override {key!r}: expected {KINDS[kind]} (as {old!r}), got {text!r}")
    return value


def _replace(node: Any, parts: list[str], value: Any, key: str, source: str) -> Any:
    if not dataclasses.is_dataclass(node):
        raise ConfigError(f"override {key!r}: {type(node).__name__} has no fields")
    names = {f.name for f in dataclasses.fields(node)}
    head = parts[0]
    if head not in names:
        raise ConfigError(f"override {key!r}: {source} has no field {head!r} "
                          f"(fields of {type(node).__name__}: {', '.join(sorted(names))})")
    if len(parts) > 1:
        value = _replace(getattr(node, head), parts[1:], value, key, source)
    else:
        value = _typed(getattr(node, head), value, key)
    try:
        return dataclasses.replace(node, **{head: value})
    except (TypeError, ValueError) as e:  # a config's own validation (__post_init__)
        raise ConfigError(f"override {key!r}: {e}") from e


def to_dict(config: Any) -> dict:
    """A resolved config as plain JSON-able data (for checkpoints and logs)."""
    return dataclasses.asdict(config)
