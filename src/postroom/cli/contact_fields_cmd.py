"""`postroom contact set ADDRESS --project P NAME=VALUE...`: edit a contact's fields.

NAME is `name`, `stage`, `state`, `registered` (a date), `channels` (the new
set; `channels+=NAME` / `channels-=NAME` add or remove one) or any template
variable (an empty VALUE removes it): `postroom.campaign.contact_edit` has the
rules. Every assignment is checked before anything is written, then all of
them are applied in one transaction; a bad NAME or VALUE, or an unknown project
or contact, is one line on stderr and exit 2 with nothing changed. Prints the
contact as `contact show` does (`--json`: the same object).
"""

from __future__ import annotations

import argparse

from postroom.cli.common import CliError, add_config_option

SET_HELP = (
    "set fields: name, stage, state, registered, channels (channels+=C, channels-=C) "
    "or variables (NAME= removes one)"
)


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = actions.add_parser("set", help=SET_HELP, description=SET_HELP)
    add_config_option(parser)
    parser.add_argument("address", metavar="ADDRESS", help="the contact's address")
    parser.add_argument(
        "assignments", nargs="+", metavar="NAME=VALUE", help="a field or variable to set"
    )
    parser.add_argument("--project", required=True, metavar="NAME", help="its project")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_set)


def _set(args: argparse.Namespace) -> int:
    from postroom.campaign.contact_edit import apply_changes, parse_assignments
    from postroom.cli.rating_cmd import contact_address, open_contacts, show_contact
    from postroom.rating.contacts import ContactError

    try:
        changes = parse_assignments(args.assignments)
    except ValueError as error:
        raise CliError(str(error)) from None
    address = contact_address(args.address)
    contacts = open_contacts(args)
    try:
        apply_changes(contacts.engine, args.project, address, changes)
        contact = contacts.contact(args.project, address)
    except ContactError as error:
        raise CliError(str(error)) from None
    show_contact(contacts, contact, args.json, events=False)
    return 0
