"""`postroom address check`, `postroom contact import`, `postroom contact template`.

Every address that enters postroom goes through one validator
(`postroom.campaign.addresses`). `address check ADDRESS... [--file PATH]
[--json]` prints one verdict per input (the contract shape of ARCHITECTURE.md
with --json, a table without). `contact import FILE.csv --project P [--list L]
[--dry-run] [--apply-suggestions] [--include-risky]` validates every row, prints
a report of accepted, fixed, invalid, risky and duplicate rows with their line
numbers, and imports in one transaction (all or nothing; invalid rows never).
The DNS step follows `[addresses] dns` unless `--dns`/`--no-dns` says otherwise.
Without a config file at the default path the defaults serve (a pure check
needs no server); a named config file must exist.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from postroom.campaign.addresses.model import AddressVerdict, ValidationPolicy
from postroom.campaign.addresses.validator import Validator
from postroom.campaign.csv_import import (
    TEMPLATE,
    CsvError,
    ImportPlan,
    ParsedCsv,
    plan_import,
    read_contacts_csv,
)
from postroom.cli.common import (
    CliError,
    add_config_option,
    add_group,
    config_or_defaults,
    open_database,
    print_json,
)
from postroom.config import Config, load_config
from postroom.core.dns import Resolver
from postroom.rating.bulk import ImportedContact, import_contacts
from postroom.rating.contacts import ContactError, Contacts, check_list_name, project_id_of
from postroom.rating.rules import Rules

MAX_LISTED_ROWS = 200  # the text report lists this many problem rows, then counts


def register_address(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "address", "address validation")
    check = actions.add_parser("check", help="validate addresses (typos, junk, DNS, ...)")
    add_config_option(check)
    check.add_argument("addresses", nargs="*", metavar="ADDRESS")
    check.add_argument("--file", metavar="PATH", help="one address per line")
    check.add_argument("--json", action="store_true", help="one JSON object per input")
    dns_options(check)
    check.set_defaults(handler=_check)


def register_contact_verbs(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    template = actions.add_parser("template", help="print the CSV template for imports")
    add_config_option(template)
    template.set_defaults(handler=_template)
    imports = actions.add_parser("import", help="import contacts from a CSV file")
    add_config_option(imports)
    imports.add_argument("file", metavar="FILE.csv")
    imports.add_argument("--project", required=True, metavar="NAME")
    imports.add_argument("--list", metavar="NAME", help="put every imported contact on it")
    imports.add_argument("--dry-run", action="store_true", help="validate and report only")
    imports.add_argument(
        "--apply-suggestions", action="store_true", help="import typo fixes (gmial → gmail)"
    )
    imports.add_argument("--include-risky", action="store_true", help="import risky rows too")
    imports.add_argument("--json", action="store_true", help="the report as JSON")
    dns_options(imports)
    imports.set_defaults(handler=_import)


def dns_options(parser: argparse.ArgumentParser) -> None:
    dns = parser.add_mutually_exclusive_group()
    dns.add_argument("--dns", dest="dns", action="store_true", default=None)
    dns.add_argument("--no-dns", dest="dns", action="store_false", help="skip MX/A lookups")


def _validator(config: Config, args: argparse.Namespace) -> Validator:
    settings = config.addresses
    policy = ValidationPolicy(
        allow_quoted=settings.allow_quoted,
        allow_ip_literal=settings.allow_ip_literal,
        dns=settings.dns if args.dns is None else args.dns,
        extra_disposable=frozenset(settings.disposable_domains),
        extra_roles=frozenset(settings.role_local_parts),
    )
    return Validator(policy, Resolver.from_config(config.dns) if policy.dns else None)


def checked_address(args: argparse.Namespace, text: str, *, accept_risky: bool) -> str:
    """The validated address of one input; a CliError (exit 2) when it is invalid, or
    risky without the operator's consent."""
    (verdict,) = asyncio.run(_validator(config_or_defaults(args.config), args).validate([text]))
    why = ", ".join(verdict.reasons)
    if verdict.suggestion:
        why += f"; did you mean {verdict.suggestion}?"
    if verdict.verdict == "invalid" or verdict.address is None:
        raise CliError(f"{text!r}: invalid address ({why})")
    if verdict.verdict == "risky" and not accept_risky:
        raise CliError(f"{text!r}: risky address ({why}); add --accept-risky to add it anyway")
    return verdict.address


def _check(args: argparse.Namespace) -> int:
    inputs = list(args.addresses)
    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8-sig", errors="replace")
        except OSError as error:
            raise CliError(f"{args.file}: cannot read: {error.strerror}") from None
        inputs += [line for line in text.splitlines() if line.strip()]
    if not inputs:
        raise CliError("address check: give addresses or --file PATH")
    verdicts = asyncio.run(_validator(config_or_defaults(args.config), args).validate(inputs))
    if args.json:
        for verdict in verdicts:
            print_json(verdict.as_json())
        return 0
    print(f"{'VERDICT':10}  {'ADDRESS':40}  REASONS / SUGGESTION")
    for verdict in verdicts:
        print(_row(verdict))
    return 0


def _row(verdict: AddressVerdict) -> str:
    notes = ", ".join(verdict.reasons)
    if verdict.suggestion:
        notes += f"; did you mean {verdict.suggestion}?"
    if verdict.duplicate_of:
        notes += f"; duplicate of {verdict.duplicate_of}"
    shown = verdict.address or repr(verdict.input)
    return f"{verdict.verdict:10}  {shown:40}  {notes}"


def _template(args: argparse.Namespace) -> int:
    sys.stdout.write(TEMPLATE)
    return 0


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        parsed = read_contacts_csv(Path(args.file))
    except CsvError as error:
        raise CliError(str(error)) from None
    contacts = Contacts(open_database(args.config), Rules(config.rating))
    # Refused before validating: with DNS, a large file takes minutes to check.
    try:
        if args.list is not None:
            check_list_name(args.list)
        with contacts.engine.connect() as conn:
            project_id_of(conn, args.project)
    except ContactError as error:
        raise CliError(str(error)) from None
    validator = _validator(config, args)
    plan = asyncio.run(_plan(validator, parsed, args))
    rows = [
        ImportedContact(address=address, name=row.name, variables=row.variables, line=row.line)
        for row, address in plan.to_import
    ]
    try:
        created, existing = import_contacts(
            contacts,
            args.project,
            rows,
            list_name=args.list,
            detail=f"imported from {Path(args.file).name}",
            dry_run=args.dry_run,
        )
    except ContactError as error:
        raise CliError(str(error)) from None
    _report(args, parsed, plan, created, existing)
    return 0


async def _plan(validator: Validator, parsed: ParsedCsv, args: argparse.Namespace) -> ImportPlan:
    progress = _Progress(len(parsed.rows)) if sys.stderr.isatty() else None
    verdicts = await validator.validate(
        [row.email for row in parsed.rows],
        progress=progress.update if progress else None,
    )
    if progress:
        progress.done()
    suggested: dict[int, object] = {}
    if args.apply_suggestions:
        fixes = [
            (index, verdict.suggestion)
            for index, verdict in enumerate(verdicts)
            if verdict.verdict == "invalid" and verdict.suggestion
        ]
        if fixes:
            # Validated again, with every other row: a fix may duplicate one.
            inputs = [row.email for row in parsed.rows]
            for index, suggestion in fixes:
                inputs[index] = suggestion  # type: ignore[assignment]
            again = await validator.validate(inputs)
            suggested = {index: again[index] for index, _ in fixes}
    return plan_import(parsed.rows, verdicts, suggested=suggested, include_risky=args.include_risky)


def _report(
    args: argparse.Namespace, parsed: ParsedCsv, plan: ImportPlan, created: int, existing: int
) -> None:
    counts = {
        category: plan.count(category)
        for category in ("accepted", "fixed", "invalid", "risky", "duplicate")
    }
    problems = [outcome for outcome in plan.outcomes if outcome.category != "accepted"]
    if args.json:
        print_json(
            {
                "file": args.file,
                "encoding": parsed.encoding,
                "delimiter": parsed.delimiter,
                "rows": len(parsed.rows),
                **counts,
                "imported": 0 if args.dry_run else created,
                "would_import": created if args.dry_run else None,
                "already_contacts": existing,
                "dry_run": args.dry_run,
                "problems": [
                    {
                        "line": o.line,
                        "input": o.input,
                        "address": o.address,
                        "category": o.category,
                        "reasons": list(o.reasons),
                        "suggestion": o.suggestion,
                        "duplicate_of": o.duplicate_of,
                    }
                    for o in problems
                ],
            }
        )
        return
    print(
        f"{args.file}: {len(parsed.rows)} rows ({parsed.encoding}, delimiter {parsed.delimiter!r})"
    )
    print("  " + ", ".join(f"{count} {category}" for category, count in counts.items()))
    verb = "would import" if args.dry_run else "imported"
    print(f"  {verb} {created} new contact(s); {existing} already contact(s)")
    for outcome in problems[:MAX_LISTED_ROWS]:
        notes = ", ".join(outcome.reasons)
        if outcome.suggestion:
            notes += f"; did you mean {outcome.suggestion}?"
        if outcome.duplicate_of:
            notes += f"; duplicate of {outcome.duplicate_of}"
        print(f"  line {outcome.line}: {outcome.category:9} {outcome.input!r}: {notes}")
    if len(problems) > MAX_LISTED_ROWS:
        print(f"  ... and {len(problems) - MAX_LISTED_ROWS} more (see --json)")


class _Progress:
    """A one-line progress bar on stderr (terminals only)."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.shown = -1

    def update(self, done: int) -> None:
        percent = done * 100 // self.total
        if percent != self.shown:
            self.shown = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\rvalidating [{bar:25}] {percent:3d}% ({done}/{self.total})")
            sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
