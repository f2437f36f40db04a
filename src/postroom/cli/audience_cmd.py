"""`postroom address check`, `postroom contact import`, `postroom contact template`.

Every address that enters postroom goes through one validator
(`postroom.campaign.addresses`). `address check ADDRESS... [--file PATH]
[--json]` prints one verdict per input (the contract shape of ARCHITECTURE.md
with --json, a table without) and exits 1 when any input is invalid (risky
and duplicate inputs are not: sending to them is the operator's decision).
`contact import FILE.csv --project P [--list L] [--dry-run]
[--apply-suggestions] [--include-risky]` validates every row and prints a
report of accepted, fixed, invalid, risky and duplicate rows with their line
numbers (a fixed row shows what it became and why). What is atomic: the rows
to import (accepted and fixed ones, risky ones with --include-risky) go in
one transaction, all or none of them; invalid rows are reported and never
imported, so a file with invalid rows still imports its valid ones (exit 0).
The DNS step follows `[addresses] dns` unless `--dns`/`--no-dns` says otherwise.
Without a config file at the default path the defaults serve (a pure check
needs no server); a named config file must exist.

Config keys: [addresses] (allow_quoted, allow_ip_literal, dns,
disposable_domains, role_local_parts), [dns] nameservers, [rating].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_config_option,
    add_group,
    config_or_defaults,
    open_database,
    print_json,
    read_input_file,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.campaign.addresses.validator import Validator
    from postroom.campaign.csv_import import ImportPlan, ParsedCsv, RowOutcome
    from postroom.config import Config

MAX_LISTED_ROWS = 200  # the text report lists this many problem rows, then counts
MAX_ADDRESS_FILE_BYTES = 64 * 1024 * 1024
IMPORT_HELP = (
    "validate a CSV file and import its valid rows in one transaction (all or none of "
    "them); invalid rows are reported, never imported"
)


def register_address(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "address", "address validation")
    check_help = "validate addresses (typos, junk, DNS, ...); exit 1 when any is invalid"
    check = actions.add_parser("check", help=check_help, description=check_help)
    add_config_option(check)
    check.add_argument("addresses", nargs="*", metavar="ADDRESS", help="an address to check")
    check.add_argument("--file", metavar="PATH", help="one address per line")
    check.add_argument("--json", action="store_true", help="one JSON object per input")
    dns_options(check)
    check.set_defaults(handler=_check)


def register_contact_verbs(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    template_help = "print the CSV template for imports"
    template = actions.add_parser("template", help=template_help, description=template_help)
    add_config_option(template)
    template.set_defaults(handler=_template)
    imports = actions.add_parser(
        "import", help="import contacts from a CSV file", description=IMPORT_HELP
    )
    add_config_option(imports)
    imports.add_argument(
        "file", metavar="FILE.csv", help="header row with email (contact template)"
    )
    imports.add_argument("--project", required=True, metavar="NAME", help="the contacts' project")
    imports.add_argument("--list", metavar="NAME", help="put every imported contact on it")
    imports.add_argument("--dry-run", action="store_true", help="validate and report only")
    imports.add_argument(
        "--apply-suggestions",
        action="store_true",
        help="import a typo's correction instead of refusing the row (gmial.com → gmail.com)",
    )
    imports.add_argument("--include-risky", action="store_true", help="import risky rows too")
    imports.add_argument("--json", action="store_true", help="the report as JSON")
    dns_options(imports)
    imports.set_defaults(handler=_import)


def dns_options(parser: argparse.ArgumentParser) -> None:
    dns = parser.add_mutually_exclusive_group()
    dns.add_argument(
        "--dns",
        dest="dns",
        action="store_true",
        default=None,
        help="look up each domain's MX or A/AAAA (default: [addresses] dns, which is on)",
    )
    dns.add_argument(
        "--no-dns", dest="dns", action="store_false", help="skip the MX and A/AAAA lookups"
    )


def _validator(config: Config, args: argparse.Namespace) -> Validator:
    return validator_for(config, args.dns)


def validator_for(config: Config, dns: bool | None) -> Validator:
    """The one validator as configured; `dns` None follows `[addresses] dns`."""
    from postroom.campaign.addresses.model import ValidationPolicy
    from postroom.campaign.addresses.validator import Validator
    from postroom.core.dns import Resolver

    settings = config.addresses
    policy = ValidationPolicy(
        allow_quoted=settings.allow_quoted,
        allow_ip_literal=settings.allow_ip_literal,
        dns=settings.dns if dns is None else dns,
        extra_disposable=frozenset(settings.disposable_domains),
        extra_roles=frozenset(settings.role_local_parts),
    )
    return Validator(policy, Resolver.from_config(config.dns) if policy.dns else None)


def checked_address(args: argparse.Namespace, text: str, *, accept_risky: bool) -> str:
    """The validated address of one input; a CliError (exit 2) when it is invalid, or
    risky without the operator's consent."""
    (address,) = checked_addresses(args, [text], accept_risky=accept_risky)
    return address


def checked_addresses(
    args: argparse.Namespace, texts: list[str], *, accept_risky: bool
) -> list[str]:
    """The validated addresses of `texts` (an input repeating an earlier one's mailbox
    is left out); a CliError naming the first invalid input, or risky one without the
    operator's consent, before anything is changed."""
    import asyncio

    validator = _validator(config_or_defaults(args.config), args)
    addresses = []
    for verdict in asyncio.run(validator.validate(texts)):
        why = ", ".join(verdict.reasons)
        if verdict.suggestion:
            why += f"; did you mean {verdict.suggestion}?"
        if verdict.verdict == "invalid" or verdict.address is None:
            raise CliError(f"{verdict.input!r}: invalid address ({why})")
        if verdict.verdict == "risky" and not accept_risky:
            raise CliError(
                f"{verdict.input!r}: risky address ({why}); add --accept-risky to add it anyway"
            )
        if verdict.verdict != "duplicate":
            addresses.append(verdict.address)
    return addresses


def _check(args: argparse.Namespace) -> int:
    """Exit 1 when any input is invalid: the answer to "are these addresses good?"."""
    import asyncio

    inputs = list(args.addresses)
    if args.file:
        data = read_input_file(Path(args.file), MAX_ADDRESS_FILE_BYTES)
        text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
        inputs += [line for line in text.splitlines() if line.strip()]
    if not inputs:
        raise CliError("address check: give addresses or --file PATH")
    verdicts = asyncio.run(_validator(config_or_defaults(args.config), args).validate(inputs))
    if args.json:
        for verdict in verdicts:
            print_json(verdict.as_json())
    else:
        print_table(
            ("VERDICT", "ADDRESS", "REASONS / SUGGESTION"),
            [
                (
                    v.verdict,
                    v.address or repr(v.input),
                    _notes(v.reasons, v.suggestion, v.duplicate_of),
                )
                for v in verdicts
            ],
        )
    return 1 if any(verdict.verdict == "invalid" for verdict in verdicts) else 0


def _notes(reasons: tuple[str, ...], suggestion: str | None, duplicate_of: str | None) -> str:
    notes = ", ".join(reasons)
    if suggestion:
        notes += f"; did you mean {suggestion}?"
    if duplicate_of:
        notes += f"; duplicate of {duplicate_of}"
    return notes


def _template(args: argparse.Namespace) -> int:
    from postroom.campaign.csv_import import TEMPLATE

    sys.stdout.write(TEMPLATE)
    return 0


def _import(args: argparse.Namespace) -> int:
    from postroom.rating.bulk import import_contacts
    from postroom.rating.contacts import ContactError, check_list_name

    if args.list is not None:
        try:
            check_list_name(args.list)
        except ContactError as error:
            raise CliError(str(error)) from None
    prepared = PreparedImport(args, Path(args.file))
    try:
        created, existing = import_contacts(
            prepared.contacts,
            args.project,
            prepared.rows,
            list_name=args.list,
            detail=prepared.detail,
            dry_run=args.dry_run,
        )
    except ContactError as error:
        raise CliError(str(error)) from None
    _report(args, prepared.parsed, prepared.plan, created, existing)
    return 0


class PreparedImport:
    """A CSV file read and validated, its rows ready to import (nothing written yet)."""

    def __init__(self, args: argparse.Namespace, path: Path) -> None:
        import asyncio

        from postroom.campaign.csv_import import CsvError, read_contacts_csv
        from postroom.config import load_config
        from postroom.rating.bulk import ImportedContact
        from postroom.rating.contacts import ContactError, Contacts, project_id_of
        from postroom.rating.rules import Rules

        config = load_config(args.config)
        try:
            self.parsed = read_contacts_csv(path)
        except CsvError as error:
            raise CliError(str(error)) from None
        self.contacts = Contacts(open_database(args.config), Rules(config.rating))
        # Refused before validating: with DNS, a large file takes minutes to check.
        try:
            with self.contacts.engine.connect() as conn:
                project_id_of(conn, args.project)
        except ContactError as error:
            raise CliError(str(error)) from None
        self.plan = asyncio.run(_plan(_validator(config, args), self.parsed, args))
        self.detail = f"imported from {path.name}"
        self.rows = [
            ImportedContact(
                address=address,
                name=row.name,
                variables=row.variables,
                line=row.line,
                stage=row.stage,
                state=row.state,
                channels=row.channels,
                registered_at=row.registered_at,
            )
            for row, address in self.plan.to_import
        ]


def print_import_report(prepared: PreparedImport, path: Path, created: int, existing: int) -> None:
    """The text report of `contact import` for an import made by another command."""
    report_args = argparse.Namespace(file=str(path), dry_run=False, json=False)
    _report(report_args, prepared.parsed, prepared.plan, created, existing)


async def _plan(validator: Validator, parsed: ParsedCsv, args: argparse.Namespace) -> ImportPlan:
    from postroom.campaign.csv_import import plan_import

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
        print(f"  line {outcome.line}: {_problem_text(outcome)}")
    if len(problems) > MAX_LISTED_ROWS:
        print(f"  ... and {len(problems) - MAX_LISTED_ROWS} more (see --json)")


def _problem_text(outcome: RowOutcome) -> str:
    """`fixed 'john@gmial.com' → 'john@gmail.com' (typo of gmail.com)`; other rows
    their category, the input and why."""
    from postroom.campaign.csv_import import FIX_REASONS

    if outcome.category != "fixed":
        notes = _notes(outcome.reasons, outcome.suggestion, outcome.duplicate_of)
        return f"{outcome.category} {outcome.input!r}: {notes}"
    domain = (outcome.address or "").rpartition("@")[2]
    why = ", ".join(
        FIX_REASONS.get(reason, reason.replace("_", " ")).format(domain)
        for reason in outcome.reasons
    )
    return f"fixed {outcome.input!r} → {outcome.address!r} ({why})"


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
