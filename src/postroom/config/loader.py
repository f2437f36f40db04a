"""Strict conversion of parsed TOML into frozen config dataclasses.

Input: the dict that `tomllib` returns (untrusted: an operator's file). Output:
an instance of the schema class, or a `ConfigError` naming the exact key path
(`smtp.inbound.listen[2]`) and what was wrong. Unknown keys are errors, never
silently kept. Durations ("5m", "2h", "5d", or seconds) and sizes ("25MB",
"512KiB", or bytes) are parsed here, once, so the rest of the code only sees
numbers with their units in the field names.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Union

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$", re.I)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


class ConfigError(ValueError):
    """A config file problem: `source` the file, `line` where the key is written
    (when known), `path` the dotted key path, and what is wrong."""

    def __init__(
        self, path: str, message: str, source: str | None = None, line: int | None = None
    ) -> None:
        self.path = path
        self.message = message
        self.source = source
        self.line = line
        file = f"{source}:{line}" if source and line else source
        where = [part for part in (file, path) if part] or ["(top level)"]
        super().__init__(f"{': '.join(where)}: {message}")


class Duration(float):
    """Seconds, written in the file as a number or a string such as "5m"."""


class Size(int):
    """Bytes, written in the file as a number or a string such as "25MB"."""


def parse_duration(value: Any, path: str) -> Duration:
    if isinstance(value, bool):
        raise ConfigError(path, "expected a duration such as 30s, 5m, 1h or 5d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
    else:
        raise ConfigError(path, f"expected a duration such as 30s, 5m, 1h or 5d, got {value!r}")
    if seconds < 0:
        raise ConfigError(path, "a duration cannot be negative")
    return Duration(seconds)


def parse_size(value: Any, path: str) -> Size:
    if isinstance(value, bool):
        raise ConfigError(path, "expected a size such as 25MB or 512KiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = match.group(2).lower() if match.group(2) else None
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ConfigError(path, f"expected a size such as 25MB or 512KiB, got {value!r}")
    if size < 0:
        raise ConfigError(path, "a size cannot be negative")
    return Size(size)


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from `data`, checking every key against the schema."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a table, got {type(data).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        key_path = f"{path}.{key}" if path else key
        field_name = _field_name(cls, key)
        if field_name not in fields:
            known = ", ".join(sorted(_key_name(cls, name) for name in fields))
            raise ConfigError(key_path, f"unknown key (known keys here: {known})")
        values[field_name] = _convert(hints[field_name], raw, key_path)
    try:
        instance = cls(**values)
    except TypeError as error:  # a field without a default was not given
        missing = [
            _key_name(cls, f.name)
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        raise ConfigError(path, f"missing required key(s): {', '.join(missing)}") from error
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(path)
    return instance


def _field_name(cls: type, key: str) -> str:
    """TOML keys of a schema class may be renamed (e.g. `tls_listen`, `[[pool]]`)."""
    aliases: dict[str, str] = getattr(cls, "KEY_ALIASES", {})
    return aliases.get(key, key)


def _key_name(cls: type, field_name: str) -> str:
    aliases: dict[str, str] = getattr(cls, "KEY_ALIASES", {})
    for key, name in aliases.items():
        if name == field_name:
            return key
    return field_name


def _convert(hint: Any, raw: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Duration:
        return parse_duration(raw, path)
    if hint is Size:
        return parse_size(raw, path)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if raw is None and len(options) < len(typing.get_args(hint)):
            return None
        errors = []
        for option in options:
            try:
                return _convert(option, raw, path)
            except ConfigError as error:
                if error.path != path:  # the value had this option's shape: its error is exact
                    raise
                errors.append(error.message)
        raise ConfigError(path, " or ".join(errors))
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise ConfigError(path, f"expected a list, got {type(raw).__name__}")
        return tuple(_convert(item_hint, item, f"{path}[{i}]") for i, item in enumerate(raw))
    if dataclasses.is_dataclass(hint):
        return build(hint, raw, path)
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(path, f"expected true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(path, f"expected a whole number, got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(path, f"expected a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(path, f"expected a string, got {type(raw).__name__}")
        return raw
    raise ConfigError(path, f"unsupported schema type {hint!r}")  # a schema bug, not the file's
