"""Fixtures of the CLI unit tests: a config under tmp_path and `run(*args)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.cli.running import run_cli, write_config

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def run(config: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """`run(*args)` → (exit status, stdout, stderr) of `postroom -c CONFIG ARGS`."""
    return lambda *args: run_cli(config, capsys, *args)
