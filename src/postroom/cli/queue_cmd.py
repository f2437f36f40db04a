"""`postroom queue list | show ID | retry ID|--all | hold ID | release ID | delete ID | stats`."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from postroom.cli.common import CliError, add_config_option, open_database, print_json
from postroom.mta.queue.admin import NoSuchMessage, QueueAdmin


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    queue = verbs.add_parser("queue", help="inspect and act on the outbound queue")
    add_config_option(queue)
    actions = queue.add_subparsers(dest="queue_verb", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *, with_id: bool = False) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_config_option(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        if with_id:
            parser.add_argument("queue_id", metavar="ID")
        parser.set_defaults(handler=run, action=name)
        return parser

    listing = action("list", "messages with pending deliveries")
    listing.add_argument(
        "--state", choices=["queued", "inflight", "deferred", "held", "delivered", "failed"]
    )
    listing.add_argument("--limit", type=int, default=100)
    action("show", "one message with its deliveries", with_id=True)
    retry = action("retry", "make deferred deliveries due now")
    retry.add_argument("queue_id", metavar="ID", nargs="?")
    retry.add_argument("--all", action="store_true", help="every deferred delivery")
    action("hold", "keep a message from being delivered", with_id=True)
    action("release", "let a held message go", with_id=True)
    action("delete", "remove a message and its deliveries", with_id=True)
    action("stats", "counts by state, pool and destination; oldest age")


def run(args: argparse.Namespace) -> int:
    admin = QueueAdmin(open_database(args.config))
    try:
        return _ACTIONS[args.action](admin, args)
    except NoSuchMessage as error:
        raise CliError(f"no message with queue id {error.args[0]}", exit_status=1) from None


def _list(admin: QueueAdmin, args: argparse.Namespace) -> int:
    rows = admin.list(state=args.state, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    print(f"{'QUEUE ID':16}  {'AGE':>8}  {'SIZE':>8}  {'RCPT':>4}  {'PEND':>4}  POOL  SENDER")
    now = time.time()
    for row in rows:
        print(
            f"{row['id']:16}  {_age(now - row['created_at']):>8}  {row['size_bytes']:>8}  "
            f"{row['recipients']:>4}  {row['pending']:>4}  {row['pool']}  <{row['mail_from']}>"
        )
    print(f"{len(rows)} message(s)")
    return 0


def _show(admin: QueueAdmin, args: argparse.Namespace) -> int:
    message = admin.show(args.queue_id)
    if args.json:
        print_json(message)
        return 0
    print(f"queue id:   {message['id']}")
    print(f"arrived:    {_when(message['created_at'])}")
    print(f"sender:     <{message['mail_from']}>")
    print(f"pool:       {message['pool']}  origin: {message['origin']}")
    print(f"client:     {message['client_ip'] or '-'}")
    print(f"size:       {message['size_bytes']} bytes")
    for delivery in message["deliveries"]:
        print(
            f"  <{delivery['recipient']}>  {delivery['state']}  attempts={delivery['attempts']}"
            f"  next={_when(delivery['next_attempt_at'])}  status={delivery['last_status'] or '-'}"
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


def _stats(admin: QueueAdmin, args: argparse.Namespace) -> int:
    stats = admin.stats()
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
    "stats": _stats,
}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
