"""Running the CLI in-process for unit tests: a config file under a temporary
directory, and `main` with its exit status, stdout and stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.cli.main import main

# No test may reach a real name server: nothing listens on port 9 of the loopback, and
# a short timeout keeps the lookups that wait for an answer from taking seconds.
NOWHERE_DNS = '\n[dns]\nnameservers = ["127.0.0.1:9"]\ntimeout = 0.2\n'


def write_config(directory: Path, hostname: str = "mx.example.test", extra: str = "") -> Path:
    path = directory / "postroom.toml"
    path.write_text(
        f'[server]\nhostname = "{hostname}"\n\n[state]\ndir = "{directory}/state"\n{extra}',
        encoding="utf-8",
    )
    return path


def run_cli(
    config: str | Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `postroom -c CONFIG ARGS`."""
    capsys.readouterr()
    status = main(["-c", str(config), *args])
    out, err = capsys.readouterr()
    return status, out, err
