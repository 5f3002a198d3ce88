"""YAML with line numbers: mappings remember the line of each key, so every config error
names the file and line (`where`, `line_of`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from shared.errors import ConfigError


class _Mapping(dict):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are `_Mapping`s and which refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable) or key in mapping:
            problem = "unhashable key" if not isinstance(key, Hashable) else f"duplicate key {key!r}"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def line_of(mapping: Any, key: str | None = None) -> int | None:
    """The 1-based line a mapping (or one of its keys) came from in YAML, if known."""
    if key is not None and key in getattr(mapping, "key_lines", {}):
        return mapping.key_lines[key]
    return getattr(mapping, "line", None)


def where(source: str, line: int | None) -> str:
    """ "config.yml line 7" or just "config.yml"."""
    return f"{source} line {line}" if line else source


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from exc


def load_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file ({} when empty)."""
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise ConfigError(f"{where(str(path), mark.line + 1 if mark else None)}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if data is None:
        return _Mapping()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, not {type(data).__name__}")
    return data


def type_name(value: Any) -> str:
    """A YAML-ish name for a value's type, for error messages."""
    return "mapping" if isinstance(value, Mapping) else type(value).__name__


def type_error(path: Path, data: Mapping, key: str, expected: str) -> ConfigError:
    got = type_name(data[key])
    return ConfigError(f"{where(str(path), line_of(data, key))}: {key} must be {expected}, not {got}")
