"""`postroom smtp request|approve|reject|info|list|limits|senders`: SMTP access for apps.

An app sends through the submission ports as one mailbox, after an operator
approved it (`postroom.mailbox.smtp_access`):

  smtp request ADDRESS --purpose TEXT --volume N   N = messages per day; → pending
  smtp approve ADDRESS [--domain-senders | --no-domain-senders]
  smtp reject ADDRESS --reason TEXT                also revokes an approval
  smtp info ADDRESS [--json]                       what an app needs once approved
  smtp list [--state STATE] [--json]
  smtp limits ADDRESS [--per-minute N] [--per-day N]   0 = back to the default
  smtp senders ADDRESS --domain | --own

`info --json` prints {"address", "state", "purpose", "volume", "reason",
"requested_at", "decided_at", "host", "ports": [{"port", "security"}], "username",
"password", "senders", "limits": {"per_minute", "per_day"}, "project",
"message_limit": {"used", "limit"}}; host, ports, username and password are
null until approved; a limit of null means none. Every change with --json
prints the same object. Bad input, an unknown mailbox or a wrong state: one
line, exit 2, nothing changed.

Config keys: [server] hostname, [smtp.submission] listen, tls_listen,
max_per_minute, max_per_day.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_action,
    add_group,
    open_database,
    print_json,
    utc_date,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.config import Config
    from postroom.mailbox.smtp_access import SmtpAccount

# Until [smtp.submission] has these keys everywhere; they are its documented defaults.
DEFAULT_PER_MINUTE = 100
DEFAULT_PER_DAY = 10_000
STARTTLS = "STARTTLS"
IMPLICIT_TLS = "implicit TLS (SMTPS)"


class Context:
    """What every command here needs, opened once."""

    def __init__(self, config_path: str) -> None:
        from postroom.config import load_config
        from postroom.mailbox.smtp_access import SmtpAccess
        from postroom.mailbox.usage import ProjectUsage

        self.config: Config = load_config(config_path)
        engine = open_database(config_path)
        self.access = SmtpAccess(engine)
        self.usage = ProjectUsage(engine)


Handler = Callable[[Context, argparse.Namespace], int]


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    smtp = add_group(verbs, "smtp", "SMTP submission access of mailboxes (apps)")
    request = _action(smtp, "request", "ask for SMTP access (an operator moderates)", _request)
    request.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    request.add_argument("--purpose", required=True, metavar="TEXT", help="what the app sends")
    request.add_argument("--volume", required=True, metavar="N", help="messages per day")
    approve = _action(smtp, "approve", "grant SMTP access", _approve)
    approve.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    approve.add_argument(
        "--domain-senders",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="may send as any address of its domain (default: keep; initially only itself)",
    )
    reject = _action(smtp, "reject", "refuse a request, or revoke an approval", _reject)
    reject.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    reject.add_argument("--reason", required=True, metavar="TEXT", help="shown to the requester")
    info = _action(smtp, "info", "state, or everything an app needs once approved", _info)
    info.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    listing = _action(smtp, "list", "mailboxes and their SMTP access", _list)
    # Checked by the command, not by argparse `choices`: a bad value is one line, exit 2.
    listing.add_argument(
        "--state",
        metavar="STATE",
        help="only mailboxes in this state: none, pending, approved or rejected",
    )
    limits = _action(smtp, "limits", "per-mailbox rate limits (0 = the default)", _limits)
    limits.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    limits.add_argument("--per-minute", metavar="N", help="messages (recipients) per minute")
    limits.add_argument("--per-day", metavar="N", help="messages (recipients) per day")
    senders = _action(smtp, "senders", "which sender addresses it may use", _senders)
    senders.add_argument("address", metavar="ADDRESS", help=_ADDRESS_HELP)
    which = senders.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--domain", action="store_true", help="any address of the mailbox's linked domain"
    )
    which.add_argument("--own", action="store_true", help="only the mailbox's own address")


_ADDRESS_HELP = "the mailbox (local-part@domain)"


def _action(group, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    return add_action(group, name, help_text, lambda args: _run(handler, args))


def _run(handler: Handler, args: argparse.Namespace) -> int:
    from postroom.mailbox.smtp_access import SmtpAccessError

    try:
        return handler(Context(args.config), args)
    except SmtpAccessError as error:
        raise CliError(str(error)) from None


def _whole_number(text: str, option: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise CliError(f"{option} {text!r}: {what}") from None


def _limit(text: str, option: str) -> int:
    what = "0 (back to the default) or a positive number of messages"
    value = _whole_number(text, option, what)
    if value < 0:
        raise CliError(f"{option} {value}: {what}")
    return value


# -- changes ----------------------------------------------------------------------


def _request(ctx: Context, args: argparse.Namespace) -> int:
    volume = _whole_number(args.volume, "--volume", "a whole number of messages per day")
    account = ctx.access.request(args.address, args.purpose, volume)
    if args.json:
        print_json(_info_json(ctx, account))
    else:
        print(f"SMTP access of {account.address} requested: under moderation (state pending)")
        print(f"an operator approves it with `postroom smtp approve {account.address}`")
    return 0


def _approve(ctx: Context, args: argparse.Namespace) -> int:
    account = ctx.access.approve(args.address, domain_senders=args.domain_senders)
    if args.json:
        print_json(_info_json(ctx, account))
        return 0
    print(f"SMTP access of {account.address} approved")
    _print_info(ctx, account)
    return 0


def _reject(ctx: Context, args: argparse.Namespace) -> int:
    account = ctx.access.reject(args.address, args.reason)
    if args.json:
        print_json(_info_json(ctx, account))
    else:
        print(f"SMTP access of {account.address} rejected: {account.reason}")
    return 0


def _limits(ctx: Context, args: argparse.Namespace) -> int:
    per_minute, per_day = (
        None if text is None else _limit(text, option)
        for text, option in ((args.per_minute, "--per-minute"), (args.per_day, "--per-day"))
    )
    if per_minute is None and per_day is None:
        account = ctx.access.account(args.address)  # nothing to change: show them
    else:
        account = ctx.access.set_limits(args.address, per_minute=per_minute, per_day=per_day)
    if args.json:
        print_json(_info_json(ctx, account))
    else:
        print(f"{account.address}: {_limits_text(ctx.config, account)}")
    return 0


def _senders(ctx: Context, args: argparse.Namespace) -> int:
    account = ctx.access.set_domain_senders(args.address, bool(args.domain))
    if args.json:
        print_json(_info_json(ctx, account))
    else:
        print(f"{account.address} may send as {_senders_text(account)}")
    return 0


# -- reading ----------------------------------------------------------------------


def _info(ctx: Context, args: argparse.Namespace) -> int:
    account = ctx.access.account(args.address)
    if args.json:
        print_json(_info_json(ctx, account))
        return 0
    print(f"SMTP access of {account.address}: {account.state.value}")
    _print_info(ctx, account)
    return 0


def _print_info(ctx: Context, account: SmtpAccount) -> None:
    from postroom.mailbox.smtp_access import SmtpState

    rows: list[tuple[str, str]] = []
    if account.state is SmtpState.APPROVED:
        rows.append(("host", _host(ctx.config)))
        ports = _ports(ctx.config)
        if not ports:
            rows.append(("ports", "none configured ([smtp.submission] listen and tls_listen)"))
        rows.extend((f"port {port['port']}", str(port["security"])) for port in ports)
        rows.append(("username", account.address))
        rows.append(("password", _password_hint(account)))
    else:
        if account.purpose:
            rows.append(("purpose", account.purpose))
        if account.volume is not None:
            rows.append(("volume", f"{account.volume} messages per day"))
        if account.requested_at is not None:
            rows.append(("requested", utc_date(account.requested_at)))
        if account.state is SmtpState.REJECTED:
            rows.append(("rejected", utc_date(account.decided_at)))
        if account.reason:
            # Also after a new request: the requester sees what to address.
            rows.append(("reason", account.reason))
        if account.state is SmtpState.NONE:
            rows.append(("next", f"postroom smtp request {account.address} --purpose … --volume N"))
    rows.append(("senders", _senders_text(account)))
    rows.append(("limits", _limits_text(ctx.config, account)))
    used, limit = ctx.usage.usage(account.project_id)
    of = f"of {limit}" if limit is not None else "(no limit)"
    rows.append(("project", f"{account.project}: {used} {of} messages this month"))
    for name, value in rows:
        print(f"  {name + ':':10} {value}")


def _info_json(ctx: Context, account: SmtpAccount) -> dict[str, object]:
    from postroom.mailbox.smtp_access import SmtpState

    approved = account.state is SmtpState.APPROVED
    per_minute, per_day = _effective_limits(ctx.config, account)
    used, limit = ctx.usage.usage(account.project_id)
    return {
        "address": account.address,
        "state": account.state.value,
        "purpose": account.purpose,
        "volume": account.volume,
        "reason": account.reason,
        "requested_at": account.requested_at,
        "decided_at": account.decided_at,
        "host": _host(ctx.config) if approved else None,
        "ports": _ports(ctx.config) if approved else None,
        "username": account.address if approved else None,
        "password": _password_hint(account) if approved else None,
        "senders": list(account.senders),
        "limits": {"per_minute": per_minute, "per_day": per_day},
        "project": account.project,
        "message_limit": {"used": used, "limit": limit},
    }


def _list(ctx: Context, args: argparse.Namespace) -> int:
    from postroom.mailbox.smtp_access import SmtpState

    state = None
    if args.state is not None:
        try:
            state = SmtpState(args.state.strip().lower())
        except ValueError:
            names = ", ".join(state.value for state in SmtpState)
            raise CliError(f"--state {args.state!r}: one of {names}") from None
    accounts = ctx.access.accounts(state)
    if args.json:
        print_json(
            [
                {
                    "address": a.address,
                    "project": a.project,
                    "state": a.state.value,
                    "purpose": a.purpose,
                    "volume": a.volume,
                    "reason": a.reason,
                    "requested_at": a.requested_at,
                    "decided_at": a.decided_at,
                    "senders": list(a.senders),
                    "per_minute": a.per_minute,
                    "per_day": a.per_day,
                }
                for a in accounts
            ]
        )
        return 0
    print_table(
        ("ADDRESS", "PROJECT", "STATE", "PER DAY", "PURPOSE"),
        [
            (
                a.address,
                a.project,
                a.state.value,
                a.volume,
                a.purpose if len(a.purpose) <= 40 else a.purpose[:39] + "…",
            )
            for a in accounts
        ],
        right=(3,),
    )
    return 0


# -- what an app is told --------------------------------------------------------------


def _host(config: Config) -> str:
    return config.server.hostname.rstrip(".")


def _ports(config: Config) -> list[dict[str, object]]:
    """Each submission port once with its security (several addresses may share a port)."""
    from postroom.config import ConfigError
    from postroom.config.schema import parse_listen

    submission = config.smtp.submission
    ports: list[dict[str, object]] = []
    for key, values, security in (
        ("listen", submission.listen, STARTTLS),
        ("tls_listen", submission.tls_listen, IMPLICIT_TLS),
    ):
        for index, value in enumerate(values):
            try:
                _, port = parse_listen(value, f"smtp.submission.{key}[{index}]")
            except ConfigError as error:  # load_config validated it; never on a checked file
                raise CliError(f"config error: {error}") from None
            entry = {"port": port, "security": security}
            if entry not in ports:
                ports.append(entry)
    return ports


def _password_hint(account: SmtpAccount) -> str:
    return f"the mailbox's password; set it with `postroom mailbox passwd {account.address}`"


def _senders_text(account: SmtpAccount) -> str:
    if account.domain_senders:
        return f"any address @{account.domain}"
    return f"{account.address} only"


def _effective_limits(config: Config, account: SmtpAccount) -> tuple[int | None, int | None]:
    """(per minute, per day): the mailbox's override or the config default; None = no limit
    (a default of 0 means none)."""
    submission = config.smtp.submission
    default_minute = getattr(submission, "max_per_minute", DEFAULT_PER_MINUTE)
    default_day = getattr(submission, "max_per_day", DEFAULT_PER_DAY)
    per_minute = account.per_minute or default_minute
    per_day = account.per_day or default_day
    return per_minute or None, per_day or None


def _limits_text(config: Config, account: SmtpAccount) -> str:
    per_minute, per_day = _effective_limits(config, account)
    parts = []
    for value, override, unit in (
        (per_minute, account.per_minute, "per minute"),
        (per_day, account.per_day, "per day"),
    ):
        amount = f"{value} {unit}" if value is not None else f"no limit {unit}"
        parts.append(f"{amount} ({'set for this mailbox' if override else 'default'})")
    return ", ".join(parts)
