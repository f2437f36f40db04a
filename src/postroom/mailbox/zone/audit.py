"""Live DNS of a linked domain compared with what it needs (`postroom domain check`).

`audit_domain(facts, resolver)` looks up the domain's records through the
process resolver and returns one `AuditRow` per expected record: name, type,
expected, found, verdict (`ok`, `missing`, `wrong`, `warning`), required,
reason. It catches: missing records, two SPF records, SPF without our
mechanism, SPF over the 10-lookup limit, SPF allowing everyone (+all), DKIM
key mismatch or malformed key record, DMARC missing, duplicated or malformed,
MX not pointing here. A temporary DNS failure is a `warning` naming the
failure (never `ok`, never a definite `missing`). The report is `ok` when
every required row is.

The JSON shape is a contract (ARCHITECTURE.md): {"domain", "ok", "records":
[{"name", "type", "expected", "found", "verdict", "required", "reason"}]}.
Untrusted input: every answer from DNS (parsed by `spf`, `dmarc`, `dkim_keys`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from postroom.core.dns import DnsError, DnsNoData, DnsNotFound, DnsTemporaryError, Resolver
from postroom.mailbox.dkim_keys import DkimRecordError, KeyAlgorithm, public_key_matches
from postroom.mailbox.zone.dmarc import DmarcSyntaxError, is_dmarc, parse_dmarc
from postroom.mailbox.zone.expected import (
    DomainFacts,
    LiveTxt,
    dmarc_host,
    domain_records,
)
from postroom.mailbox.zone.render import DnsRecord
from postroom.mailbox.zone.spf import SpfSyntaxError, count_lookups, covers, is_spf, parse_spf

OK, MISSING, WRONG, WARNING = "ok", "missing", "wrong", "warning"
SPF_LOOKUP_LIMIT = 10
SEPARATOR = " | "


@dataclass(frozen=True, slots=True)
class AuditRow:
    name: str
    type: str
    expected: str
    found: str
    verdict: str
    required: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    domain: str
    rows: tuple[AuditRow, ...]

    @property
    def ok(self) -> bool:
        return all(row.verdict == OK for row in self.rows if row.required)

    def as_json(self) -> dict[str, object]:
        return {"domain": self.domain, "ok": self.ok, "records": [asdict(r) for r in self.rows]}


class _Lookup:
    """TXT/MX answers as (values, problem): problem is a verdict-worthy failure or None."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def txt(self, name: str) -> tuple[list[str], DnsError | None]:
        try:
            return await self.resolver.txt(name), None
        except DnsError as error:
            return [], error


async def audit_domain(facts: DomainFacts, resolver: Resolver) -> AuditReport:
    lookup = _Lookup(resolver)
    apex, apex_error = await lookup.txt(facts.domain)
    dmarc_txt, dmarc_error = await lookup.txt(dmarc_host(facts.domain))
    spf_records = [record for record in apex if is_spf(record)]
    dmarc_records = [r for r in dmarc_txt if is_dmarc(r)]
    expected = domain_records(
        facts,
        LiveTxt(
            spf=tuple(spf_records),
            dmarc=dmarc_records[0] if len(dmarc_records) == 1 else None,
        ),
    )
    rows = []
    for record in expected:
        if record.type == "MX":
            rows.append(await _check_mx(record, facts, resolver))
        elif record.name == facts.domain and record.value == facts.verification_text:
            rows.append(_check_verification(record, apex, apex_error))
        elif record.name == facts.domain:
            rows.append(await _check_spf(record, facts, spf_records, apex_error, resolver))
        elif record.name == dmarc_host(facts.domain):
            rows.append(_check_dmarc(record, dmarc_records, dmarc_error))
        elif "._domainkey." in record.name:
            rows.append(await _check_dkim(record, lookup))
        elif record.type == "CNAME":
            rows.append(await _check_resolves(record, resolver))
        else:
            rows.append(await _check_tagged(record, lookup))
    return AuditReport(facts.domain, tuple(rows))


def _row(record: DnsRecord, found: list[str] | str, verdict: str, reason: str = "") -> AuditRow:
    return AuditRow(
        name=record.name,
        type=record.type,
        expected=record.value,
        found=found if isinstance(found, str) else SEPARATOR.join(found),
        verdict=verdict,
        required=record.required,
        reason=reason or record.reason,
    )


def _failure(record: DnsRecord, error: DnsError) -> AuditRow:
    if isinstance(error, DnsTemporaryError):
        return _row(record, "", WARNING, f"DNS lookup failed ({error.reason}); check again")
    return _row(record, "", MISSING, f"{error.name} {error.rdtype}: {error.reason}")


def _check_verification(record: DnsRecord, apex: list[str], error: DnsError | None) -> AuditRow:
    if error is not None:
        return _failure(record, error)
    ours = [r for r in apex if r.startswith("postroom-verification=")]
    if record.value in (r.strip() for r in ours):
        return _row(record, record.value, OK)
    if ours:
        return _row(record, ours, WRONG, "a verification token of another `domain add`")
    return _row(record, "", MISSING)


async def _check_mx(record: DnsRecord, facts: DomainFacts, resolver: Resolver) -> AuditRow:
    try:
        mx = await resolver.mx(facts.domain)
    except DnsError as error:
        return _failure(record, error)
    found = [f"{preference} {host}" for preference, host in mx]
    hosts = [host for _, host in mx]
    if facts.mail_host in hosts:
        # Equal preferences are equally preferred: senders pick among them (RFC 5321 5.1).
        ours = min(preference for preference, host in mx if host == facts.mail_host)
        if ours > min(preference for preference, _ in mx):
            return _row(record, found, WARNING, f"{facts.mail_host} is not the preferred MX")
        return _row(record, found, OK)
    # Another name may still reach this server; compare addresses host by host, so
    # one dead MX name does not hide a later one that is ours.
    temporary: DnsTemporaryError | None = None
    try:
        ours_addresses = set(await resolver.addresses(facts.mail_host))
    except DnsTemporaryError as error:
        temporary, ours_addresses = error, set()
    except DnsError:
        ours_addresses = set()  # no address to compare: the names alone decide
    for host in hosts if ours_addresses else ():
        try:
            if ours_addresses & set(await resolver.addresses(host)):
                return _row(record, found, OK, f"{host} has this server's address")
        except DnsTemporaryError as error:
            temporary = error
        except DnsError:
            continue
    if temporary is not None:
        return _row(
            record, found, WARNING, f"MX address lookup failed ({temporary.reason}); check again"
        )
    return _row(record, found, WRONG, f"MX does not point to this server ({facts.mail_host})")


async def _check_spf(
    record: DnsRecord,
    facts: DomainFacts,
    published: list[str],
    error: DnsError | None,
    resolver: Resolver,
) -> AuditRow:
    if error is not None and not isinstance(error, DnsNoData | DnsNotFound):
        return _failure(record, error)
    if not published:
        return _row(record, "", MISSING)
    if len(published) > 1:
        return _row(
            record,
            published,
            WRONG,
            f"{len(published)} SPF records: receivers treat that as a permanent error "
            "(RFC 7208 3.2); publish the one merged record",
        )
    try:
        spf = parse_spf(published[0])
    except SpfSyntaxError as syntax:
        return _row(record, published, WRONG, f"malformed SPF: {syntax}")
    if not covers(spf, facts.spf_mechanisms):
        missing = " ".join(facts.spf_mechanisms)
        return _row(record, published, WRONG, f"SPF does not authorise us: add {missing}")
    lookups = await count_lookups(published[0], resolver)
    # The per-term lines ("lookup 3: ...") explain the count; the rest are problems.
    detail = "; ".join(d for d in lookups.detail if not d.startswith("lookup "))
    if lookups.temporary_error:
        return _row(record, published, WARNING, f"SPF lookups failed, check again: {detail}")
    if lookups.over_limit:
        return _row(
            record,
            published,
            WRONG,
            f"SPF needs {lookups.count} DNS lookups, over the limit of 10 (RFC 7208 4.6.4)"
            if lookups.count > SPF_LOOKUP_LIMIT
            else f"SPF include loop: {detail}",
        )
    if lookups.permanent_error:
        return _row(record, published, WRONG, f"SPF evaluation fails (permerror): {detail}")
    if any(term.lower() in ("all", "+all") for term in spf.terms):
        return _row(record, published, WARNING, "+all lets any server on the internet pass SPF")
    return _row(record, published, OK, f"{lookups.count} DNS lookup(s) of 10")


def _check_dmarc(record: DnsRecord, published: list[str], error: DnsError | None) -> AuditRow:
    if error is not None and not isinstance(error, DnsNoData | DnsNotFound):
        return _failure(record, error)
    if not published:
        return _row(record, "", MISSING)
    if len(published) > 1:
        return _row(
            record, published, WRONG, "several DMARC records: receivers ignore all (RFC 7489 6.6.3)"
        )
    try:
        policy = parse_dmarc(published[0])
    except DmarcSyntaxError as syntax:
        return _row(record, published, WRONG, f"malformed DMARC: {syntax}")
    if policy.policy == "none":
        return _row(record, published, OK, "p=none: monitoring; tighten once reports are clean")
    return _row(record, published, OK)


async def _check_dkim(record: DnsRecord, lookup: _Lookup) -> AuditRow:
    found, error = await lookup.txt(record.name)
    if error is not None:
        return _failure(record, error)
    algorithm = KeyAlgorithm.ED25519 if "k=ed25519" in record.value else KeyAlgorithm.RSA
    public_key = record.value.rpartition("p=")[2]
    problems = []
    for text in found:
        try:
            if public_key_matches(text, algorithm, public_key):
                return _row(record, text, OK)
            problems.append("a different key")
        except DkimRecordError as malformed:
            problems.append(f"malformed: {malformed}")
    return _row(record, found, WRONG, f"DKIM key mismatch: DNS has {', '.join(problems)}")


async def _check_resolves(record: DnsRecord, resolver: Resolver) -> AuditRow:
    try:
        addresses = await resolver.addresses(record.name)
    except DnsError as error:
        return _failure(record, error)
    return _row(record, addresses, OK)


async def _check_tagged(record: DnsRecord, lookup: _Lookup) -> AuditRow:
    """MTA-STS and TLS-RPT: a record with the same version tag is what matters."""
    found, error = await lookup.txt(record.name)
    if error is not None:
        return _failure(record, error)
    version = record.value.split(";", 1)[0].strip().lower()
    matching = [r for r in found if r.split(";", 1)[0].strip().lower() == version]
    if not matching:
        return _row(record, found, MISSING)
    if len(matching) > 1:
        return _row(record, matching, WRONG, "several records: receivers ignore all of them")
    return _row(record, matching, OK)
