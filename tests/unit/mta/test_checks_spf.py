"""`check_spf` / `check_host`: identities, DNS errors, isolation of concurrent checks."""

from __future__ import annotations

import asyncio
import threading

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
import spf
from tests.fakes.dns_records import record

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mta.checks.lookup import DnsLookup
from postroom.mta.checks.spf import (
    MAX_EXPLANATION,
    SpfResult,
    SpfVerdict,
    check_host,
    check_spf,
)

CLIENT = "192.0.2.10"


class FakeDns:
    """A `DnsLookup` over {(name, type): [record text]}, recording what was asked."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        self.asked.append((name, rdtype))
        texts = self.records.get((name, rdtype))
        if texts is None:
            known = any(known_name == name for known_name, _ in self.records)
            error = DnsNoData if known else DnsNotFound
            raise error(name, rdtype, "not in the fake zone")
        return [record(rdtype, text) for text in texts]


def no_dns(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
    raise AssertionError(f"no DNS expected, asked {name} {rdtype}")


def test_helo_and_mail_from_are_checked_each_against_its_own_domain() -> None:
    lookup = FakeDns(
        {
            ("mail.example.net", "TXT"): ["v=spf1 a -all"],
            ("mail.example.net", "A"): [CLIENT],
            ("example.org", "TXT"): ["v=spf1 ip4:198.51.100.0/24 ~all"],
        }
    )

    verdicts = check_spf(lookup, CLIENT, "Alice@Example.org", "mail.example.net")

    assert verdicts.helo.result is SpfResult.PASS
    assert verdicts.helo.identity == "helo"
    assert verdicts.helo.domain == "mail.example.net"
    assert verdicts.helo.sender == "postmaster@mail.example.net"
    assert verdicts.mail_from == SpfVerdict(
        SpfResult.SOFTFAIL,
        "mailfrom",
        "example.org",
        "Alice@Example.org",
        f"transitioning domain of Example.org does not designate {CLIENT} as permitted sender",
    )


def test_null_sender_checks_postmaster_at_helo_once() -> None:
    lookup = FakeDns(
        {
            ("mail.example.net", "TXT"): ["v=spf1 -all exp=why.example.net"],
            ("why.example.net", "TXT"): ["%{l} at %{o} may not send from %{i}"],
        }
    )

    verdicts = check_spf(lookup, CLIENT, "", "mail.example.net")

    assert verdicts.mail_from == SpfVerdict(
        SpfResult.FAIL,
        "mailfrom",
        "mail.example.net",
        "postmaster@mail.example.net",
        f"postmaster at mail.example.net may not send from {CLIENT}",
    )
    assert verdicts.helo.identity == "helo"
    assert verdicts.helo.result is SpfResult.FAIL
    # RFC 7208 2.4: the same evaluation serves both identities.
    assert lookup.asked.count(("mail.example.net", "TXT")) == 1


@pytest.mark.parametrize("helo", ["[192.0.2.10]", "[IPv6:2001:db8::1]", "192.0.2.10", "localhost"])
def test_helo_that_is_not_a_domain_name_is_none_without_dns(helo: str) -> None:
    verdicts = check_spf(no_dns, CLIENT, "", helo)

    assert verdicts.helo.result is SpfResult.NONE
    assert verdicts.helo.domain == ""
    assert verdicts.mail_from.result is SpfResult.NONE


def test_helo_literal_does_not_stop_the_mail_from_check() -> None:
    lookup = FakeDns({("example.org", "TXT"): [f"v=spf1 ip4:{CLIENT} -all"]})

    verdicts = check_spf(lookup, CLIENT, "bob@example.org", "[192.0.2.10]")

    assert verdicts.helo.result is SpfResult.NONE
    assert verdicts.mail_from.result is SpfResult.PASS


@pytest.mark.parametrize("sender", ["bob@", "bob", "bob@[192.0.2.1]", "bob@example..org"])
def test_sender_without_a_domain_is_none(sender: str) -> None:
    verdict = check_host(no_dns, CLIENT, sender, "mail.example.net")

    assert (verdict.result, verdict.domain, verdict.sender) == (SpfResult.NONE, "", sender)


def test_quoted_local_part_with_at_sign_uses_the_last_at() -> None:
    lookup = FakeDns({("example.org", "TXT"): [f"v=spf1 ip4:{CLIENT} -all"]})

    verdict = check_host(lookup, CLIENT, '"a@b"@example.org', "mail.example.net")

    assert (verdict.result, verdict.domain) == (SpfResult.PASS, "example.org")


@pytest.mark.parametrize("client_ip", ["2001:db8::25", "::ffff:192.0.2.10"])
def test_ipv6_and_ipv4_mapped_clients(client_ip: str) -> None:
    lookup = FakeDns({("example.org", "TXT"): ["v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 -all"]})

    assert check_host(lookup, client_ip, "bob@example.org", "h.example.net").result is (
        SpfResult.PASS
    )


@pytest.mark.parametrize("client_ip", ["", "192.0.2.300", "mail.example.net", "list"])
def test_a_bad_client_ip_is_a_caller_error(client_ip: str) -> None:
    with pytest.raises(ValueError):
        check_spf(no_dns, client_ip, "bob@example.org", "mail.example.net")


def test_temporary_dns_failure_is_temperror() -> None:
    def lookup(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        raise DnsTemporaryError(name, rdtype, "timed out")

    verdict = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")

    assert verdict.result is SpfResult.TEMPERROR
    assert verdict.domain == "example.org"
    assert "timed out" in verdict.explanation


def test_temporary_failure_inside_an_include_is_temperror() -> None:
    records = {("example.org", "TXT"): ["v=spf1 include:spf.example.net -all"]}

    def lookup(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        if name == "spf.example.net":
            raise DnsTemporaryError(name, rdtype, "server answered SERVFAIL")
        return FakeDns(records)(name, rdtype)

    verdict = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")

    assert verdict.result is SpfResult.TEMPERROR


def test_a_broken_record_is_permerror() -> None:
    lookup = FakeDns({("example.org", "TXT"): ["v=spf1 ip4:192.0.2.0/24 moo -all"]})

    verdict = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")

    assert verdict.result is SpfResult.PERMERROR
    assert "moo" in verdict.explanation


def test_pyspf_failing_unexpectedly_is_permerror(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: spf.query, spf_record: str | None = None) -> tuple[str, int, str]:
        raise IndexError("list index out of range")

    monkeypatch.setattr(spf.query, "check", crash)
    lookup = FakeDns({("example.org", "TXT"): ["v=spf1 -all"]})

    verdict = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")

    assert verdict.result is SpfResult.PERMERROR
    assert "IndexError" in verdict.explanation


def test_a_lookup_bug_propagates_even_where_pyspf_swallows_errors() -> None:
    records = {("example.org", "TXT"): ["v=spf1 -all exp=why.example.org"]}

    def lookup(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        if name == "why.example.org":
            raise RuntimeError("lookup bug")
        return FakeDns(records)(name, rdtype)

    with pytest.raises(RuntimeError, match="lookup bug"):
        check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")


def test_pyspf_outside_check_host_has_no_dns() -> None:
    query = spf.query(i=CLIENT, s="bob@example.org", h="mail.example.net")

    with pytest.raises(RuntimeError, match="outside"):
        query.check()


def test_explanation_is_one_line_safe_for_a_header_comment() -> None:
    hostile = "Go away\r\n\tX-Injected: yes (really) \\ done" + " pad" * 50
    lookup = FakeDns(
        {
            ("example.org", "TXT"): ["v=spf1 -all exp=why.example.org"],
            ("why.example.org", "TXT"): [hostile],
        }
    )

    explanation = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net").explanation

    assert explanation.startswith("Go away   X-Injected: yes [really] ? done pad")
    assert explanation.endswith("...")
    assert len(explanation) == MAX_EXPLANATION
    assert explanation.isascii() and explanation.isprintable()


def test_permerror_explanation_with_non_ascii_record_is_one_line() -> None:
    lookup = FakeDns({("example.org", "TXT"): ["v=spf1 a:\u00e9.example.org\n -all"]})

    verdict = check_host(lookup, CLIENT, "bob@example.org", "mail.example.net")

    assert verdict.result is SpfResult.PERMERROR
    assert verdict.explanation.isascii() and verdict.explanation.isprintable()
    assert not set("()\\") & set(verdict.explanation)


async def test_concurrent_checks_in_threads_use_their_own_lookups() -> None:
    # Both checks meet inside their first lookup, so each makes its second one
    # after the other check has installed its own lookup.
    both_in_flight = threading.Barrier(2, timeout=5)

    def rendezvous(lookup: FakeDns) -> DnsLookup:
        def wrapped(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
            if not lookup.asked:
                both_in_flight.wait()
            return lookup(name, rdtype)

        return wrapped

    policy = ["v=spf1 a:out.example.org -all"]
    allowing = FakeDns({("example.org", "TXT"): policy, ("out.example.org", "A"): [CLIENT]})
    refusing = FakeDns({("example.org", "TXT"): policy, ("out.example.org", "A"): ["192.0.2.99"]})

    allowed, refused = await asyncio.gather(
        asyncio.to_thread(check_host, rendezvous(allowing), CLIENT, "a@example.org", "h.example"),
        asyncio.to_thread(check_host, rendezvous(refusing), CLIENT, "b@example.org", "h.example"),
    )

    assert allowed.result is SpfResult.PASS
    assert refused.result is SpfResult.FAIL
    assert allowing.asked == refusing.asked == [("example.org", "TXT"), ("out.example.org", "A")]
