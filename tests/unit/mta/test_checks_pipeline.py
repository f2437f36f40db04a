"""`run_checks` over a fake DNS: SPF, DKIM, ARC and DMARC of one message put together.

Messages are signed with our own DKIM signer and their keys published in a
dict-backed `DnsLookup`. The cases are the ones where the parts meet: which
identity SPF checks (MAIL FROM, or HELO for the null sender) and what DMARC
aligns with it, DKIM d= alignment, the From count, DNS trouble, and
`AuthVerdicts.sender_verified` — the envelope domain, never the From domain,
must have authenticated. Finally `InboundChecks.check` end to end over a real
`Resolver` whose cache is filled beforehand and whose network seam refuses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from tests.fakes.dns_records import record

from postroom.config.schema import ChecksConfig
from postroom.core.dns import (
    NXDOMAIN,
    CachedAnswer,
    DnsNotFound,
    DnsTemporaryError,
    Resolver,
    normalize_name,
)
from postroom.core.reply import Reply
from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mta.checks.arc import ArcResult
from postroom.mta.checks.dkim import DkimResult
from postroom.mta.checks.dmarc import DmarcPolicy, DmarcResult
from postroom.mta.checks.pipeline import AuthVerdicts, InboundChecks, run_checks
from postroom.mta.checks.policy import Action, decide
from postroom.mta.checks.spf import SpfResult
from postroom.mta.signing.dkim import SigningKey, load_private_key, parse_message, sign_headers

LISTED_IP = "192.0.2.10"  # in every sender's SPF record
UNLISTED_IP = "198.51.100.7"
TEMPORARY = "temporary"  # a zone entry that makes the lookup fail temporarily

Records = list[str] | str


class FakeDns:
    """A `DnsLookup` over {(name, type): [record text] or TEMPORARY}; the rest is NXDOMAIN."""

    def __init__(self, zone: Mapping[tuple[str, str], Records]) -> None:
        self.zone = dict(zone)
        self.asked: list[tuple[str, str]] = []

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        key = (name.lower().removesuffix("."), rdtype)
        self.asked.append(key)
        records = self.zone.get(key)
        if records is None:
            raise DnsNotFound(key[0], rdtype, "not in the fake zone")
        if records == TEMPORARY:
            raise DnsTemporaryError(key[0], rdtype, "SERVFAIL")
        return [record(rdtype, text) for text in records]


class Signer:
    def __init__(self, domain: str, selector: str = "sel") -> None:
        generated = generate_key(KeyAlgorithm.ED25519)
        private = load_private_key(KeyAlgorithm.ED25519, generated.private_pem)
        self.key = SigningKey(domain, selector, KeyAlgorithm.ED25519, private)
        self.published = {
            (f"{selector}._domainkey.{domain}", "TXT"): [
                dkim_txt_value(KeyAlgorithm.ED25519, generated.public_b64)
            ]
        }

    def sign(self, message: bytes) -> bytes:
        headers, body = parse_message(message)
        return sign_headers(headers, body, [self.key], now=1_700_000_000) + message


SPF_LISTED = [f"v=spf1 ip4:{LISTED_IP} -all"]
BASE_ZONE: dict[tuple[str, str], Records] = {
    ("author.test", "TXT"): SPF_LISTED,
    ("mx.author.test", "TXT"): SPF_LISTED,
    ("_dmarc.author.test", "TXT"): ["v=DMARC1; p=reject"],
    ("other.test", "TXT"): SPF_LISTED,
    ("mx.other.test", "TXT"): SPF_LISTED,
    ("example.test", "TXT"): ["v=spf1 -all"],
    ("sub.example.test", "TXT"): ["v=spf1 -all"],
}


def message(*from_values: str, body: str = "Hello.") -> bytes:
    froms = "".join(f"From: {value}\r\n" for value in from_values)
    return (
        f"{froms}To: bob@appliance.test\r\nSubject: report\r\n"
        f"Message-ID: <1@author.test>\r\n\r\n{body}\r\n"
    ).encode()


AUTHOR_MESSAGE = message("Alice <alice@author.test>")


def zone_with(
    *signers: Signer, changes: Mapping[tuple[str, str], Records] | None = None
) -> FakeDns:
    zone = dict(BASE_ZONE)
    for signer in signers:
        zone.update(signer.published)
    zone.update(changes or {})
    return FakeDns(zone)


def check(
    lookup: FakeDns,
    content: bytes,
    *,
    mail_from: str = "bounces@author.test",
    helo: str = "mx.author.test",
    client_ip: str = LISTED_IP,
) -> AuthVerdicts:
    return run_checks(lookup, content, client_ip=client_ip, helo=helo, mail_from=mail_from)


@pytest.fixture(scope="module")
def author() -> Signer:
    return Signer("author.test")


@pytest.fixture(scope="module")
def other() -> Signer:
    return Signer("other.test")


# -- SPF, DKIM and DMARC together -------------------------------------------------------


def test_spf_pass_of_the_author_domain_passes_dmarc() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE)
    assert verdicts.spf.mail_from.result is SpfResult.PASS
    assert verdicts.spf.mail_from.domain == "author.test"
    assert verdicts.spf.helo.result is SpfResult.PASS
    assert verdicts.dkim == ()
    assert verdicts.arc.result is ArcResult.NONE
    assert verdicts.from_fields == 1
    dmarc = verdicts.dmarc
    assert (dmarc.result, dmarc.from_domain, dmarc.policy) == (
        DmarcResult.PASS,
        "author.test",
        DmarcPolicy.REJECT,
    )
    assert (dmarc.spf_aligned, dmarc.dkim_aligned) == (True, False)
    assert decide(verdicts, ChecksConfig()).action is Action.ACCEPT


def test_spf_fail_with_an_aligned_dkim_pass_passes_dmarc(author: Signer) -> None:
    verdicts = check(zone_with(author), author.sign(AUTHOR_MESSAGE), client_ip=UNLISTED_IP)
    assert verdicts.spf.mail_from.result is SpfResult.FAIL
    assert [(v.result, v.domain) for v in verdicts.dkim] == [(DkimResult.PASS, "author.test")]
    dmarc = verdicts.dmarc
    assert (dmarc.result, dmarc.spf_aligned, dmarc.dkim_aligned) == (DmarcResult.PASS, False, True)
    assert decide(verdicts, ChecksConfig()).action is Action.ACCEPT


def test_a_signature_of_another_domain_does_not_align(other: Signer) -> None:
    verdicts = check(zone_with(other), other.sign(AUTHOR_MESSAGE), client_ip=UNLISTED_IP)
    assert [(v.result, v.domain) for v in verdicts.dkim] == [(DkimResult.PASS, "other.test")]
    dmarc = verdicts.dmarc
    assert (dmarc.result, dmarc.disposition) == (DmarcResult.FAIL, DmarcPolicy.REJECT)
    assert (dmarc.spf_aligned, dmarc.dkim_aligned) == (False, False)
    decision = decide(verdicts, ChecksConfig())
    assert decision.action is Action.REJECT
    assert decision.reply == Reply(550, "5.7.1", "Rejected by the DMARC policy of author.test")


def test_an_spf_pass_of_another_envelope_domain_does_not_align() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE, mail_from="bounces@other.test")
    assert verdicts.spf.mail_from.result is SpfResult.PASS
    assert verdicts.dmarc.result is DmarcResult.FAIL


def test_a_broken_signature_of_the_author_domain_fails_dmarc(author: Signer) -> None:
    tampered = author.sign(AUTHOR_MESSAGE).replace(b"Hello.", b"Pay me.")
    verdicts = check(zone_with(author), tampered, client_ip=UNLISTED_IP)
    assert [v.result for v in verdicts.dkim] == [DkimResult.FAIL]
    assert verdicts.dmarc.result is DmarcResult.FAIL


# -- the null sender ----------------------------------------------------------------------


def test_the_null_sender_uses_the_helo_identity_for_spf_and_dmarc() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE, mail_from="", helo="mx.author.test")
    spf = verdicts.spf.mail_from
    assert (spf.identity, spf.result, spf.domain, spf.sender) == (
        "mailfrom",
        SpfResult.PASS,
        "mx.author.test",
        "postmaster@mx.author.test",
    )
    assert verdicts.dmarc.result is DmarcResult.PASS
    assert verdicts.dmarc.spf_aligned is True


def test_the_null_sender_with_a_foreign_helo_does_not_align() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE, mail_from="", helo="mx.other.test")
    assert verdicts.spf.mail_from.result is SpfResult.PASS
    assert verdicts.spf.mail_from.domain == "mx.other.test"
    assert verdicts.dmarc.result is DmarcResult.FAIL


def test_the_null_sender_helo_identity_meets_strict_spf_alignment() -> None:
    strict = zone_with(changes={("_dmarc.author.test", "TXT"): ["v=DMARC1; p=reject; aspf=s"]})
    verdicts = check(strict, AUTHOR_MESSAGE, mail_from="", helo="mx.author.test")
    # mx.author.test is not author.test: relaxed alignment passed, strict does not.
    assert verdicts.spf.mail_from.result is SpfResult.PASS
    assert verdicts.dmarc.result is DmarcResult.FAIL


def test_the_null_sender_with_an_address_literal_helo_has_no_spf_identity() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE, mail_from="", helo="[192.0.2.10]")
    assert (verdicts.spf.mail_from.result, verdicts.spf.mail_from.domain) == (SpfResult.NONE, "")
    assert verdicts.dmarc.result is DmarcResult.FAIL


# -- From fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_values", "fields"),
    [
        (("alice@author.test", "mallory@other.test"), 2),
        (("alice@author.test", "alice@author.test"), 2),
        (("alice@author.test, mallory@other.test",), 1),
        ((), 0),
        (("undisclosed-recipients:;",), 1),
    ],
)
def test_not_exactly_one_author_domain_is_a_dmarc_permerror(
    from_values: tuple[str, ...], fields: int
) -> None:
    lookup = zone_with()
    verdicts = check(lookup, message(*from_values))
    assert verdicts.from_fields == fields
    dmarc = verdicts.dmarc
    assert (dmarc.result, dmarc.from_domain, dmarc.policy) == (DmarcResult.PERMERROR, "", None)
    assert dmarc.reason == "no single From address"
    assert not [name for name, _ in lookup.asked if name.startswith("_dmarc.")]
    assert decide(verdicts, ChecksConfig()).action is Action.REJECT


def test_several_addresses_of_one_domain_are_evaluated_once() -> None:
    verdicts = check(zone_with(), message("alice@author.test, bob@Author.Test"))
    assert verdicts.from_fields == 1
    assert (verdicts.dmarc.result, verdicts.dmarc.from_domain) == (DmarcResult.PASS, "author.test")


# -- DNS trouble ------------------------------------------------------------------------------


def test_spf_dns_trouble_under_a_failing_dmarc_reject_is_deferred() -> None:
    lookup = zone_with(changes={("author.test", "TXT"): TEMPORARY})
    verdicts = check(lookup, AUTHOR_MESSAGE)
    assert verdicts.spf.mail_from.result is SpfResult.TEMPERROR
    assert verdicts.dmarc.result is DmarcResult.FAIL
    decision = decide(verdicts, ChecksConfig())
    assert decision.action is Action.DEFER
    assert decision.reply is not None and (decision.reply.code, decision.reply.enhanced) == (
        451,
        "4.7.24",
    )


def test_dkim_key_dns_trouble_is_a_temperror_verdict(author: Signer) -> None:
    lookup = zone_with(author, changes={("sel._domainkey.author.test", "TXT"): TEMPORARY})
    verdicts = check(lookup, author.sign(AUTHOR_MESSAGE), client_ip=UNLISTED_IP)
    assert [v.result for v in verdicts.dkim] == [DkimResult.TEMPERROR]
    assert verdicts.dmarc.result is DmarcResult.FAIL
    assert decide(verdicts, ChecksConfig()).action is Action.DEFER


def test_dmarc_dns_trouble_is_a_dmarc_temperror() -> None:
    verdicts = check(zone_with(changes={("_dmarc.author.test", "TXT"): TEMPORARY}), AUTHOR_MESSAGE)
    assert verdicts.spf.mail_from.result is SpfResult.PASS
    assert verdicts.dmarc.result is DmarcResult.TEMPERROR
    assert decide(verdicts, ChecksConfig()).action is Action.DEFER


# -- sender_verified ----------------------------------------------------------------------------


def test_sender_verified_by_spf_pass_of_the_envelope_domain() -> None:
    verdicts = check(zone_with(), AUTHOR_MESSAGE, mail_from="bounces@author.test")
    assert verdicts.sender_verified("bounces@author.test") is True


@pytest.mark.parametrize(
    ("envelope", "signing_domain"),
    [
        ("bounces@example.test", "sub.example.test"),
        ("bounces@sub.example.test", "example.test"),
        ("bounces@Example.TEST", "example.test"),
    ],
)
def test_sender_verified_by_a_dkim_pass_aligned_with_the_envelope_domain(
    envelope: str, signing_domain: str
) -> None:
    signer = Signer(signing_domain)
    verdicts = check(
        zone_with(signer), signer.sign(AUTHOR_MESSAGE), mail_from=envelope, client_ip=UNLISTED_IP
    )
    assert verdicts.spf.mail_from.result is SpfResult.FAIL
    assert [v.result for v in verdicts.dkim] == [DkimResult.PASS]
    assert verdicts.sender_verified(envelope) is True


def test_a_failing_signature_of_the_envelope_domain_does_not_verify() -> None:
    signer = Signer("example.test")
    tampered = signer.sign(AUTHOR_MESSAGE).replace(b"Hello.", b"Bye.")
    verdicts = check(
        zone_with(signer), tampered, mail_from="bounces@example.test", client_ip=UNLISTED_IP
    )
    assert verdicts.sender_verified("bounces@example.test") is False


@pytest.mark.parametrize("client_ip_", [LISTED_IP, UNLISTED_IP], ids=["helo-spf-pass", "dkim"])
def test_the_null_sender_is_never_verified(author: Signer, client_ip_: str) -> None:
    # HELO passes SPF (from the listed address) and the author domain signs: still no sender.
    verdicts = check(
        zone_with(author),
        author.sign(AUTHOR_MESSAGE),
        mail_from="",
        helo="mx.author.test",
        client_ip=client_ip_,
    )
    assert verdicts.dmarc.result is DmarcResult.PASS
    assert verdicts.sender_verified("") is False


def test_only_the_from_domain_authenticating_does_not_verify_the_sender(author: Signer) -> None:
    # A forged envelope sender of example.test (SPF -all), From and DKIM of author.test.
    verdicts = check(
        zone_with(author),
        author.sign(AUTHOR_MESSAGE),
        mail_from="victim@example.test",
        client_ip=UNLISTED_IP,
    )
    assert verdicts.dmarc.result is DmarcResult.PASS
    assert verdicts.spf.mail_from.result is SpfResult.FAIL
    assert verdicts.sender_verified("victim@example.test") is False


@pytest.mark.parametrize(
    ("record", "result"),
    [
        ("v=spf1 ~all", SpfResult.SOFTFAIL),
        ("v=spf1 ?all", SpfResult.NEUTRAL),
        ("v=spf1 -all", SpfResult.FAIL),
        ("v=spf1 ip4:192.0.2.10 ip4:192.0.2.10 include:", SpfResult.PERMERROR),
        (TEMPORARY, SpfResult.TEMPERROR),
    ],
)
def test_spf_results_other_than_pass_do_not_verify(record: str, result: SpfResult) -> None:
    lookup = zone_with(
        changes={("author.test", "TXT"): record if record == TEMPORARY else [record]}
    )
    verdicts = check(lookup, AUTHOR_MESSAGE, mail_from="bounces@author.test")
    assert verdicts.spf.mail_from.result is result
    assert verdicts.sender_verified("bounces@author.test") is False


# -- InboundChecks over a real Resolver ---------------------------------------------------


class OfflineResolver(Resolver):
    """A real `Resolver` whose network seam refuses: only its cache can answer."""

    def __init__(self) -> None:
        super().__init__(timeout_s=1.0)
        self.misses: list[str] = []

    async def _exchange(self, qname, qtype):  # type: ignore[no-untyped-def]
        self.misses.append(f"{qname} {dns.rdatatype.to_text(qtype)}")
        raise DnsTemporaryError(qname.to_text(), dns.rdatatype.to_text(qtype), "offline")

    def prefill(self, zone: FakeDns, absent: tuple[tuple[str, str], ...] = ()) -> None:
        for (name, rdtype), records in zone.zone.items():
            if records == TEMPORARY:
                continue  # left out: the lookup goes to the refusing network seam
            key = (normalize_name(name), dns.rdatatype.from_text(rdtype))
            answers = tuple(record(rdtype, text) for text in records)
            self.cache.put(key, CachedAnswer(answers, "", 300))
        for name, rdtype in absent:
            key = (normalize_name(name), dns.rdatatype.from_text(rdtype))
            self.cache.put(key, CachedAnswer((), NXDOMAIN, 300))


AUTHSERV_ID = "mail.appliance.test"


async def test_inbound_checks_accept_a_passing_message_from_the_cache(author: Signer) -> None:
    resolver = OfflineResolver()
    resolver.prefill(zone_with(author))
    checks = InboundChecks(resolver, ChecksConfig(), AUTHSERV_ID)
    outcome = await checks.check(
        author.sign(AUTHOR_MESSAGE),
        client_ip=LISTED_IP,
        helo="mx.author.test",
        mail_from="bounces@author.test",
    )
    assert resolver.misses == []
    assert outcome.decision.action is Action.ACCEPT
    assert outcome.verdicts.dmarc.result is DmarcResult.PASS
    assert [v.result for v in outcome.verdicts.dkim] == [DkimResult.PASS]
    assert outcome.header.startswith(f"Authentication-Results: {AUTHSERV_ID};".encode())
    assert outcome.header.endswith(b"\r\n")
    assert b"\tdmarc=pass" in outcome.header and b"header.d=author.test" in outcome.header


async def test_inbound_checks_reject_a_spoofed_message(other: Signer) -> None:
    resolver = OfflineResolver()
    resolver.prefill(zone_with(other), absent=(("mx.far.test", "TXT"), ("far.test", "TXT")))
    checks = InboundChecks(resolver, ChecksConfig(), AUTHSERV_ID)
    outcome = await checks.check(
        other.sign(AUTHOR_MESSAGE),
        client_ip=UNLISTED_IP,
        helo="mx.far.test",
        mail_from="bounces@far.test",
    )
    assert resolver.misses == []
    assert outcome.verdicts.spf.mail_from.result is SpfResult.NONE
    assert outcome.decision.action is Action.REJECT
    assert outcome.decision.reply == Reply(
        550, "5.7.1", "Rejected by the DMARC policy of author.test"
    )
    assert b"\tdmarc=fail (p=reject dis=reject) header.from=author.test;" in outcome.header


async def test_inbound_checks_defer_when_the_spf_record_cannot_be_fetched() -> None:
    resolver = OfflineResolver()
    resolver.prefill(zone_with(changes={("author.test", "TXT"): TEMPORARY}))
    checks = InboundChecks(resolver, ChecksConfig(), AUTHSERV_ID)
    outcome = await checks.check(
        AUTHOR_MESSAGE, client_ip=LISTED_IP, helo="mx.author.test", mail_from="bounces@author.test"
    )
    assert resolver.misses == ["author.test. TXT"]
    assert outcome.verdicts.spf.mail_from.result is SpfResult.TEMPERROR
    assert outcome.decision.action is Action.DEFER
    assert outcome.decision.reply is not None
    assert outcome.decision.reply.enhanced == "4.7.24"


async def test_inbound_checks_do_not_need_the_default_executor(author: Signer) -> None:
    """The default executor (RCPT lookups, AUTH, Maildir) fully taken: the checks still
    run, on their own threads. Before, they queued behind it (here: for ever)."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    release = threading.Event()
    blocked = loop.run_in_executor(None, release.wait, 10)
    try:
        resolver = OfflineResolver()
        resolver.prefill(zone_with(author))
        checks = InboundChecks(resolver, ChecksConfig(), AUTHSERV_ID)
        outcome = await asyncio.wait_for(
            checks.check(
                author.sign(AUTHOR_MESSAGE),
                client_ip=LISTED_IP,
                helo="mx.author.test",
                mail_from="bounces@author.test",
            ),
            5,
        )
        assert outcome.verdicts.dmarc.result is DmarcResult.PASS
    finally:
        release.set()
    await blocked
