"""The records a linked domain needs, and those this appliance itself needs.

Pure functions from facts to `DnsRecord` lists (rendered by `render`, compared
with live DNS by `audit`):

- `domain_records(facts, live)`: ownership TXT; MX to this server; SPF — the
  published record merged with our mechanism, never a second SPF record;
  DKIM TXT of every pending, active and retiring selector; DMARC (p=none with
  a report address to start, never weaker than what is published); and,
  recommended, MTA-STS and TLS-RPT.
- `self_records(...)`: the SPF include host that lists our egress addresses
  (`postroom dns self`), the bounce domain's MX and SPF (VERP return paths), plus
  forward and reverse DNS of each egress name,
  which receivers check (FCrDNS) before they trust a sending IP.

Inputs: `DomainFacts` (from the database and config) and `LiveTxt` (what the
domain publishes today, fetched by the caller; untrusted, only parsed by
`spf`/`dmarc`). RFCs: 7208 (SPF), 6376 (DKIM), 7489 (DMARC), 8461 (MTA-STS),
8460 (TLS-RPT), 5321 5 (MX).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from postroom.mailbox.zone.dmarc import expected_dmarc
from postroom.mailbox.zone.render import DnsRecord
from postroom.mailbox.zone.spf import SpfMergeError, SpfSyntaxError, merge_spf

MX_PREFERENCE = 10


@dataclass(frozen=True, slots=True)
class DkimSelector:
    selector: str
    state: str  # pending | active | retiring
    txt: str  # "v=DKIM1; k=...; p=..."


@dataclass(frozen=True, slots=True)
class DomainFacts:
    domain: str
    verification_text: str
    mail_host: str  # [server] hostname: the MX target
    spf_mechanisms: tuple[str, ...]  # ours, e.g. ("include:_spf.mail.example.test",)
    report_address: str  # DMARC rua and TLS-RPT
    dkim: tuple[DkimSelector, ...] = ()


@dataclass(frozen=True, slots=True)
class LiveTxt:
    """What the domain publishes today, for merging (empty when unknown)."""

    spf: tuple[str, ...] = ()
    dmarc: str | None = None


@dataclass(frozen=True, slots=True)
class Egress:
    address: str
    helo: str


def dmarc_host(domain: str) -> str:
    return f"_dmarc.{domain}"


def mta_sts_host(domain: str) -> str:
    return f"_mta-sts.{domain}"


def tls_rpt_host(domain: str) -> str:
    return f"_smtp._tls.{domain}"


def policy_id(mail_host: str) -> str:
    """MTA-STS id (RFC 8461 3.1): changes exactly when the policy (its MX) changes."""
    return hashlib.sha256(mail_host.encode()).hexdigest()[:20]


def domain_records(facts: DomainFacts, live: LiveTxt) -> list[DnsRecord]:
    domain = facts.domain
    records = [
        DnsRecord(
            domain,
            "TXT",
            facts.verification_text,
            True,
            "proves that this project owns the domain (`postroom domain verify`); keep it",
        ),
        DnsRecord(
            domain,
            "MX",
            f"{MX_PREFERENCE} {facts.mail_host}",
            True,
            f"mail for @{domain} (replies, bounces) comes to this server",
        ),
        _spf_record(domain, live.spf, facts.spf_mechanisms),
    ]
    for key in facts.dkim:
        records.append(_dkim_record(domain, key))
    records.append(
        DnsRecord(
            dmarc_host(domain),
            "TXT",
            expected_dmarc(live.dmarc, facts.report_address),
            True,
            "DMARC: large receivers require it; p=none reports first, never weaker than published",
        )
    )
    records += [
        DnsRecord(
            mta_sts_host(domain),
            "TXT",
            f"v=STSv1; id={policy_id(facts.mail_host)}",
            False,
            f"MTA-STS (RFC 8461): senders require TLS to {facts.mail_host}; serve the policy at "
            f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
        ),
        DnsRecord(
            f"mta-sts.{domain}",
            "CNAME",
            facts.mail_host,
            False,
            "MTA-STS: the HTTPS host that serves the policy file",
        ),
        DnsRecord(
            tls_rpt_host(domain),
            "TXT",
            f"v=TLSRPTv1; rua=mailto:{facts.report_address}",
            False,
            "TLS-RPT (RFC 8460): senders report TLS failures when delivering to us",
        ),
    ]
    return records


def _spf_record(domain: str, published: tuple[str, ...], ours: tuple[str, ...]) -> DnsRecord:
    reason = "SPF: authorises our sending IPs; merged with what is published (one SPF record only)"
    try:
        value = merge_spf(published, ours)
    except (SpfSyntaxError, SpfMergeError) as error:
        # Nothing sound to merge with: the replacement record stands alone.
        value = merge_spf((), ours)
        problem = " ".join(str(error).split())
        reason = f"SPF: authorises our sending IPs; replaces the published record ({problem})"
    return DnsRecord(domain, "TXT", value, True, reason)


def _dkim_record(domain: str, key: DkimSelector) -> DnsRecord:
    reasons = {
        "active": "DKIM: the key we sign with now",
        "pending": "DKIM: the next key; it starts signing once DNS shows it",
        "retiring": "DKIM: the previous key; keep it until mail signed with it is verified",
    }
    return DnsRecord(
        f"{key.selector}._domainkey.{domain}",
        "TXT",
        key.txt,
        key.state != "retiring",
        reasons.get(key.state, "DKIM key"),
    )


def our_spf_mechanisms(mode: str, spf_host: str, egress: list[Egress]) -> tuple[str, ...]:
    """`include:<spf_host>`, or ip4:/ip6: of every egress address ("addresses" mode)."""
    if mode == "include":
        return (f"include:{spf_host}",)
    return _address_mechanisms(egress)


def _address_mechanisms(egress: list[Egress]) -> tuple[str, ...]:
    terms = []
    for source in egress:
        if not source.address:
            continue
        kind = "ip6" if ipaddress.ip_address(source.address).version == 6 else "ip4"
        term = f"{kind}:{source.address}"
        if term not in terms:
            terms.append(term)
    return tuple(terms)


def self_records(
    mail_host: str, spf_host: str, egress: list[Egress], bounce_domain: str = ""
) -> list[DnsRecord]:
    """What the appliance's own zone needs: its SPF include host, the bounce domain
    (VERP return paths: receivers check SPF on it, bounces come back to its MX) and
    FCrDNS of each IP."""
    mechanisms = _address_mechanisms(egress) or (f"a:{mail_host}",)
    records = [
        DnsRecord(
            spf_host,
            "TXT",
            "v=spf1 " + " ".join(mechanisms) + " -all",
            True,
            "SPF include host: linked domains include it; it lists every egress address",
        )
    ]
    if bounce_domain:
        records += [
            DnsRecord(
                bounce_domain,
                "MX",
                f"{MX_PREFERENCE} {mail_host}",
                True,
                "bounces and complaints to VERP return paths come back to this server",
            ),
            DnsRecord(
                bounce_domain,
                "TXT",
                f"v=spf1 include:{spf_host} -all",
                True,
                "SPF of the VERP return-path domain, which receivers check",
            ),
        ]
    for source in egress:
        if not source.address:
            continue
        address = ipaddress.ip_address(source.address)
        records.append(
            DnsRecord(
                source.helo,
                "AAAA" if address.version == 6 else "A",
                str(address),
                True,
                "the EHLO name of this egress source resolves to its address",
            )
        )
        records.append(
            DnsRecord(
                address.reverse_pointer,
                "PTR",
                source.helo,
                True,
                "reverse DNS of the sending IP names its EHLO host (set by the IP's provider)",
            )
        )
    return list(dict.fromkeys(records))  # two sources may share an address or a name
