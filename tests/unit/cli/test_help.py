"""Every option and positional of every command says what it is; a boolean pair
(`--dns/--no-dns`) says which is the default. Walks the real argparse tree."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from postroom.cli.main import build_parser
from postroom.db.models import SmtpState


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("postroom",)
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            yield action


def shown(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


def test_the_tree_has_every_verb() -> None:
    names = {name for name, _ in commands(build_parser())}
    assert {"postroom queue stats", "postroom domain dkim rotate", "postroom mailbox list"} <= names
    assert len(names) > 50


def test_every_argument_has_help() -> None:
    missing = [
        f"{name}: {shown(action)}"
        for name, parser in commands(build_parser())
        for action in arguments(parser)
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_every_boolean_pair_states_its_default() -> None:
    pairs = []
    for name, parser in commands(build_parser()):
        by_dest: dict[str, list[argparse.Action]] = {}
        for action in arguments(parser):
            by_dest.setdefault(action.dest, []).append(action)
        for actions in by_dest.values():
            flags = [option for action in actions for option in action.option_strings]
            negated = any(flag.startswith("--no-") for flag in flags)
            if negated and flags != ["-c", "--config"]:
                helps = " ".join(action.help or "" for action in actions)
                pairs.append((f"{name}: {'/'.join(flags)}", "default" in helps))
    assert ("postroom address check: --dns/--no-dns", True) in pairs
    assert [pair for pair, states_default in pairs if not states_default] == []


def test_the_smtp_state_help_names_every_state() -> None:
    (listing,) = [
        parser for name, parser in commands(build_parser()) if name == "postroom smtp list"
    ]
    (state,) = [action for action in arguments(listing) if action.dest == "state"]
    assert all(value.value in (state.help or "") for value in SmtpState)
