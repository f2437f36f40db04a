"""`postroom sender add|confirm|resend-code|list|show|remove`: the addresses campaigns send from.

  sender add ADDRESS --project P [--name NAME]   unconfirmed; a code is mailed to ADDRESS
  sender confirm ADDRESS CODE [--project P]      confirmed (a wrong code: exit 2, counted)
  sender resend-code ADDRESS --project P         a new code and tries; the old code is void
  sender list --project P [--json]
  sender show ADDRESS --project P [--json]       mode, replies, DMARC, the code mail's state
  sender remove ADDRESS --project P              refused while a campaign uses the sender

`list --json` (a contract) is a JSON array of {"address", "name", "state",
"project", "mode" ("two-way" | "send-only"), "created_at", "confirmed_at"}
(Unix seconds or null). `show --json` is that object plus "replies" (one line),
"dmarc" ({"risk", "note"}, null for a two-way sender), "code" ({"expires_at",
"failures", "tries_left"}, null when none is outstanding) and "code_mail"
({"queue_id", "state", "attempts", "last_reply", "updated_at"} or null); `add`,
`confirm` and `resend-code` print the same object without the DNS lookup's
"dmarc". `add` warns on stderr (still exit 0) when a send-only domain's DMARC
policy will make its mail fail at receivers. Errors: one line, exit 2, nothing
changed — except that a wrong code stays counted, which is the rule.

Config keys: [campaign] code_lifetime, code_max_failures, transactional_pool;
[server] hostname; [dns] (DMARC lookups); [secrets] key_file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from postroom.cli.common import CliError, add_action, add_group, print_json, utc_date
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.campaign.senders import SenderRecord, Senders
    from postroom.config import Config


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sender = add_group(verbs, "sender", "addresses campaigns send from (confirmed by a code)")
    add = _action(sender, "add", "add a sender and mail it a confirmation code", _add)
    add.add_argument("address", metavar="ADDRESS", help="the address campaigns will send from")
    _project_option(add)
    add.add_argument("--name", default="", metavar="NAME", help="display name in From")
    confirm = _action(sender, "confirm", "confirm a sender with its mailed code", _confirm)
    confirm.add_argument("address", metavar="ADDRESS", help="the sender")
    confirm.add_argument("code", metavar="CODE", help="the 6 digits the code mail carries")
    confirm.add_argument(
        "--project",
        metavar="NAME",
        help="the sender's project (needed when the address waits in several)",
    )
    resend = _action(sender, "resend-code", "mail a new code (the old one is void)", _resend)
    resend.add_argument("address", metavar="ADDRESS", help="the unconfirmed sender")
    _project_option(resend)
    listing = _action(sender, "list", "a project's senders", _list)
    _project_option(listing)
    show = _action(sender, "show", "state, mode, replies, DMARC, the code mail", _show)
    show.add_argument("address", metavar="ADDRESS", help="the sender")
    _project_option(show)
    remove = _action(sender, "remove", "remove a sender no campaign uses", _remove)
    remove.add_argument("address", metavar="ADDRESS", help="the sender")
    _project_option(remove)


def _project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, metavar="NAME", help="the sender's project")


Handler = Callable[["Config", "Senders", argparse.Namespace], int]


def _action(group, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    return add_action(group, name, help_text, lambda args: _run(handler, args))


def _run(handler: Handler, args: argparse.Namespace) -> int:
    from postroom.campaign.senders import SenderError, Senders
    from postroom.cli.common import open_database
    from postroom.config import load_config

    config = load_config(args.config)
    try:
        return handler(config, Senders(open_database(args.config), config), args)
    except SenderError as error:
        raise CliError(str(error)) from None


def _add(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    from postroom.campaign.sender_reach import SenderMode, lookup_dmarc_outlook

    record = senders.add(args.project, args.address, args.name)
    if record.mode is SenderMode.SEND_ONLY:
        # Looked up after the commit: DNS time never holds the database.
        risk = lookup_dmarc_outlook(config, record.address.rpartition("@")[2]).risk
        if risk:
            print(f"postroom: warning: {risk}", file=sys.stderr)
    _print_change(args, config, senders, record, "added")
    return 0


def _confirm(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    record = senders.confirm(args.address, args.code, args.project)
    _print_change(args, config, senders, record, "confirmed")
    return 0


def _resend(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    record = senders.resend_code(args.address, args.project)
    _print_change(args, config, senders, record, "new code for")
    return 0


def _list(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    records = senders.list(args.project)
    if args.json:
        print_json([record.as_json() for record in records])
        return 0
    print_table(
        ("ADDRESS", "STATE", "MODE", "CREATED", "CONFIRMED", "NAME"),
        [
            (
                r.address,
                r.state.value,
                r.mode.value,
                utc_date(r.created_at),
                utc_date(r.confirmed_at),
                r.display_name,
            )
            for r in records
        ],
    )
    return 0


def _show(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    from postroom.campaign.sender_reach import SenderMode, lookup_dmarc_outlook

    record = senders.show(args.address, args.project)
    detail = _detail(config, senders, record)
    outlook = None
    if record.mode is SenderMode.SEND_ONLY:
        outlook = lookup_dmarc_outlook(config, record.address.rpartition("@")[2])
    detail["dmarc"] = None if outlook is None else {"risk": outlook.risk, "note": outlook.note}
    if args.json:
        print_json(detail)
        return 0
    named = f' "{record.display_name}"' if record.display_name else ""
    confirmed = f", confirmed {utc_date(record.confirmed_at)}" if record.confirmed_at else ""
    print(f"sender:    {record.address}{named}")
    print(f"project:   {record.project}")
    print(f"state:     {record.state.value} (added {utc_date(record.created_at)}{confirmed})")
    print(f"mode:      {record.mode.value}")
    print(f"replies:   {detail['replies']}")
    if outlook is not None:
        print(f"dmarc:     {outlook.note}")
    _print_code(detail)
    return 0


def _remove(config: Config, senders: Senders, args: argparse.Namespace) -> int:
    record = senders.remove(args.address, args.project)
    if args.json:
        print_json(record.as_json())
    else:
        print(f"removed sender {record.address} of project {record.project}")
    return 0


def _detail(config: Config, senders: Senders, record: SenderRecord) -> dict[str, Any]:
    """The `show --json` object without "dmarc" (the one part that needs DNS)."""
    from pathlib import Path

    from postroom.campaign.sender_reach import SenderMode, reply_route, send_only_route
    from postroom.mailbox.accounts import Accounts

    if record.mode is SenderMode.TWO_WAY:
        replies = reply_route(Accounts(senders.engine, Path(config.mail_root)), record.address)
    else:
        replies = send_only_route(record.address)
    code = None
    if record.code_expires_at is not None:
        code = {
            "expires_at": record.code_expires_at,
            "failures": record.code_failures,
            "tries_left": max(config.campaign.code_max_failures - record.code_failures, 0),
        }
    delivery = senders.code_mail_delivery(record)
    code_mail = None
    if delivery is not None:
        code_mail = {
            "queue_id": delivery.queue_id,
            "state": delivery.state,
            "attempts": delivery.attempts,
            "last_reply": delivery.last_reply,
            "updated_at": delivery.updated_at,
        }
    return {**record.as_json(), "replies": replies, "code": code, "code_mail": code_mail}


def _print_change(
    args: argparse.Namespace, config: Config, senders: Senders, record: SenderRecord, what: str
) -> None:
    detail = _detail(config, senders, record)
    if args.json:
        print_json(detail)
        return
    print(f"{what} sender {record.address} of project {record.project}: {record.state.value}")
    print(f"mode:      {record.mode.value}")
    print(f"replies:   {detail['replies']}")
    _print_code(detail)
    if detail["code"] is not None:
        print(
            f"next:      postroom sender confirm {record.address} CODE --project {record.project}"
        )


def _print_code(detail: dict[str, Any]) -> None:
    code, mail = detail["code"], detail["code_mail"]
    if code is not None:
        print(
            f"code:      valid until {utc_date(code['expires_at'])}, "
            f"{code['tries_left']} wrong tries left"
        )
    if mail is not None:
        reply = f" ({mail['last_reply']})" if mail["last_reply"] else ""
        print(f"code mail: {mail['state']}{reply}, queue id {mail['queue_id']}")
