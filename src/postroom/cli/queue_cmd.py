"""`postroom queue list | show ID | retry ID|--all | hold ID | release ID | delete ID | stats`."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_config_option,
    human_size,
    open_database,
    print_json,
    utc_date,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.mta.queue.admin import QueueAdmin


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    queue = verbs.add_parser("queue", help="inspect and act on the outbound queue")
    add_config_option(queue)
    actions = queue.add_subparsers(dest="queue_verb", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *, with_id: bool = False) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        add_config_option(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        if with_id:
            parser.add_argument("queue_id", metavar="ID", help=_ID_HELP)
        parser.set_defaults(handler=run, action=name)
        return parser

    listing = action("list", "messages with pending deliveries")
    listing.add_argument(
        "--state",
        choices=["queued", "inflight", "deferred", "held", "delivered", "failed"],
        help="only messages with a delivery in this state (default: any pending)",
    )
    listing.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N messages (default: 100)"
    )
    action("show", "one message with its deliveries", with_id=True)
    retry = action("retry", "make deferred deliveries due now")
    retry.add_argument("queue_id", metavar="ID", nargs="?", help=_ID_HELP)
    retry.add_argument("--all", action="store_true", help="every deferred delivery")
    action("hold", "keep a message from being delivered", with_id=True)
    action("release", "let a held message go", with_id=True)
    action("delete", "remove a message and its deliveries", with_id=True)
    action("stats", "counts by state, pool and destination; oldest age")


_ID_HELP = "a queue id (as in the 250 reply, Received: and the log)"


def run(args: argparse.Namespace) -> int:
    if args.action == "stats":
        return _stats(args)
    from postroom.mta.queue.admin import NoSuchMessage, QueueAdmin

    admin = QueueAdmin(open_database(args.config))
    try:
        return _ACTIONS[args.action](admin, args)
    except NoSuchMessage as error:
        raise CliError(f"no message with queue id {error.args[0]}") from None


def _list(admin: QueueAdmin, args: argparse.Namespace) -> int:
    if args.limit < 1:  # SQL's LIMIT -1 would silently mean "no limit"
        raise CliError(f"--limit {args.limit}: must be 1 or more")
    rows = admin.list(state=args.state, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    now = time.time()
    print_table(
        ("QUEUE ID", "AGE", "SIZE", "RCPT", "PEND", "POOL", "SENDER"),
        [
            (
                row["id"],
                _age(now - row["created_at"]),
                human_size(row["size_bytes"]),
                row["recipients"],
                row["pending"],
                row["pool"],
                f"<{row['mail_from']}>",
            )
            for row in rows
        ],
        right=(1, 2, 3, 4),
    )
    print(f"{len(rows)} message(s)")
    return 0


def _show(admin: QueueAdmin, args: argparse.Namespace) -> int:
    message = admin.show(args.queue_id)
    if args.json:
        print_json(message)
        return 0
    print(f"queue id:   {message['id']}")
    print(f"arrived:    {utc_date(message['created_at'], seconds=True)}")
    print(f"sender:     <{message['mail_from']}>")
    print(f"pool:       {message['pool']}  origin: {message['origin']}")
    print(f"client:     {message['client_ip'] or '-'}")
    print(f"size:       {human_size(message['size_bytes'])} ({message['size_bytes']} bytes)")
    for delivery in message["deliveries"]:
        print(
            f"  <{delivery['recipient']}>  {delivery['state']}  attempts={delivery['attempts']}"
            f"  next={utc_date(delivery['next_attempt_at'], seconds=True)}"
            f"  status={delivery['last_status'] or '-'}"
        )
        if delivery["last_reply"]:
            print(f"      {delivery['remote_mta'] or '-'}: {delivery['last_reply']}")
    if "headers" in message:
        print("headers:")
        for line in message["headers"].splitlines():
            print(f"  {line}")
    return 0


def _changed(count: int, what: str, args: argparse.Namespace) -> int:
    if args.json:
        print_json({"changed": count})
    else:
        print(f"{count} deliver{'y' if count == 1 else 'ies'} {what}")
    return 0


def _retry(admin: QueueAdmin, args: argparse.Namespace) -> int:
    if bool(args.queue_id) == bool(args.all):
        raise CliError("queue retry takes a queue id or --all")
    return _changed(admin.retry(None if args.all else args.queue_id), "due now", args)


def _stats(args: argparse.Namespace) -> int:
    """Scripts call this often: on SQLite at the current schema it reads the file with
    the standard library (db/readonly.py), skipping SQLAlchemy's import."""
    from postroom.config import load_config
    from postroom.db.readonly import sqlite_rows
    from postroom.mta.queue.stats import queue_stats

    rows = sqlite_rows(load_config(args.config).database_url)
    if rows is not None:
        stats = queue_stats(rows, time.time())
    else:
        from postroom.mta.queue.admin import QueueAdmin

        stats = QueueAdmin(open_database(args.config)).stats()
    if args.json:
        print_json(stats)
        return 0
    print("by state:       " + ", ".join(f"{k} {v}" for k, v in stats["by_state"].items()))
    print("by pool:        " + (", ".join(f"{k} {v}" for k, v in stats["by_pool"].items()) or "-"))
    print(
        "by destination: "
        + (", ".join(f"{k} {v}" for k, v in stats["by_destination"].items()) or "-")
    )
    oldest = stats["oldest_age_s"]
    print(f"oldest pending: {_age(oldest) if oldest is not None else '-'}")
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "retry": _retry,
    "hold": lambda admin, args: _changed(admin.hold(args.queue_id), "held", args),
    "release": lambda admin, args: _changed(admin.release(args.queue_id), "released", args),
    "delete": lambda admin, args: _changed(admin.delete(args.queue_id), "deleted", args),
}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
