"""`postroom campaign ...` (drafts, audience, preview, test copies, copies, resends)
and `postroom contact history`.

- `campaign create --project P --name NAME --sender ADDRESS --template T
  [audience flags] [--csv FILE]` prints the new id alone on the last line of
  stdout (`--json`: `{"id": N}`). `--csv` imports the file through the same
  validator and report as `contact import` into a list made for the campaign,
  in the campaign's transaction: a file that fails leaves nothing behind.
- `campaign edit ID [--name] [--sender] [--template] [--clear-audience]
  [audience flags]`: drafts only; each audience flag given replaces that
  condition, the others stay (`--clear-audience` starts from every contact).
  `campaign show ID [--json]`, `campaign list --project P [--state S]
  [--json]`, `campaign delete ID` (drafts).
- `campaign audience ID [--json]`: who would get it — recipients, skipped and
  why, average rating, the rating gate's verdict, and for every contact variable
  the template uses, how many recipients lack it (a report: exit 0 either way;
  `campaign launch` is the gate).
- `campaign preview ID --contact ADDRESS [--format eml|html|text] [--out FILE]`:
  exactly what that contact would get (eml: the whole signed message; html/text:
  that part of it, decoded).
- `campaign test ID --to ADDRESS... [--as CONTACT]`: test copies through the
  queue ("[TEST]" in the subject), with the fields of `--as`, else of the
  address's own contact, else the address alone; never to a contact campaigns
  skip (blocked, unsubscribed).
- `campaign copy ID [--name NAME]`: a new draft from any campaign.
- `campaign resend ID --contact ADDRESS`: a launched campaign's message again,
  to one contact (not to a blocked or unsubscribed one).
- `campaign launch ID [--at TIME] [--from-name NAME] [--interval D] [--parts N |
  --part-size N] [--part-gap D] [--pool NAME] [--history | --no-history]
  [--allow-send-only-dmarc]`: the audience snapshot and the gate
  (`campaign.launch`; settings: `campaign.launch_settings`). Exit 1 when the
  gate, DMARC or an empty audience refuses it: the draft stays, nothing queued.
  While the snapshot is written the campaign is `launching`; exit 2 when another
  launch of it is under way; one that died is started over (a note on stderr).
- `campaign pause|resume|cancel ID` (`campaign.lifecycle`); cancel says how
  many queued messages it removed.
- `campaign status ID [--json] [--watch]` (`campaign.status`): `--watch`
  redraws a progress line each second on a terminal (a line per change
  otherwise; JSON lines with --json) until the campaign is sent or cancelled.
- `contact history ADDRESS --project P [--json]`.
Bad input, unknown campaign, wrong state: one line, exit 2, nothing half-created.

Config keys: [campaign] transactional_pool, pool, timezone, history, [delivery]
default_pool, [[pool]], [http] public_url, [bounce] domain, [rating]
campaign_minimum, [addresses], [dns].
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli import audience_cmd
from postroom.cli.audience_flags import add_audience_arguments
from postroom.cli.common import (
    CliError,
    add_action,
    add_config_option,
    add_group,
    open_database,
    print_json,
    utc_date,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from postroom.campaign.audience import AudienceFilter
    from postroom.campaign.compose import Composer
    from postroom.campaign.drafts import Campaign, Campaigns
    from postroom.config import Config

PREVIEW_FORMATS = ("eml", "html", "text")
MAX_CAMPAIGN_ID = 2**31 - 1  # campaigns.id is an INTEGER column
MAX_TEST_RECIPIENTS = 20


def campaign_id(text: str) -> int:
    """An ID argument: a campaign id is a positive number the database can hold."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_CAMPAIGN_ID:
        raise argparse.ArgumentTypeError(f"not a campaign id: {text[:40]!r}")
    return int(text)


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "campaign", "campaigns (mailings): drafts, audience, preview")

    create = add_action(actions, "create", "make a draft campaign; prints its id", _create)
    create.add_argument("--project", required=True, metavar="NAME", help="its project")
    create.add_argument("--name", required=True, help="the campaign's name")
    create.add_argument("--sender", required=True, metavar="ADDRESS", help="a confirmed sender")
    create.add_argument("--template", required=True, metavar="NAME", help="the message design")
    add_audience_arguments(create)
    create.add_argument(
        "--csv", metavar="FILE", help="recipients from a CSV file (imported into its own list)"
    )
    create.add_argument("--apply-suggestions", action="store_true", help="with --csv: see import")
    create.add_argument("--include-risky", action="store_true", help="with --csv: see import")
    audience_cmd.dns_options(create)

    edit = add_action(
        actions, "edit", "change a draft (audience flags given replace theirs)", _edit
    )
    edit.add_argument("id", type=campaign_id, metavar="ID", help="the draft's id")
    edit.add_argument("--name", help="a new name")
    edit.add_argument("--sender", metavar="ADDRESS", help="another confirmed sender")
    edit.add_argument("--template", metavar="NAME", help="another template")
    edit.add_argument(
        "--clear-audience",
        action="store_true",
        help="drop every condition first (then the flags given, if any)",
    )
    add_audience_arguments(edit)

    show = add_action(actions, "show", "a campaign's settings", _show)
    show.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")

    listing = add_action(actions, "list", "a project's campaigns", _list)
    listing.add_argument("--project", required=True, metavar="NAME", help="their project")
    listing.add_argument("--state", metavar="STATE", help="only campaigns in this state")

    remove = add_action(actions, "delete", "delete a draft", _delete)
    remove.add_argument("id", type=campaign_id, metavar="ID", help="the draft's id")

    copy = add_action(actions, "copy", "a new draft from any campaign; prints its id", _copy)
    copy.add_argument("id", type=campaign_id, metavar="ID", help="the campaign to copy")
    copy.add_argument("--name", help="the copy's name (default: Copy of NAME)")

    audience = add_action(
        actions, "audience", "who would get it, who is skipped and why", _audience
    )
    audience.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")

    preview = actions.add_parser(
        "preview",
        help="exactly what one contact would get",
        description="exactly what one contact would get: the signed message (eml) or its "
        "HTML or text part",
    )
    add_config_option(preview)
    preview.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")
    preview.add_argument(
        "--contact", required=True, metavar="ADDRESS", help="a contact of the project"
    )
    preview.add_argument(
        "--format",
        choices=PREVIEW_FORMATS,
        default="eml",
        help="eml: the whole signed message (default); html or text: that part, decoded",
    )
    preview.add_argument("--out", metavar="FILE", help="write there (default: stdout)")
    preview.set_defaults(handler=_preview)

    test = add_action(actions, "test", "send test copies through the queue", _test)
    test.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")
    test.add_argument(
        "--to", required=True, nargs="+", metavar="ADDRESS", help="where the copies go"
    )
    test.add_argument(
        "--as",
        dest="as_contact",
        metavar="CONTACT",
        help="fill the template with this contact's fields (default: the address's own "
        "when it is a contact)",
    )
    audience_cmd.dns_options(test)

    resend = add_action(actions, "resend", "send a launched campaign again to one contact", _resend)
    resend.add_argument("id", type=campaign_id, metavar="ID", help="a launched campaign's id")
    resend.add_argument(
        "--contact", required=True, metavar="ADDRESS", help="the contact to send it to"
    )

    _register_sending(actions)


def _register_sending(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    launch = add_action(
        actions, "launch", "send a draft: snapshot its audience, apply the gate, schedule it",
        _launch,
    )  # fmt: skip
    launch.add_argument("id", type=campaign_id, metavar="ID", help="the draft's id")
    launch.add_argument(
        "--at",
        metavar="TIME",
        help="start then: ISO 8601 with an offset, or a time in [campaign] timezone "
        "(default and in the past: now)",
    )
    launch.add_argument(
        "--from-name", metavar="NAME", help="From display name (default: the sender's)"
    )
    launch.add_argument(
        "--interval", metavar="DURATION", help="pause between two messages, e.g. 2s (default 0)"
    )
    parts = launch.add_mutually_exclusive_group()
    parts.add_argument("--parts", type=int, metavar="N", help="split the audience in N parts")
    parts.add_argument("--part-size", type=int, metavar="N", help="parts of N recipients")
    launch.add_argument(
        "--part-gap", metavar="DURATION", help="part k starts at start + k x this (e.g. 1h)"
    )
    launch.add_argument("--pool", metavar="NAME", help="a [[pool]] (default: [campaign] pool)")
    launch.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record each message in the contact's history (default: [campaign] history)",
    )
    launch.add_argument(
        "--allow-send-only-dmarc",
        action="store_true",
        help="launch although the send-only sender's domain publishes DMARC reject/quarantine",
    )
    for verb, summary in (
        ("pause", "hold a launched campaign: nothing more leaves until resumed"),
        ("resume", "go on with a paused campaign at its pace"),
        ("cancel", "stop a campaign; its messages still waiting leave the queue"),
    ):
        action = add_action(actions, verb, summary, _lifecycle)
        action.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")
    status = add_action(actions, "status", "how a campaign is doing", _status)
    status.add_argument("id", type=campaign_id, metavar="ID", help="the campaign's id")
    status.add_argument(
        "--watch", action="store_true", help="follow it until it is sent or cancelled"
    )


def register_contact_verbs(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    history = add_action(
        actions, "history", "what the project sent the contact, and what it sent", _history
    )
    history.add_argument("address", metavar="ADDRESS", help="the contact's address")
    history.add_argument("--project", required=True, metavar="NAME", help="its project")


# -- drafts --------------------------------------------------------------------------


def _campaigns(args: argparse.Namespace) -> Campaigns:
    return _campaigns_on(open_database(args.config))


def _campaigns_on(engine: Engine) -> Campaigns:
    from postroom.campaign.drafts import Campaigns

    return Campaigns(engine)


def _audience_filter(
    args: argparse.Namespace, base: AudienceFilter | None = None
) -> AudienceFilter:
    from postroom.campaign.audience import AudienceError
    from postroom.cli.audience_flags import filter_from_args

    try:
        return filter_from_args(args, base)
    except AudienceError as error:
        raise CliError(str(error)) from None


def _create(args: argparse.Namespace) -> int:
    from postroom.campaign.drafts import CampaignError

    audience = _audience_filter(args)
    csv = _CsvRecipients(args, Path(args.csv)) if args.csv else None
    try:
        campaign_id = _campaigns(args).create(
            args.project, args.name, args.sender, args.template, audience, csv
        )
    except CampaignError as error:
        raise CliError(str(error)) from None
    if csv is not None:
        # With --json stdout holds only {"id": N}: the import report goes to stderr.
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
            csv.print_report()
    _print_id(args, campaign_id, f"created draft campaign {campaign_id}")
    return 0


class _CsvRecipients:
    """`--csv FILE`: read and validated before anything is written (a bad file is
    refused first); imported into the campaign's own list in its transaction."""

    def __init__(self, args: argparse.Namespace, path: Path) -> None:
        self.path = path
        self.prepared = audience_cmd.PreparedImport(args, path)
        self.counts = (0, 0)

    def __call__(self, conn: Connection, project_id: int, list_name: str) -> None:
        from postroom.rating.bulk import import_rows

        self.counts = import_rows(
            self.prepared.contacts,
            conn,
            project_id,
            self.prepared.rows,
            list_name=list_name,
            detail=self.prepared.detail,
        )

    def print_report(self) -> None:
        audience_cmd.print_import_report(self.prepared, self.path, *self.counts)


def _edit(args: argparse.Namespace) -> int:
    from postroom.campaign.audience import AudienceFilter
    from postroom.campaign.drafts import CampaignError
    from postroom.cli.audience_flags import flag_values

    campaigns = _campaigns(args)
    current = _get(campaigns, args.id)
    base = AudienceFilter() if args.clear_audience else current.audience
    changed = args.clear_audience or bool(flag_values(args))
    audience = _audience_filter(args, base) if changed else None
    try:
        campaign = campaigns.edit(
            args.id, name=args.name, sender=args.sender, template=args.template, audience=audience
        )
    except CampaignError as error:
        raise CliError(str(error)) from None
    _print_campaign(campaign, args.json)
    return 0


def _show(args: argparse.Namespace) -> int:
    _print_campaign(_get(_campaigns(args), args.id), args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    from postroom.campaign.drafts import CampaignError

    try:
        found = _campaigns(args).list(args.project, args.state)
    except CampaignError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json([campaign.as_json() for campaign in found])
        return 0
    print_table(
        ("ID", "STATE", "NAME", "SENDER", "TEMPLATE", "UPDATED"),
        [(c.id, c.state, c.name, c.sender, c.template, utc_date(c.updated_at)) for c in found],
        right=(0,),
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    from postroom.campaign.drafts import CampaignError

    try:
        _campaigns(args).delete(args.id)
    except CampaignError as error:
        raise CliError(str(error)) from None
    if args.json:
        print_json({"id": args.id, "deleted": True})
    else:
        print(f"deleted draft campaign {args.id}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    from postroom.campaign.drafts import CampaignError

    try:
        campaign_id = _campaigns(args).copy(args.id, args.name)
    except CampaignError as error:
        raise CliError(str(error)) from None
    _print_id(args, campaign_id, f"copied campaign {args.id} to draft {campaign_id}")
    return 0


def _get(campaigns: Campaigns, campaign_id: int) -> Campaign:
    from postroom.campaign.drafts import CampaignError

    try:
        return campaigns.get(campaign_id)
    except CampaignError as error:
        raise CliError(str(error)) from None


def _print_id(args: argparse.Namespace, campaign_id: int, summary: str) -> None:
    if args.json:
        print_json({"id": campaign_id})
    else:
        print(summary)
        print(campaign_id)


def _print_campaign(campaign: Campaign, as_json: bool) -> None:
    if as_json:
        print_json(campaign.as_json())
        return
    print(f"campaign {campaign.id}: {campaign.name} ({campaign.state})")
    print(f"  project   {campaign.project}")
    print(f"  sender    {campaign.sender_name} <{campaign.sender}>")
    print(f"  template  {campaign.template or '(content as launched)'}")
    print(f"  audience  {_described(campaign.audience)}")
    if campaign.list_name:
        print(f"  own list  {campaign.list_name}")
    if campaign.copied_from:
        print(f"  copied from campaign {campaign.copied_from}")
    print(f"  created   {utc_date(campaign.created_at)}, updated {utc_date(campaign.updated_at)}")


def _described(audience: AudienceFilter) -> str:
    """The filter's conditions as the flags that give them."""
    import json

    stored = json.loads(audience.to_json())
    conditions = [
        f"{field}={' | '.join(map(str, value)) if isinstance(value, list) else value}"
        for field, value in stored.items()
        if value not in (None, []) and field != "variables"
    ]
    conditions += [str(condition) for condition in audience.variables]
    return "; ".join(conditions) or "every contact of the project"


# -- who gets it, and what ---------------------------------------------------------


def _audience(args: argparse.Namespace) -> int:
    from postroom.campaign.audience import AudienceError
    from postroom.campaign.audience_report import audience_report, missing_variables
    from postroom.campaign.compose import campaign_template
    from postroom.campaign.drafts import CampaignError
    from postroom.config import load_config

    config = load_config(args.config)
    engine = open_database(args.config)
    campaign = _get(_campaigns_on(engine), args.id)
    try:
        validator = audience_cmd.validator_for(config, dns=False)
        report = audience_report(
            engine, campaign.project_id, campaign.audience, validator, config.rating
        )
        names = sorted(campaign_template(engine, campaign).contact_variables())
        with engine.connect() as conn:
            missing = missing_variables(conn, campaign.project_id, campaign.audience, names)
    except (AudienceError, CampaignError) as error:
        raise CliError(str(error)) from None
    lacking = {name: count for name, count in missing.items() if count}
    if args.json:
        print_json({"id": campaign.id, **report.to_json(), "missing_variables": lacking})
        return 0
    print(f"campaign {campaign.id}: {campaign.name}")
    for line in report.text_lines():
        print(f"  {line}")
    for name, count in lacking.items():
        print(
            f"  {count} recipient(s) lack contact.{name}: the launch will be refused "
            f"(set it, or write {{{{ contact.{name} | default('...') }}}})"
        )
    return 0


def _composer(engine: Engine, config: Config) -> Composer:
    from postroom.campaign.compose import Composer
    from postroom.mta.queue.outbox import Outbox

    return Composer(engine, config, Outbox(engine, config))


def _preview(args: argparse.Namespace) -> int:
    from postroom.campaign.compose import Copy, contact_recipient
    from postroom.campaign.drafts import CampaignError
    from postroom.config import load_config

    config = load_config(args.config)
    engine = open_database(args.config)
    campaign = _get(_campaigns_on(engine), args.id)
    address = _address(args.contact)
    with engine.connect() as conn:
        recipient = contact_recipient(conn, campaign.project_id, address)
    if recipient is None:
        raise CliError(f"no contact {address} in project {campaign.project!r}")
    try:
        composed = _composer(engine, config).compose(campaign, Copy(recipient.address, recipient))
    except CampaignError as error:
        raise CliError(str(error)) from None
    data = composed.body if args.format == "eml" else _part(composed.body, args.format)
    _write(args.out, data)
    return 0


def _part(message: bytes, format_name: str) -> bytes:
    """The decoded HTML or text part of a composed message, as the contact's client
    shows it."""
    import email
    import email.policy

    parsed = email.message_from_bytes(message, policy=email.policy.default)
    subtype = "html" if format_name == "html" else "plain"
    part = parsed.get_body(preferencelist=(subtype,))  # type: ignore[attr-defined]
    if part is None or part.get_content_subtype() != subtype:
        raise CliError(f"the message has no text/{subtype} part")
    content = str(part.get_content())
    # The part's last line break belongs to the MIME boundary: give a terminal one back.
    return (content if content.endswith("\n") else content + "\n").encode("utf-8")


def _write(out: str | None, data: bytes) -> None:
    from postroom.core.errors import cannot

    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(out).write_bytes(data)
    except OSError as error:
        raise CliError(cannot(out, "write", error)) from None
    print(f"wrote {out} ({len(data)} bytes)", file=sys.stderr)


def _test(args: argparse.Namespace) -> int:
    from postroom.campaign.compose import Copy, contact_recipient, nobody
    from postroom.campaign.drafts import CampaignError
    from postroom.config import load_config

    if len(args.to) > MAX_TEST_RECIPIENTS:
        raise CliError(f"at most {MAX_TEST_RECIPIENTS} test addresses at a time")
    config = load_config(args.config)
    engine = open_database(args.config)
    campaign = _get(_campaigns_on(engine), args.id)
    addresses = audience_cmd.checked_addresses(args, args.to, accept_risky=True)
    with engine.connect() as conn:
        lender = None
        if args.as_contact:
            lender = contact_recipient(conn, campaign.project_id, _address(args.as_contact))
            if lender is None:
                raise CliError(
                    f"--as: no contact {args.as_contact} in project {campaign.project!r}"
                )
        copies = []
        for address in addresses:
            own = contact_recipient(conn, campaign.project_id, address)
            if own is not None and (own.blocked or own.unsubscribed_at is not None):
                # A test copy is campaign mail too: not to a contact campaigns skip.
                why = "is blocked" if own.blocked else "unsubscribed"
                raise CliError(f"contact {address} {why}: campaigns send it nothing")
            # Whose fields fill the copy: --as, else the address's own contact.
            copies.append(Copy(address, lender or own or nobody(address), test=True))
    try:
        queue_ids = _composer(engine, config).queue(
            campaign, copies, kind="test", pool=config.transactional_pool
        )
    except CampaignError as error:
        hint = "" if args.as_contact else " (or fill it from a contact with --as CONTACT)"
        raise CliError(f"{error}{hint}") from None
    for copy, queue_id in zip(copies, queue_ids, strict=True):
        if args.json:
            print_json({"recipient": copy.to, "as": copy.contact.address, "queue_id": queue_id})
        else:
            print(f"queued test copy to {copy.to} (as {copy.contact.address}): {queue_id}")
    return 0


def _resend(args: argparse.Namespace) -> int:
    from postroom.campaign.compose import Copy, contact_recipient
    from postroom.config import load_config
    from postroom.db.models import CampaignState

    config = load_config(args.config)
    engine = open_database(args.config)
    campaign = _get(_campaigns_on(engine), args.id)
    if campaign.state in (CampaignState.DRAFT, CampaignState.LAUNCHING, CampaignState.CANCELLED):
        raise CliError(
            f"campaign {campaign.id} is {campaign.state}: only a launched campaign is resent "
            "(campaign test sends a draft's copy)"
        )
    address = _address(args.contact)
    with engine.connect() as conn:
        recipient = contact_recipient(conn, campaign.project_id, address)
    if recipient is None:
        raise CliError(f"no contact {address} in project {campaign.project!r}")
    if recipient.blocked:
        raise CliError(f"contact {address} is blocked: campaigns skip it")
    if recipient.unsubscribed_at is not None:
        raise CliError(f"contact {address} unsubscribed on {utc_date(recipient.unsubscribed_at)}")
    copies = [Copy(recipient.address, recipient)]
    (queue_id,) = _queue(engine, config, campaign, copies, "resend", config.default_pool)
    if args.json:
        print_json({"recipient": address, "queue_id": queue_id})
    else:
        print(f"queued campaign {campaign.id} again to {address}: {queue_id}")
    return 0


def _queue(engine, config, campaign, copies, kind: str, pool: str) -> list[str]:  # type: ignore[no-untyped-def]
    from postroom.campaign.drafts import CampaignError

    try:
        return _composer(engine, config).queue(campaign, copies, kind=kind, pool=pool)
    except CampaignError as error:
        raise CliError(str(error)) from None


def _address(text: str) -> str:
    from postroom.cli.rating_cmd import contact_address

    return contact_address(text)


# -- launch, pause, resume, cancel, status -----------------------------------------


def _launch(args: argparse.Namespace) -> int:
    import time

    from postroom.campaign.launch import LaunchError, launch
    from postroom.campaign.launch_settings import SettingsError, sending_settings
    from postroom.config import load_config

    config = load_config(args.config)
    try:
        settings = sending_settings(
            config,
            at=args.at,
            interval=args.interval,
            parts=args.parts,
            part_size=args.part_size,
            part_gap=args.part_gap,
            pool=args.pool,
            from_name=args.from_name,
            history=args.history,
            allow_send_only_dmarc=args.allow_send_only_dmarc,
            now=time.time(),
        )
    except SettingsError as error:
        raise CliError(str(error)) from None
    engine = open_database(args.config)
    validator = audience_cmd.validator_for(config, dns=False)
    try:
        launched = launch(engine, config, args.id, settings, validator)
    except LaunchError as error:
        if error.refused:
            print(f"postroom: {error}", file=sys.stderr)
            return 1
        raise CliError(str(error)) from None
    if launched.interrupted:
        print(
            f"postroom: campaign {launched.id}: the interrupted launch ({launched.interrupted}) "
            "was started over",
            file=sys.stderr,
        )
    if args.json:
        print_json(launched.as_json())
        return 0
    skipped = ", ".join(f"{n} {reason}" for reason, n in launched.skipped.items() if n) or "none"
    pace = f"{launched.settings.interval_s:g}s apart" if launched.settings.interval_s else "unpaced"
    parts = (
        f"{launched.parts} part(s) of {launched.part_size}, {launched.settings.part_gap_s:g}s apart"
        if launched.part_size
        else "1 part"
    )
    print(f"launched campaign {launched.id}: {launched.state}")
    print(f"  recipients  {launched.recipients} of {launched.matched} matched")
    print(f"  skipped     {skipped}")
    print(f"  starts      {utc_date(launched.start_at, seconds=True)}")
    print(f"  pace        {parts}; messages {pace}")
    print(f"  pool        {launched.settings.pool}")
    print(f"  gate        {launched.gate.message}")
    return 0


def _lifecycle(args: argparse.Namespace) -> int:
    from postroom.campaign import lifecycle

    action = getattr(lifecycle, args.campaign_verb)
    try:
        done = action(open_database(args.config), args.id)
    except lifecycle.LifecycleError as error:
        raise CliError(str(error)) from None
    if args.json:
        import dataclasses

        print_json({"action": args.campaign_verb, **dataclasses.asdict(done)})
    elif isinstance(done, lifecycle.Paused):
        print(f"paused campaign {done.id}: {done.held} queued message(s) held")
    elif isinstance(done, lifecycle.Resumed):
        print(
            f"resumed campaign {done.id}: {done.state}, {done.released} message(s) released, "
            f"release times moved by {done.shift_s:.0f}s"
        )
    else:
        print(
            f"cancelled campaign {done.id}: {done.removed} queued message(s) removed, "
            f"{done.cancelled} recipient(s) will get nothing"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    from postroom.campaign.status import CampaignStatus, NoSuchCampaign, campaign_status

    engine = open_database(args.config)

    def read() -> CampaignStatus:
        with engine.connect() as conn:
            try:
                return campaign_status(conn, args.id)
            except NoSuchCampaign as error:
                raise CliError(str(error)) from None

    if args.watch:
        return _watch(args, read)
    status = read()
    if args.json:
        print_json(status.as_json())
        return 0
    _print_status(status)
    return 0


def _print_status(status) -> None:  # type: ignore[no-untyped-def]
    from postroom.campaign.status import progress_line

    report = status.as_json()
    skipped = ", ".join(f"{n} {reason}" for reason, n in status.skipped.items() if n) or "none"
    bounced = ", ".join(f"{n} {reason}" for reason, n in status.bounced.items()) or "none"
    print(f"campaign {status.id}: {report['name']} ({status.state})")
    print(f"  {progress_line(status)}")
    print(f"  audience     {status.audience} (skipped: {skipped})")
    print(
        f"  queue        {status.queued} queued, {status.pending} pending, "
        f"{report['waiting']} waiting, {report['held']} held, {status.cancelled} cancelled"
    )
    print(
        f"  outcome      {report['delivered']} delivered, {report['deferred']} deferred, "
        f"{report['failed']} failed"
    )
    print(f"  bounced      {bounced}")
    print(f"  complaints   {status.complaints}, unsubscribed {status.unsubscribed}")
    if status.settings["launched_at"] is not None:
        print(f"  started      {utc_date(status.settings['start_at'], seconds=True)}")
        print(f"  pool         {status.settings['pool']}")


WATCH_REFRESH_S = 1.0


def _watch(args: argparse.Namespace, read) -> int:  # type: ignore[no-untyped-def]
    """Until the campaign is sent or cancelled (or Ctrl-C): on a terminal one line
    redrawn each second; otherwise a line (JSON with --json) each time it changes."""
    import json
    import time

    from postroom.campaign.status import progress_line

    terminal = sys.stderr.isatty() and not args.json
    last = None
    try:
        while True:
            status = read()
            if terminal:
                print(f"\r\x1b[K{progress_line(status)}", end="", file=sys.stderr, flush=True)
            else:
                current = json.dumps(status.as_json(), sort_keys=True)
                if current != last:
                    print(current if args.json else progress_line(status), flush=True)
                    last = current
            if status.finished:
                break
            time.sleep(WATCH_REFRESH_S)
    finally:
        if terminal:
            print(file=sys.stderr)
    return 0


# -- contact history ---------------------------------------------------------------


def _history(args: argparse.Namespace) -> int:
    from postroom.campaign.history import contact_history
    from postroom.rating.contacts import ContactError, contact_id_of, project_id_of

    engine = open_database(args.config)
    address = _address(args.address)
    with engine.connect() as conn:
        try:
            contact_id = contact_id_of(conn, project_id_of(conn, args.project), address)
        except ContactError as error:
            raise CliError(str(error)) from None
        history = contact_history(conn, contact_id, address)
    if args.json:
        print_json(
            {
                "address": address,
                "project": args.project,
                "sent": [item.as_json() for item in history.sent],
                "received": [item.as_json() for item in history.received],
            }
        )
        return 0
    print(f"{address} in project {args.project}")
    for title, header, rows in (
        (
            "sent",
            ("TIME", "CAMPAIGN", "KIND", "SUBJECT", "OUTCOME"),
            [
                (utc_date(i.at), f"{i.campaign_id} {i.campaign}", i.kind, i.subject, i.outcome)
                for i in history.sent
            ],
        ),
        (
            "received",
            ("TIME", "QUEUE ID", "DETAIL"),
            [(utc_date(i.at), i.queue_id, i.detail) for i in history.received],
        ),
    ):
        print(f"{title}:" if rows else f"{title}: nothing")
        if rows:
            print_table(header, rows)
    return 0
