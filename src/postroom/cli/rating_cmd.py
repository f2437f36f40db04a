"""`postroom contact add|show|block|unblock|set-rating`, `postroom rating gate`,
`postroom bounce parse`.

Contacts belong to a project (`--project`). `contact show` prints the rating,
the blocked flag, the fields audiences filter on (stage, state, channels,
registration and unsubscription dates, variables) and every event with its
cause. `rating gate` computes an audience's average rating and refuses (exit 1) below `[rating]
campaign_minimum`, naming the blocked and low-rated share. `bounce parse FILE...
--json` prints one JSON object per file in the contract shape of ARCHITECTURE.md.
Bad input: one line, exit 2, nothing changed.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli import audience_cmd, campaign_cmd, contact_fields_cmd
from postroom.cli.common import (
    CliError,
    add_config_option,
    add_group,
    config_or_defaults,
    open_database,
    print_json,
    read_input_file,
)
from postroom.cli.table import shown

if TYPE_CHECKING:
    from postroom.rating.contacts import Contact, Contacts

MAX_BOUNCE_BYTES = 50 * 1024 * 1024


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "contact", "a project's contacts and their ratings")
    for name, help_text in (
        ("add", "add a contact by hand (rating 10)"),
        ("show", "rating, blocked flag and event history"),
        ("block", "block a contact (campaigns skip it)"),
        ("unblock", "lift a block"),
        ("set-rating", "set the rating (1 blocks)"),
    ):
        parser = actions.add_parser(name, help=help_text, description=help_text)
        add_config_option(parser)
        parser.add_argument("address", metavar="ADDRESS", help="the contact's address")
        parser.add_argument("--project", required=True, metavar="NAME", help="its project")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "add":
            parser.add_argument("--list", metavar="NAME", help="also put it on this list")
            parser.add_argument(
                "--accept-risky",
                action="store_true",
                help="add it although the validator says risky",
            )
            audience_cmd.dns_options(parser)
        if name == "set-rating":
            parser.add_argument("rating", type=int, metavar="RATING", help="1 to 10 (1 blocks)")
        parser.set_defaults(handler=_contact, action=name)
    audience_cmd.register_contact_verbs(actions)
    contact_fields_cmd.register(actions)
    campaign_cmd.register_contact_verbs(actions)

    rating_actions = add_group(verbs, "rating", "the rating engine")
    gate_help = "may a campaign to this audience launch? (exit 1 when refused)"
    gate = rating_actions.add_parser("gate", help=gate_help, description=gate_help)
    add_config_option(gate)
    gate.add_argument("--project", required=True, metavar="NAME", help="the audience's project")
    gate.add_argument("--list", metavar="NAME", help="the audience (default: every contact)")
    gate.add_argument("--json", action="store_true", help="machine-readable output")
    gate.set_defaults(handler=_gate)

    bounce_actions = add_group(verbs, "bounce", "bounce and complaint messages")
    parse_help = "parse saved bounces (DSN, ARF, others)"
    parse = bounce_actions.add_parser("parse", help=parse_help, description=parse_help)
    add_config_option(parse)
    parse.add_argument("files", nargs="+", metavar="FILE", help="a saved message (.eml)")
    parse.add_argument("--json", action="store_true", help="one JSON object per file")
    parse.set_defaults(handler=_bounce_parse)


def open_contacts(args: argparse.Namespace) -> Contacts:
    from postroom.config import load_config
    from postroom.rating.contacts import Contacts
    from postroom.rating.rules import Rules

    return Contacts(open_database(args.config), Rules(load_config(args.config).rating))


def _contact(args: argparse.Namespace) -> int:
    from postroom.rating.contacts import ContactError

    if args.action == "add":
        # A contact added by hand goes through the one validator, like an import.
        address = audience_cmd.checked_address(args, args.address, accept_risky=args.accept_risky)
    else:
        address = contact_address(args.address)
    contacts = open_contacts(args)
    try:
        if args.action == "add":
            contact = contacts.add(args.project, address, args.list)
        elif args.action == "block":
            contact = contacts.block(args.project, address)
        elif args.action == "unblock":
            contact = contacts.unblock(args.project, address)
        elif args.action == "set-rating":
            contact = contacts.set_rating(args.project, address, args.rating)
        else:
            contact = contacts.contact(args.project, address)
    except ContactError as error:
        raise CliError(str(error)) from None
    show_contact(contacts, contact, args.json, events=args.action == "show")
    return 0


def contact_address(text: str) -> str:
    """The address to look a contact up by. Not the mailbox normaliser: that one turns
    an IDN domain into A-labels and refuses a UTF-8 local part, while contacts are
    stored as the validator wrote them (U-labels, SMTPUTF8 local parts)."""
    address = text.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain.rstrip("."):
        raise CliError(f"{text!r} is not an address: expected local-part@domain")
    return f"{local}@{domain.rstrip('.')}".lower()


def show_contact(contacts: Contacts, contact: Contact, as_json: bool, *, events: bool) -> None:
    from postroom.campaign.contact_fields import channels_of
    from postroom.cli.common import utc_date

    history = contacts.events(contact) if events else []
    with contacts.engine.connect() as conn:
        channels = channels_of(conn, contact.id)
    if as_json:
        print_json(
            {
                "address": contact.address,
                "project": contact.project,
                "name": contact.name,
                "variables": json.loads(contact.variables or "{}"),
                "rating": contact.rating,
                "blocked": contact.blocked,
                "blocked_cause": contact.blocked_cause,
                "source": contact.source,
                "stage": contact.stage,
                "state": contact.state,
                "channels": channels,
                "registered_at": contact.registered_at,
                "unsubscribed_at": contact.unsubscribed_at,
                "events": [
                    {
                        "at": event.created_at,
                        "kind": event.kind,
                        "reason": event.reason,
                        "old_rating": event.old_rating,
                        "new_rating": event.new_rating,
                        "blocked": event.blocked,
                        "message_id": event.message_id,
                        "delivery_id": event.delivery_id,
                        "detail": event.detail,
                        "campaign_id": event.campaign_id,
                    }
                    for event in history
                ],
            }
        )
        return
    blocked = f"blocked ({contact.blocked_cause})" if contact.blocked else "not blocked"
    print(f"{contact.address} in {contact.project}: rating {contact.rating}, {blocked}")
    fields = {
        "name": contact.name,
        "stage": contact.stage,
        "state": contact.state,
        "channels": ", ".join(channels),
        "registered": utc_date(contact.registered_at),
        "unsubscribed": utc_date(contact.unsubscribed_at) if contact.unsubscribed_at else "",
    }
    for label, value in fields.items():
        if value:
            print(f"  {label}: {shown(value)}")
    for name, value in json.loads(contact.variables or "{}").items():
        # Imported text: control characters (a terminal's escapes) are shown escaped.
        print(f"  {shown(name)} = {shown(value)}")
    for event in history:
        when = datetime.fromtimestamp(event.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        old = "-" if event.old_rating is None else event.old_rating
        cause = " ".join(
            part
            for part in (
                event.reason,
                f"campaign {event.campaign_id}" if event.campaign_id is not None else "",
                f"message {event.message_id}" if event.message_id else "",
                event.detail,
            )
            if part
        )
        print(f"  {when}  {event.kind:10}  {old} -> {event.new_rating}  {cause}")


def _gate(args: argparse.Namespace) -> int:
    from postroom.rating.contacts import ContactError

    try:
        result = open_contacts(args).gate(args.project, args.list)
    except ContactError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json(
            {
                "allowed": result.allowed,
                "average": round(result.average, 3),
                "audience": result.audience,
                "blocked": result.blocked,
                "low": result.low,
                "message": result.message,
            }
        )
    else:
        print(("launch allowed: " if result.allowed else "launch refused: ") + result.message)
    return 0 if result.allowed else 1


def _bounce_parse(args: argparse.Namespace) -> int:
    from postroom.mta.bounce.classify import Classifier, PatternError
    from postroom.mta.bounce.parse import parse_bounce

    patterns = config_or_defaults(args.config).bounce.patterns
    try:
        classifier = Classifier.load([Path(path) for path in patterns])
    except PatternError as error:
        raise CliError(f"bounce patterns: {error}") from None
    for name in args.files:
        report = parse_bounce(read_input_file(Path(name), MAX_BOUNCE_BYTES), classifier)
        verdict = {
            "file": name,
            "is_bounce": report.is_bounce,
            "feedback_type": report.feedback_type,
            "recipients": [
                {
                    "address": r.address,
                    "action": r.action,
                    "status": r.status,
                    "reply_code": r.reply_code,
                    "reason": str(r.reason),
                    "hard": r.hard,
                }
                for r in report.recipients
            ],
        }
        if args.json:
            print_json(verdict)
        else:
            kind = "bounce" if report.is_bounce else "not a bounce"
            print(f"{name}: {kind} ({report.kind})")
            for r in verdict["recipients"]:  # type: ignore[union-attr]
                hard = "hard" if r["hard"] else "soft"
                print(f"  {r['address']}: {r['reason']} {r['status']} {r['reply_code']} {hard}")
    return 0
