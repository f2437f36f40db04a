"""Shared pieces of the CLI: the -c option, errors, opening the database.

Startup cost is part of the contract (operators script this CLI): this module
and every `cli/*_cmd.py` import only the standard library's light modules at
the top. The config package, SQLAlchemy, Alembic, DNS, DKIM and e-mail parsing
are imported inside the functions that use them, so `postroom --help` loads
none of them and `postroom queue stats` loads SQLAlchemy Core but not Alembic
(`tests/unit/cli/test_startup.py` guards both).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postroom.core.errors import cannot

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from postroom.config import Config


class CliError(Exception):
    """A user-facing error: one line, no traceback. Exit status 2 (bad input, not
    found, or trouble that kept the command from answering); status 1 is only for
    "the answer is no", which commands return, never raise."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def add_config_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """-c at any level of the command. Only the top level holds a default (None, resolved
    by `main` after parsing, so that `--help` never loads the config package); a
    sub-command's -c given earlier is not overwritten by its absence later."""
    parser.add_argument(
        "-c",
        "--config",
        default=None if top_level else argparse.SUPPRESS,
        metavar="FILE",
        help="config file (default: $POSTROOM_CONFIG or /etc/postroom/postroom.toml)",
    )


def add_group(verbs: argparse._SubParsersAction, name: str, help_text: str):  # type: ignore[no-untyped-def,type-arg]
    """A verb with actions (`postroom NAME ACTION ...`), -c accepted at both levels."""
    parser = verbs.add_parser(name, help=help_text, description=help_text)
    add_config_option(parser)
    return parser.add_subparsers(dest=f"{name}_verb", required=True, metavar="ACTION")


def add_action(
    group: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """One action of a group with -c and --json, run by `handler(args)`."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
    return parser


def add_format_option(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    """--format, whose "json" equals --json; `output_format` refuses the two disagreeing."""
    parser.add_argument(
        "--format",
        choices=formats,
        default=None,
        help=f"output format (default: {formats[0]}; json is the same as --json)",
    )


def output_format(args: argparse.Namespace, formats: tuple[str, ...]) -> str:
    """The chosen format: --json and --format other than json contradict each other,
    which is refused rather than silently resolved."""
    if args.json and args.format not in (None, "json"):
        raise CliError(f"--json and --format {args.format} contradict each other: give one")
    if args.json:
        return "json"
    return args.format or formats[0]


def config_or_defaults(config_path: str) -> Config:
    """The config; the defaults when no file exists at the default path. Pure commands
    (parsing a bounce, checking an address) need no server; a file named with -c or
    $POSTROOM_CONFIG must exist, as everywhere."""
    from postroom.config import Config, default_config_path, load_config

    if config_path == default_config_path() and not Path(config_path).exists():
        return Config()
    return load_config(config_path)


def setup_logging_from(config_path: str, worker: str = "") -> Config:
    from postroom.config import load_config
    from postroom.core.logsetup import setup_logging

    config = load_config(config_path)
    setup_logging(config.logging, worker)
    return config


def open_database(config_path: str) -> Engine:
    """The configured database at the current schema (Alembic only when behind)."""
    from postroom.config import load_config
    from postroom.db.engine import make_engine
    from postroom.db.migrate import ensure_current

    engine = make_engine(load_config(config_path).database_url)
    ensure_current(engine)
    return engine


def read_input_file(path: Path, max_bytes: int) -> bytes:
    """A file an operator names, read whole up to `max_bytes` (pipes and devices
    too); every failure is one line in the one wording of `cannot`."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise CliError(cannot(path, "read", error)) from None
    if len(data) > max_bytes:
        raise CliError(f"{path}: larger than {human_size(max_bytes)}")
    return data


def human_size(size_bytes: int) -> str:
    """Bytes in binary units, as the config's size parser reads them back: `512 B`,
    `1.5 KiB`, `512 MiB`, `2 GiB` (one decimal, none when whole)."""
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    shown = f"{value:.1f}".removesuffix(".0")
    return f"{shown} {unit}"


def utc_date(timestamp: object, *, seconds: bool = False) -> str:
    """`2026-11-27 14:05 UTC` (or `14:05:09` with `seconds`) for Unix seconds; "-" for none."""
    from datetime import UTC, datetime

    if not isinstance(timestamp, int | float):
        return "-"
    time_format = "%H:%M:%S" if seconds else "%H:%M"
    return datetime.fromtimestamp(timestamp, UTC).strftime(f"%Y-%m-%d {time_format} UTC")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=None, default=str, ensure_ascii=False)
    sys.stdout.write("\n")
