"""Loading the TOML config file into the typed `Config` (see schema.py).

`load_config(path)` reads the file once; errors are `ConfigError`s naming the
file and the key path. `default_config_path()` honours POSTROOM_CONFIG.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from postroom.config.loader import ConfigError, build
from postroom.config.locate import locate_key
from postroom.config.schema import Config

DEFAULT_CONFIG_PATH = "/etc/postroom/postroom.toml"

__all__ = ["Config", "ConfigError", "default_config_path", "load_config", "parse_config"]


def default_config_path() -> str:
    return os.environ.get("POSTROOM_CONFIG", DEFAULT_CONFIG_PATH)


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("", f"not valid TOML: {error}", source) from None
    try:
        return build(Config, data)
    except ConfigError as error:
        line = locate_key(text, error.path)
        raise ConfigError(error.path, error.message, source, line) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError("", f"cannot read: {error.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("", "not UTF-8 text", str(path)) from None
    return parse_config(text, str(path))
