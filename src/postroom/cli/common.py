"""Shared pieces of the CLI: the -c option, errors, opening the database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from postroom.config import Config, default_config_path, load_config
from postroom.core.logsetup import setup_logging
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade


class CliError(Exception):
    """A user-facing error: one line, no traceback."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def add_config_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """-c at any level of the command; only the top level holds the default, so that a
    sub-command's -c given earlier is not overwritten by its absence later."""
    parser.add_argument(
        "-c",
        "--config",
        default=default_config_path() if top_level else argparse.SUPPRESS,
        metavar="FILE",
        help="config file (default: $POSTROOM_CONFIG or /etc/postroom/postroom.toml)",
    )


def add_group(verbs: argparse._SubParsersAction, name: str, help_text: str):  # type: ignore[no-untyped-def,type-arg]
    """A verb with actions (`postroom NAME ACTION ...`), -c accepted at both levels."""
    parser = verbs.add_parser(name, help=help_text)
    add_config_option(parser)
    return parser.add_subparsers(dest=f"{name}_verb", required=True, metavar="ACTION")


def add_action(
    group: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """One action of a group, with -c and --json, run by `handler(args)`."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
    return parser


def config_or_defaults(config_path: str) -> Config:
    """The config; the defaults when no file exists at the default path. Pure commands
    (parsing a bounce, checking an address) need no server; a file named with -c or
    $POSTROOM_CONFIG must exist, as everywhere."""
    if config_path == default_config_path() and not Path(config_path).exists():
        return Config()
    return load_config(config_path)


def setup_logging_from(config_path: str) -> Config:
    config = load_config(config_path)
    setup_logging(config.logging)
    return config


def open_database(config_path: str) -> Engine:
    """The configured database, migrated to the current schema."""
    config = load_config(config_path)
    engine = make_engine(config.database_url)
    upgrade(engine)
    return engine


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=None, default=str, ensure_ascii=False)
    sys.stdout.write("\n")
