"""`postroom project add|list|limit`, `postroom domain add|list|verify`,
`postroom domain dkim rotate|list|refresh`; the parsers of `domain dns|check`
and `dns self` too, whose commands live in `records_cmd`.

A project's message limit counts accepted recipients per UTC calendar month
(`project limit NAME N|none`; `project list` shows this month's usage). A
project links a domain (`domain add` prints the TXT proof), proves it
(`domain verify` looks the proof up through `[dns] nameservers` and, once
found, creates the DKIM keys), publishes what `domain dns` prints, and checks
it with `domain check`. Exit status (the CLI's convention): 1 is the answer
"no" — `domain verify` while the proof is not published, `domain check` while
a required record is not ok; 2 is bad input, an unknown project or domain, or
trouble that left the question open (a DNS failure, the secret key file): one
line naming the problem, nothing changed.

Config keys: [server] hostname, [[egress]] address/helo, [dns] nameservers,
[dkim], [secrets] key_file, [state] dir.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli import records_cmd
from postroom.cli.common import (
    CliError,
    add_action,
    add_config_option,
    add_format_option,
    add_group,
    open_database,
    print_json,
    utc_date,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.config import Config
    from postroom.core.dns import Resolver
    from postroom.mailbox.directory import Directory, Domain
    from postroom.mailbox.keyring import Keyring
    from postroom.mailbox.zone.expected import Egress
    from postroom.mailbox.zone.render import DnsRecord

Handler = Callable[["Context", argparse.Namespace], int]


class Context:
    """What every command here needs, opened once; the key ring (and the secret key
    file behind it) only for the commands that use keys."""

    def __init__(self, config_path: str) -> None:
        from postroom.config import load_config
        from postroom.mailbox.directory import Directory

        self.config: Config = load_config(config_path)
        self.directory: Directory = Directory(open_database(config_path))

    @functools.cached_property
    def keyring(self) -> Keyring:
        from postroom.mailbox.keyring import Keyring

        return Keyring(
            self.directory,
            self.config.dkim,
            Path(self.config.secret_key_file),
            Path(self.config.state.dir),
        )

    def resolver(self) -> Resolver:
        from postroom.core.dns import Resolver

        return Resolver.from_config(self.config.dns)

    @property
    def mail_host(self) -> str:
        """Our host name as DNS records name it (the MX target)."""
        return self.config.server.hostname.lower().rstrip(".")

    @property
    def egress(self) -> list[Egress]:
        from postroom.mailbox.zone.expected import Egress

        hostname = self.config.server.hostname
        return [Egress(e.address, e.helo or hostname) for e in self.config.egress]

    def domain(self, text: str) -> Domain:
        from postroom.mailbox.names import normalise_domain

        return self.directory.domain(normalise_domain(text))


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    project = add_group(verbs, "project", "tenants: projects own domains and mailboxes")
    add = _action(project, "add", "create a project", _project_add)
    add.add_argument("name", metavar="NAME", help="the project's name")
    add.add_argument(
        "--message-limit",
        type=int,
        metavar="N",
        help="messages it may send per UTC month (default: no limit)",
    )
    _action(project, "list", "projects and their usage this month", _project_list)
    limit = _action(project, "limit", "set the monthly message limit", _project_limit)
    limit.add_argument("name", metavar="NAME", help="the project")
    limit.add_argument("limit", metavar="N", help="messages per month, or 'none' for no limit")

    domain = add_group(verbs, "domain", "linked domains: proof, DNS records, DKIM keys")
    domain_add = _action(domain, "add", "link a domain to a project", _domain_add)
    domain_add.add_argument("domain", metavar="DOMAIN", help=_DOMAIN_HELP)
    domain_add.add_argument("--project", required=True, metavar="NAME", help="its project")
    listing = _action(domain, "list", "linked domains", _domain_list)
    listing.add_argument("--project", metavar="NAME", help="only this project's domains")
    for name, help_text, handler in (
        ("verify", "look up the TXT proof; verified → DKIM keys (exit 1: not published)", _verify),
        ("dns", "every record the domain needs", records_cmd.domain_dns),
        (
            "check",
            "compare live DNS with what is needed (exit 1: a required record is not ok)",
            records_cmd.domain_check,
        ),
    ):
        action = _action(domain, name, help_text, handler)
        action.add_argument("domain", metavar="DOMAIN", help=_DOMAIN_HELP)
        if name == "dns":
            add_format_option(action, records_cmd.FORMATS)

    dkim_parser = domain.add_parser("dkim", help="DKIM keys and their rotation")
    add_config_option(dkim_parser)
    dkim = dkim_parser.add_subparsers(dest="dkim_verb", required=True, metavar="ACTION")
    for name, help_text, handler in (
        ("rotate", "create the next key (pending until DNS shows it)", _dkim_rotate),
        ("list", "selectors and their states", _dkim_list),
        ("refresh", "activate pending keys DNS shows; retire old ones", _dkim_refresh),
    ):
        _action(dkim, name, help_text, handler).add_argument(
            "domain", metavar="DOMAIN", help=_DOMAIN_HELP
        )

    dns = add_group(verbs, "dns", "records of this appliance itself")
    own = _action(
        dns, "self", "the SPF include host and reverse DNS of egress IPs", records_cmd.dns_self
    )
    add_format_option(own, records_cmd.FORMATS)


_DOMAIN_HELP = "a linked domain (Unicode or A-labels, case and final dot ignored)"


def _action(group, name: str, help_text: str, handler) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    return add_action(group, name, help_text, lambda args: _run(handler, args))


def _run(handler: Handler, args: argparse.Namespace) -> int:
    from postroom.core.secretbox import SecretKeyError
    from postroom.mailbox.directory import DirectoryError
    from postroom.mailbox.names import InvalidName

    try:
        return handler(Context(args.config), args)
    except (DirectoryError, InvalidName, SecretKeyError) as error:
        raise CliError(str(error)) from None


# -- projects -------------------------------------------------------------------


def _project_add(ctx: Context, args: argparse.Namespace) -> int:
    project = ctx.directory.add_project(args.name, args.message_limit)
    if args.json:
        print_json({"name": project.name, "message_limit": project.message_limit})
    else:
        limit = project.message_limit if project.message_limit is not None else "none"
        print(f"project {project.name} created (message limit: {limit})")
    return 0


def _project_limit(ctx: Context, args: argparse.Namespace) -> int:
    text = args.limit.strip().lower()
    if text == "none":
        limit = None
    else:
        try:
            limit = int(text)
        except ValueError:
            limit = -1
        if limit < 0:
            raise CliError(f"message limit {args.limit!r}: a number 0 or more, or 'none'")
    from postroom.mailbox.usage import ProjectUsage

    project = ctx.directory.set_message_limit(args.name, limit)
    used, _ = ProjectUsage(ctx.directory.engine).usage(project.id)
    if args.json:
        print_json({"name": project.name, "message_limit": project.message_limit, "used": used})
    else:
        shown = project.message_limit if project.message_limit is not None else "none"
        print(f"project {project.name}: message limit {shown} (used this month: {used})")
    return 0


def _project_list(ctx: Context, args: argparse.Namespace) -> int:
    from postroom.mailbox.usage import ProjectUsage

    usage = ProjectUsage(ctx.directory.engine)
    rows = [
        {
            "name": p.name,
            "message_limit": p.message_limit,
            "used": usage.usage(p.id)[0],
            "domains": 0,
        }
        for p in ctx.directory.projects()
    ]
    for domain in ctx.directory.domains():
        next(row for row in rows if row["name"] == domain.project)["domains"] += 1  # type: ignore[operator]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("PROJECT", "MESSAGE LIMIT", "USED", "DOMAINS"),
        [(r["name"], r["message_limit"], r["used"], r["domains"]) for r in rows],
        right=(1, 2, 3),
    )
    return 0


# -- domains --------------------------------------------------------------------


def _proof_record(domain: Domain) -> DnsRecord:
    from postroom.mailbox.zone.render import DnsRecord

    return DnsRecord(
        domain.name, "TXT", domain.verification_text, True, "proves that this project owns it"
    )


def _domain_add(ctx: Context, args: argparse.Namespace) -> int:
    from postroom.mailbox.names import display_domain, normalise_domain
    from postroom.mailbox.zone.render import records_json, render_bind

    domain = ctx.directory.add_domain(normalise_domain(args.domain), args.project)
    record = _proof_record(domain)
    if args.json:
        print_json({**_domain_json(domain), "record": records_json([record])[0]})
        return 0
    print(f"domain {display_domain(domain.name)} added to project {domain.project} (unverified)")
    print("publish this record, then run `postroom domain verify`:")
    print(render_bind([record]), end="")
    return 0


def _domain_json(domain: Domain) -> dict[str, object]:
    return {
        "domain": domain.name,
        "project": domain.project,
        "state": domain.state.value,
        "verification": domain.verification_text,
    }


def _domain_list(ctx: Context, args: argparse.Namespace) -> int:
    from postroom.mailbox.names import display_domain

    domains = ctx.directory.domains(args.project)
    if args.json:
        print_json([_domain_json(domain) for domain in domains])
        return 0
    print_table(
        ("DOMAIN", "PROJECT", "STATE"),
        [(display_domain(d.name), d.project, d.state.value) for d in domains],
    )
    return 0


def _verify(ctx: Context, args: argparse.Namespace) -> int:
    import asyncio

    from postroom.mailbox.ownership import look_for_proof

    domain = ctx.domain(args.domain)
    if domain.verified:
        print(f"domain {domain.name} is already verified")
        return 0
    result = asyncio.run(look_for_proof(ctx.resolver(), domain))
    if not result.found:
        # No proof published is the answer "no" (1); a DNS failure left the
        # question open: trouble, try again (2).
        status = 2 if result.temporary else 1
        if args.json:
            print_json({**_domain_json(domain), "found": False, "message": result.message})
            return status
        raise CliError(f"domain {domain.name} not verified: {result.message}", status)
    domain = ctx.directory.mark_verified(domain.name, ctx.keyring.first_keys(domain.name))
    selectors = [key.selector for key in ctx.directory.dkim_keys(domain.name)]
    if args.json:
        print_json({**_domain_json(domain), "found": True, "dkim_selectors": selectors})
    else:
        print(f"domain {domain.name} verified: {result.message}")
        print(f"DKIM selector(s) {', '.join(selectors)} created; publish `postroom domain dns`")
    return 0


# -- DKIM -------------------------------------------------------------------------


def _dkim_rotate(ctx: Context, args: argparse.Namespace) -> int:
    from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value
    from postroom.mailbox.keyring import key_host
    from postroom.mailbox.zone.render import DnsRecord, render_bind

    domain = ctx.domain(args.domain)
    new = ctx.keyring.rotate(domain.name)
    if args.json:
        print_json([{"selector": key.selector, "algorithm": key.algorithm} for key in new])
        return 0
    for key in new:
        print(f"selector {key.selector} ({key.algorithm}) created as pending; publish:")
        record = DnsRecord(
            key_host(key.selector, domain.name),
            "TXT",
            dkim_txt_value(KeyAlgorithm(key.algorithm), key.public_key),
            True,
            "the next DKIM key; it starts signing once DNS shows it",
        )
        print(render_bind([record]), end="")
    return 0


def _dkim_list(ctx: Context, args: argparse.Namespace) -> int:
    domain = ctx.domain(args.domain)
    rows = [
        {
            "selector": key.selector,
            "algorithm": key.algorithm,
            "state": key.state,
            "since": key.state_since,
            "created_at": key.created_at,
        }
        for key in ctx.directory.dkim_keys(domain.name)
    ]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("SELECTOR", "ALGORITHM", "STATE", "SINCE"),
        [(r["selector"], r["algorithm"], r["state"], utc_date(r["since"])) for r in rows],
    )
    return 0


def _dkim_refresh(ctx: Context, args: argparse.Namespace) -> int:
    import asyncio

    domain = ctx.domain(args.domain)
    transitions = asyncio.run(ctx.keyring.refresh(domain.name, ctx.resolver()))
    if args.json:
        print_json(
            [
                {"selector": t.selector, "from": t.from_state, "to": t.to_state, "reason": t.reason}
                for t in transitions
            ]
        )
        return 0
    for t in transitions:
        print(f"{t.selector}: {t.from_state} → {t.to_state} ({t.reason})")
    if not transitions:
        print("no change")
    return 0
