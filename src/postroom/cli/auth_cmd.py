"""`postroom auth check FILE.eml --client-ip IP --helo NAME --mail-from ADDR [--json]`.

Runs the port 25 authentication checks (SPF for HELO and MAIL FROM, every DKIM
signature, ARC, DMARC) on a saved message, through the configured resolver
(`[dns] nameservers`), and prints each verdict, what the `[checks]` table
would do with the message, and the Authentication-Results field we would add:
for operators debugging why a delivery was refused or junked. Works without a
config file at the default path (the defaults). `--mail-from ""` is the null
sender. Exit 0 when the message would be accepted, 1 when it would be
quarantined, refused or deferred, 2 for bad input (file, address, IP).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_action,
    add_group,
    config_or_defaults,
    read_input_file,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.mta.checks.pipeline import CheckOutcome

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "auth", "message authentication (SPF, DKIM, DMARC, ARC)")
    check = add_action(actions, "check", "run the inbound checks on a saved message", _check)
    check.add_argument("file", metavar="FILE.eml", help="the saved message (LF or CRLF lines)")
    check.add_argument("--client-ip", required=True, metavar="IP", help="the sending server")
    check.add_argument("--helo", required=True, metavar="NAME", help="its HELO/EHLO name")
    check.add_argument(
        "--mail-from", required=True, metavar="ADDR", help='envelope sender ("" = null sender)'
    )


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from postroom.core.dns import Resolver
    from postroom.mta.checks.pipeline import InboundChecks
    from postroom.mta.checks.policy import Action

    config = config_or_defaults(args.config)
    try:
        client_ip = str(ipaddress.ip_address(args.client_ip))
    except ValueError:
        raise CliError(f"--client-ip: not an IP address: {args.client_ip!r}") from None
    mail_from = args.mail_from.strip().removeprefix("<").removesuffix(">")
    if mail_from and "@" not in mail_from:
        raise CliError(f"--mail-from: not an address: {args.mail_from!r}")
    message = _read_message(Path(args.file))
    checks = InboundChecks(Resolver.from_config(config.dns), config.checks, config.authserv_id)
    outcome = asyncio.run(
        checks.check(message, client_ip=client_ip, helo=args.helo, mail_from=mail_from)
    )
    if args.json:
        json.dump(_as_json(args.file, outcome), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _print(outcome)
    return 0 if outcome.decision.action is Action.ACCEPT else 1


def _read_message(path: Path) -> bytes:
    from postroom.mta.inbound.handler import has_bare_line_ending

    data = read_input_file(path, MAX_MESSAGE_BYTES)
    if not data.strip():
        raise CliError(f"{path}: empty file")
    if has_bare_line_ending(data):
        # Saved files often have LF line ends; SMTP would have carried CRLF.
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def _as_json(file: str, outcome: CheckOutcome) -> dict[str, object]:
    verdicts = outcome.verdicts
    return {
        "file": file,
        "spf": {
            identity: {
                "result": verdict.result.value,
                "domain": verdict.domain,
                "sender": verdict.sender,
                "explanation": verdict.explanation,
            }
            for identity, verdict in (
                ("helo", verdicts.spf.helo),
                ("mailfrom", verdicts.spf.mail_from),
            )
        },
        "dkim": [
            {
                "result": verdict.result.value,
                "domain": verdict.domain,
                "selector": verdict.selector,
                "algorithm": verdict.algorithm,
                "reason": verdict.reason,
            }
            for verdict in verdicts.dkim
        ],
        "dmarc": {
            "result": verdicts.dmarc.result.value,
            "from_domain": verdicts.dmarc.from_domain,
            "policy_domain": verdicts.dmarc.policy_domain,
            "policy": verdicts.dmarc.policy.value if verdicts.dmarc.policy else None,
            "disposition": verdicts.dmarc.disposition.value,
            "spf_aligned": verdicts.dmarc.spf_aligned,
            "dkim_aligned": verdicts.dmarc.dkim_aligned,
            "reason": verdicts.dmarc.reason,
        },
        "arc": {
            "result": verdicts.arc.result.value,
            "instances": verdicts.arc.instances,
            "sealer": verdicts.arc.sealer,
            "reason": verdicts.arc.reason,
        },
        "action": outcome.decision.action.value,
        "reason": outcome.decision.reason,
        "reply": outcome.decision.reply.wire().strip() if outcome.decision.reply else None,
        "authentication_results": outcome.header.decode("utf-8", "replace").rstrip("\r\n"),
    }


def _print(outcome: CheckOutcome) -> None:
    """One row per check (check, result, what it is about, why), columns measured."""
    verdicts = outcome.verdicts
    rows: list[tuple[str, str, str, str]] = [
        (f"spf ({identity})", spf.result.value, spf.domain or "-", spf.explanation)
        for identity, spf in (("helo", verdicts.spf.helo), ("mailfrom", verdicts.spf.mail_from))
    ]
    rows += [
        (
            "dkim",
            dkim.result.value,
            f"d={dkim.domain} s={dkim.selector} a={dkim.algorithm}",
            dkim.reason,
        )
        for dkim in verdicts.dkim
    ] or [("dkim", "none", "-", "no signature")]
    dmarc, arc = verdicts.dmarc, verdicts.arc
    rows.append(("dmarc", dmarc.result.value, dmarc.from_domain or "-", dmarc.reason))
    rows.append(("arc", arc.result.value, arc.sealer or "-", arc.reason))
    decision = outcome.decision
    reply = f" → {decision.reply.wire().strip()}" if decision.reply else ""
    rows.append(("action", decision.action.value, "-", decision.reason + reply))
    print_table(("CHECK", "RESULT", "FOR", "WHY"), rows)
    print(outcome.header.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", "\n"))
