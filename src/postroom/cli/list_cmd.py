"""`postroom list add|remove|delete|show|members|list`: a project's contact lists.

- `list add NAME --project P`: a new, empty list.
- `list remove NAME --project P` and `list delete NAME --project P` (the same
  verb under both names the issue uses, the pair of `add`): the list goes, its
  contacts stay; refused (exit 2) while an unfinished campaign uses it.
- `list show NAME --project P [--json]`: `{"name", "members", "created_at"}`.
- `list members NAME --project P [--json]`: the members, by address
  (`{"list", "members": [{"address", "name", "rating", "blocked"}]}`);
  `--add ADDRESS...` puts addresses on it (one not yet a contact is validated
  like `contact add` and created, rating 10: added by hand); `--remove
  ADDRESS...` takes members off (each must be one). One transaction each.
- `list list --project P [--json]`: every list with its member count.
Members also come from `contact import FILE --list NAME`. Bad input, a missing
project, list or contact: one line on stderr, exit 2, nothing changed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from postroom.cli import audience_cmd
from postroom.cli.common import CliError, add_action, add_group, print_json, utc_date
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from postroom.campaign.lists import ListInfo, Member


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "list", "a project's contact lists (audiences include or exclude)")
    for name, help_text, handler in (
        ("add", "create an empty list", _add),
        ("remove", "delete a list (its contacts stay); same as `list delete`", _delete),
        ("delete", "delete a list (its contacts stay)", _delete),
        ("show", "a list's member count and creation time", _show),
        ("members", "print a list's members, or --add / --remove some", _members),
    ):
        parser = add_action(actions, name, help_text, handler)
        parser.add_argument("name", metavar="NAME", help="the list")
        parser.add_argument("--project", required=True, metavar="NAME", help="its project")
        if name == "members":
            change = parser.add_mutually_exclusive_group()
            change.add_argument("--add", nargs="+", metavar="ADDRESS", help="put these on the list")
            change.add_argument(
                "--remove", nargs="+", metavar="ADDRESS", help="take these off the list"
            )
            parser.add_argument(
                "--accept-risky",
                action="store_true",
                help="with --add: add a new contact although the validator says risky",
            )
            audience_cmd.dns_options(parser)
    every = add_action(actions, "list", "every list of a project with its member count", _list)
    every.add_argument("--project", required=True, metavar="NAME", help="the project")


def _engine(args: argparse.Namespace) -> Engine:
    from postroom.cli.common import open_database

    return open_database(args.config)


def _info_json(info: ListInfo) -> dict[str, object]:
    return {"name": info.name, "members": info.members, "created_at": info.created_at}


def _add(args: argparse.Namespace) -> int:
    from postroom.campaign.lists import create_list
    from postroom.rating.contacts import ContactError

    try:
        info = create_list(_engine(args), args.project, args.name)
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json(_info_json(info))
    else:
        print(f"list {info.name!r} created in project {args.project!r}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from postroom.campaign.lists import delete_list
    from postroom.rating.contacts import ContactError

    try:
        info = delete_list(_engine(args), args.project, args.name)
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json({**_info_json(info), "deleted": True})
    else:
        print(f"list {info.name!r} deleted; its {info.members} contact(s) stay")
    return 0


def _show(args: argparse.Namespace) -> int:
    from postroom.campaign.lists import list_info
    from postroom.rating.contacts import ContactError

    try:
        info = list_info(_engine(args), args.project, args.name)
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json(_info_json(info))
    else:
        print(f"list {info.name!r} in {args.project}: {info.members} member(s)")
        print(f"  created {utc_date(info.created_at)}")
    return 0


def _members(args: argparse.Namespace) -> int:
    from postroom.campaign.lists import add_members, members_of, remove_members
    from postroom.cli.rating_cmd import contact_address
    from postroom.config import load_config
    from postroom.rating.contacts import ContactError
    from postroom.rating.rules import Rules

    result: dict[str, object] = {"list": args.name}
    try:
        if args.add:
            # Validated before the database is touched: nothing half-added.
            addresses = audience_cmd.checked_addresses(
                args, args.add, accept_risky=args.accept_risky
            )
            state = Rules(load_config(args.config).rating).created(manual=True)
            added, created = add_members(_engine(args), args.project, args.name, addresses, state)
            result |= {"added": added, "created": created}
            text = f"{added} added to list {args.name!r} ({created} new contact(s))"
        elif args.remove:
            addresses = [contact_address(address) for address in args.remove]
            removed = remove_members(_engine(args), args.project, args.name, addresses)
            result |= {"removed": removed}
            text = f"{removed} removed from list {args.name!r}"
        else:
            _print_members(args.name, members_of(_engine(args), args.project, args.name), args.json)
            return 0
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json(result)
    else:
        print(text)
    return 0


def _print_members(name: str, members: list[Member], as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "list": name,
                "members": [
                    {
                        "address": member.address,
                        "name": member.name,
                        "rating": member.rating,
                        "blocked": member.blocked,
                    }
                    for member in members
                ],
            }
        )
        return
    print_table(
        ("ADDRESS", "RATING", "NAME"),
        [
            (member.address, f"{member.rating}{' blocked' if member.blocked else ''}", member.name)
            for member in members
        ],
    )


def _list(args: argparse.Namespace) -> int:
    from postroom.campaign.lists import all_lists
    from postroom.rating.contacts import ContactError

    try:
        infos = all_lists(_engine(args), args.project)
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json([_info_json(info) for info in infos])
    else:
        print_table(
            ("LIST", "MEMBERS", "CREATED"),
            [(info.name, info.members, utc_date(info.created_at)) for info in infos],
            right=(1,),
        )
    return 0
