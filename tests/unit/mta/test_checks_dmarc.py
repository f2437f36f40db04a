"""DMARC evaluation (RFC 7489): discovery, sp=, DNS trouble, pct, rua= fallback, From parsing."""

from __future__ import annotations

import contextlib
import random

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from tests.fakes.dns_records import record

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mta.checks.dmarc import (
    AuthenticatedIdentifier,
    DmarcPolicy,
    DmarcRecord,
    DmarcRecordError,
    DmarcResult,
    aligned,
    evaluate,
    from_domain,
    organizational_domain,
    parse_record,
)

Answer = list[str | bytes] | Exception


class FakeDns:
    """A `DnsLookup` over {name: TXT strings or an error}; other names do not exist."""

    def __init__(self, zone: dict[str, Answer]) -> None:
        self.zone = zone
        self.asked: list[str] = []

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        assert rdtype == "TXT"
        self.asked.append(name)
        answer = self.zone.get(name, DnsNotFound(name, rdtype, "not in the fake zone"))
        if isinstance(answer, Exception):
            raise answer
        return [record("TXT", text) for text in answer]


def spf_pass(domain: str) -> AuthenticatedIdentifier:
    return AuthenticatedIdentifier(domain, "pass")


def never_sampled() -> float:
    raise AssertionError("sample() must not be called here")


# --- discovery (RFC 7489 6.6.3) ---


def test_record_at_the_from_domain() -> None:
    lookup = FakeDns({"_dmarc.example.com": ["v=DMARC1; p=reject"]})
    verdict = evaluate(lookup, "Example.COM.", None, [], sample=never_sampled)
    assert verdict.result is DmarcResult.FAIL
    assert (verdict.from_domain, verdict.policy_domain) == ("example.com", "example.com")
    assert (verdict.policy, verdict.disposition) == (DmarcPolicy.REJECT, DmarcPolicy.REJECT)
    assert verdict.reason == "no aligned SPF or DKIM pass; p=reject"
    assert lookup.asked == ["_dmarc.example.com"]


def test_falls_back_to_the_organizational_domain() -> None:
    lookup = FakeDns(
        {
            "_dmarc.mail.example.co.uk": DnsNoData("_dmarc.mail.example.co.uk", "TXT", "no TXT"),
            "_dmarc.example.co.uk": ["v=DMARC1; p=quarantine"],
        }
    )
    verdict = evaluate(lookup, "mail.example.co.uk", spf_pass("bounces.example.co.uk"), [])
    assert lookup.asked == ["_dmarc.mail.example.co.uk", "_dmarc.example.co.uk"]
    assert verdict.policy_domain == "example.co.uk"
    assert (verdict.result, verdict.spf_aligned, verdict.dkim_aligned) == (
        DmarcResult.PASS,
        True,
        False,
    )
    assert verdict.reason == "aligned pass: spf=bounces.example.co.uk"


def test_non_dmarc_txt_records_are_discarded_before_counting() -> None:
    lookup = FakeDns(
        {
            "_dmarc.sub.example.com": ["v=spf1 -all", "hello"],
            "_dmarc.example.com": ["site-verification=abc", "v=DMARC1; p=reject"],
        }
    )
    verdict = evaluate(lookup, "sub.example.com", None, [], sample=never_sampled)
    assert (verdict.policy_domain, verdict.policy) == ("example.com", DmarcPolicy.REJECT)


def test_no_record_anywhere_is_none() -> None:
    lookup = FakeDns({})
    verdict = evaluate(lookup, "a.b.example.org", spf_pass("example.org"), [])
    assert lookup.asked == ["_dmarc.a.b.example.org", "_dmarc.example.org"]
    assert verdict.result is DmarcResult.NONE
    assert (verdict.policy_domain, verdict.policy, verdict.disposition) == (
        "",
        None,
        DmarcPolicy.NONE,
    )
    assert verdict.spf_aligned is False  # not evaluated without a record


def test_organizational_domain_is_asked_once_when_it_is_the_from_domain() -> None:
    lookup = FakeDns({})
    evaluate(lookup, "example.org", None, [])
    assert lookup.asked == ["_dmarc.example.org"]


def test_multiple_records_end_discovery_without_fallback() -> None:
    # RFC 7489 6.6.3 step 5: several records means no policy, not the org domain's.
    lookup = FakeDns(
        {
            "_dmarc.sub.example.com": ["v=DMARC1; p=none", "v=DMARC1; p=reject"],
            "_dmarc.example.com": ["v=DMARC1; p=reject"],
        }
    )
    verdict = evaluate(lookup, "sub.example.com", None, [])
    assert lookup.asked == ["_dmarc.sub.example.com"]
    assert verdict.result is DmarcResult.NONE
    assert verdict.policy is None
    assert verdict.policy_domain == "sub.example.com"
    assert "2 DMARC records" in verdict.reason


def test_multiple_records_at_the_organizational_domain() -> None:
    lookup = FakeDns({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=reject"]})
    verdict = evaluate(lookup, "sub.example.com", None, [])
    assert (verdict.result, verdict.policy_domain) == (DmarcResult.NONE, "example.com")


def test_empty_from_domain_is_none_without_dns() -> None:
    lookup = FakeDns({})
    assert evaluate(lookup, "", None, []).result is DmarcResult.NONE
    assert lookup.asked == []


# --- sp= (RFC 7489 6.3) ---

ORG_RECORD = {"_dmarc.example.com": ["v=DMARC1; p=reject; sp=quarantine"]}


def test_sp_applies_to_a_subdomain_through_the_organizational_record() -> None:
    verdict = evaluate(FakeDns(ORG_RECORD), "news.example.com", None, [])
    assert (verdict.policy, verdict.disposition) == (DmarcPolicy.QUARANTINE, DmarcPolicy.QUARANTINE)
    assert verdict.reason == "no aligned SPF or DKIM pass; sp=quarantine"


def test_sp_does_not_apply_to_the_organizational_domain_itself() -> None:
    verdict = evaluate(FakeDns(ORG_RECORD), "example.com", None, [])
    assert (verdict.policy, verdict.disposition) == (DmarcPolicy.REJECT, DmarcPolicy.REJECT)


def test_sp_of_a_record_at_the_from_domain_is_not_used_for_it() -> None:
    lookup = FakeDns({"_dmarc.news.example.com": ["v=DMARC1; p=none; sp=reject"]})
    verdict = evaluate(lookup, "news.example.com", None, [])
    assert verdict.policy is DmarcPolicy.NONE


def test_without_sp_a_subdomain_gets_p() -> None:
    lookup = FakeDns({"_dmarc.example.com": ["v=DMARC1; p=quarantine"]})
    assert evaluate(lookup, "x.y.example.com", None, []).policy is DmarcPolicy.QUARANTINE


# --- DNS trouble ---


def test_temporary_error_at_the_from_domain_is_temperror_without_fallback() -> None:
    lookup = FakeDns(
        {
            "_dmarc.sub.example.com": DnsTemporaryError(
                "_dmarc.sub.example.com", "TXT", "SERVFAIL"
            ),
            "_dmarc.example.com": ["v=DMARC1; p=reject"],
        }
    )
    verdict = evaluate(lookup, "sub.example.com", None, [])
    assert lookup.asked == ["_dmarc.sub.example.com"]
    assert verdict.result is DmarcResult.TEMPERROR
    assert (verdict.policy, verdict.disposition) == (None, DmarcPolicy.NONE)
    assert "SERVFAIL" in verdict.reason


def test_temporary_error_at_the_organizational_domain_is_temperror() -> None:
    lookup = FakeDns(
        {"_dmarc.example.com": DnsTemporaryError("_dmarc.example.com", "TXT", "timed out")}
    )
    verdict = evaluate(lookup, "sub.example.com", spf_pass("sub.example.com"), [])
    assert verdict.result is DmarcResult.TEMPERROR
    assert "timed out" in verdict.reason


# --- alignment and result ---


@pytest.mark.parametrize(
    ("record", "spf", "dkim", "result", "spf_aligned", "dkim_aligned"),
    [
        ("v=DMARC1; p=reject", spf_pass("bounce.example.com"), [], "pass", True, False),
        ("v=DMARC1; p=reject; aspf=s", spf_pass("bounce.example.com"), [], "fail", False, False),
        ("v=DMARC1; p=reject; aspf=s", spf_pass("EXAMPLE.com."), [], "pass", True, False),
        (
            "v=DMARC1; p=reject",
            AuthenticatedIdentifier("example.com", "softfail"),
            [],
            "fail",
            False,
            False,
        ),
        (
            "v=DMARC1; p=reject; adkim=s",
            None,
            [
                AuthenticatedIdentifier("example.com", "fail"),
                AuthenticatedIdentifier("esp.example.net", "pass"),
                AuthenticatedIdentifier("example.com", "PASS"),
            ],
            "pass",
            False,
            True,
        ),
        (
            "v=DMARC1; p=reject",
            spf_pass("example.net"),
            [AuthenticatedIdentifier("example.com.evil.example", "pass")],
            "fail",
            False,
            False,
        ),
    ],
)
def test_alignment_decides_the_result(
    record: str,
    spf: AuthenticatedIdentifier | None,
    dkim: list[AuthenticatedIdentifier],
    result: str,
    spf_aligned: bool,
    dkim_aligned: bool,
) -> None:
    verdict = evaluate(FakeDns({"_dmarc.example.com": [record]}), "example.com", spf, dkim)
    assert (verdict.result, verdict.spf_aligned, verdict.dkim_aligned) == (
        result,
        spf_aligned,
        dkim_aligned,
    )
    if result == "pass":
        assert verdict.disposition is DmarcPolicy.NONE
        assert verdict.policy is DmarcPolicy.REJECT


def test_aligned_modes_and_bad_input() -> None:
    assert aligned("example.com", "mail.example.com", "r")
    assert not aligned("example.com", "mail.example.com", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")  # co.uk is a public suffix
    assert not aligned("", "", "s")
    assert not aligned("example..com", "example..com", "s")
    with pytest.raises(ValueError, match="'r' or 's'"):
        aligned("example.com", "example.com", "relaxed")


def test_organizational_domain_with_the_shared_list() -> None:
    assert organizational_domain("a.b.Example.CO.UK.") == "example.co.uk"
    assert organizational_domain("co.uk") == "co.uk"  # a public suffix is its own
    assert organizational_domain("host.unknown-tld-xyz") == "host.unknown-tld-xyz"


# --- pct sampling (RFC 7489 6.6.4) ---


@pytest.mark.parametrize(
    ("record", "drawn", "sampled", "disposition"),
    [
        ("v=DMARC1; p=reject; pct=50", 0.49, True, "reject"),
        ("v=DMARC1; p=reject; pct=50", 0.5, False, "quarantine"),
        ("v=DMARC1; p=quarantine; pct=20", 0.9, False, "none"),
        ("v=DMARC1; p=reject; pct=0", 0.0, False, "quarantine"),
        ("v=DMARC1; p=none; pct=10", 0.99, False, "none"),
    ],
)
def test_pct_sampling_picks_the_next_less_strict_policy(
    record: str, drawn: float, sampled: bool, disposition: str
) -> None:
    verdict = evaluate(
        FakeDns({"_dmarc.example.com": [record]}), "example.com", None, [], sample=lambda: drawn
    )
    assert verdict.result is DmarcResult.FAIL
    assert verdict.disposition == disposition
    assert ("not in pct=" in verdict.reason) is not sampled


def test_a_pass_is_never_sampled() -> None:
    lookup = FakeDns({"_dmarc.example.com": ["v=DMARC1; p=reject; pct=50"]})
    verdict = evaluate(lookup, "example.com", spf_pass("example.com"), [], sample=never_sampled)
    assert (verdict.result, verdict.disposition) == (DmarcResult.PASS, DmarcPolicy.NONE)


# --- the rua= fallback (RFC 7489 6.6.3 step 6) and invalid records ---


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC1; rua=mailto:dmarc@example.com",
        "v=DMARC1; p=rejekt; rua=mailto:dmarc@example.com",
        "v=DMARC1; rua=mailto:dmarc@example.com; p=reject",  # p= not second
        "v=DMARC1; p=reject; sp=bogus; rua=https://reports.example.net/dmarc",
    ],
)
def test_bad_or_missing_policy_with_rua_reads_as_p_none(text: str) -> None:
    record = parse_record(text)
    assert (record.policy, record.subdomain_policy) == (DmarcPolicy.NONE, None)
    assert record.rua
    verdict = evaluate(FakeDns({"_dmarc.example.com": [text]}), "example.com", None, [])
    assert (verdict.result, verdict.policy, verdict.disposition) == (
        DmarcResult.FAIL,
        DmarcPolicy.NONE,
        DmarcPolicy.NONE,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=DMARC1; pct=100", "p= is missing"),
        ("v=DMARC1; p=rejekt", "p='rejekt'"),
        ("v=DMARC1; p=reject; sp=bogus", "sp='bogus'"),
        ("v=DMARC1; p=bogus; rua=bogus", "no rua= to fall back"),
    ],
)
def test_a_record_without_a_usable_policy_is_permerror_with_the_reason(
    text: str, message: str
) -> None:
    with pytest.raises(DmarcRecordError):
        parse_record(text)
    verdict = evaluate(FakeDns({"_dmarc.example.com": [text]}), "example.com", None, [])
    assert verdict.result is DmarcResult.PERMERROR
    assert (verdict.policy, verdict.disposition) == (None, DmarcPolicy.NONE)
    assert verdict.policy_domain == "example.com"
    assert verdict.reason.startswith("invalid DMARC record at _dmarc.example.com: ")
    assert message in verdict.reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=DMARC1; p=reject; pct=150", "pct='150'"),
        ("v=DMARC1; p=reject; adkim=x", "adkim='x'"),
        ("v=DMARC1; p=reject; rua=bogus", "rua=: 'bogus' is not a URI"),
        ("v=DMARC1; p=reject; fo=2", "fo="),
    ],
)
def test_a_bad_optional_tag_is_invalid_to_parse_but_does_not_disable_the_policy(
    text: str, message: str
) -> None:
    """RFC 7489 6.3: a receiver discards bad tags for their defaults; a typo in an
    optional tag must not switch off the domain's p=reject."""
    with pytest.raises(DmarcRecordError, match=message):
        parse_record(text)
    verdict = evaluate(FakeDns({"_dmarc.example.com": [text]}), "example.com", None, [])
    assert (verdict.result, verdict.policy, verdict.disposition) == (
        DmarcResult.FAIL,
        DmarcPolicy.REJECT,
        DmarcPolicy.REJECT,
    )


def test_a_record_whose_version_is_not_dmarc1_is_discarded() -> None:
    # "v=DMARC1 p=reject" has v="DMARC1 p=reject": not a DMARC record (RFC 7489 6.6.3 step 2).
    with pytest.raises(DmarcRecordError, match="must start with v=DMARC1"):
        parse_record("v=DMARC1 p=reject")
    lookup = FakeDns({"_dmarc.example.com": ["v=DMARC1 p=reject", "v=DMARC2; p=reject"]})
    assert evaluate(lookup, "example.com", None, []).result is DmarcResult.NONE


def test_parse_record_fields_and_defaults() -> None:
    assert parse_record("v=DMARC1; p=reject") == DmarcRecord(policy=DmarcPolicy.REJECT)
    record = parse_record(
        "v=DMARC1;P=Quarantine; SP=none; adkim=S; aspf=s; pct=25; ri=3600; fo=1 : d; rf=AFRF:"
        "future; rua=mailto:a@example.com!10m, https://r.example/x; ruf=mailto:f@example.com;"
        " t=y; np=reject"
    )
    assert record == DmarcRecord(
        policy=DmarcPolicy.QUARANTINE,
        subdomain_policy=DmarcPolicy.NONE,
        adkim="s",
        aspf="s",
        pct=25,
        rua=("mailto:a@example.com!10m", "https://r.example/x"),
        ruf=("mailto:f@example.com",),
        fo=("1", "d"),
        rf=("afrf", "future"),  # an unregistered format is ignored by reporters, not an error
        ri=3600,
    )


# --- junk from DNS never raises ---

JUNK_RECORDS: list[str | bytes] = [
    "v=DMARC1",
    "v=DMARC1;",
    "v=DMARC1; =",
    "v=DMARC1; p",
    "v=DMARC1; p=reject; p=none",
    "v=DMARC1; p=reject; rua=mailto:a@example.com,",
    "v=DMARC1; p=reject; ri=-1",
    "v=DMARC1; p=reject; pct=" + "9" * 5000,
    "v=DMARC1; p=\u0440eject",  # Cyrillic "р"
    "v=DMARC1; p=reject; fo=\x00",
    b"v=DMARC1; p=reject; x=\xff\xfe",
    b"v=DMARC1; p=\xffreject",
    "v=DMARC1; " + "x=y; " * 2000,
]


@pytest.mark.parametrize("text", JUNK_RECORDS)
def test_junk_records_never_raise(text: str | bytes) -> None:
    verdict = evaluate(FakeDns({"_dmarc.example.com": [text]}), "example.com", None, [])
    assert verdict.result in (DmarcResult.FAIL, DmarcResult.PERMERROR)


def test_random_records_never_raise() -> None:
    rng = random.Random(7489)
    alphabet = "v=DMARC1;prejctquanos:@,!.%/ \t\"'\\\x00é" + "".join(map(chr, range(33, 127)))
    for _ in range(2000):
        text = "v=DMARC1;" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        with contextlib.suppress(DmarcRecordError):
            parse_record(text)
        verdict = evaluate(FakeDns({"_dmarc.example.com": [text]}), "example.com", None, [])
        assert verdict.result in (DmarcResult.FAIL, DmarcResult.PERMERROR), text


# --- RFC5322.From domain (RFC 7489 6.6.1) ---


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("user@Example.COM", "example.com"),
        (" Jane Doe <jane@example.com>\r\n", "example.com"),
        ('"Doe, Jane" <jane@example.com>', "example.com"),
        ('"jane@victim.example" <jane@example.com>', "example.com"),
        ('"quoted local@part"@example.com', "example.com"),
        ("jane@example.com (Jane (the boss) Doe)", "example.com"),
        ("Jane Q. Doe <jane@example.com>", "example.com"),
        ("<@relay.example,@other.example:jane@example.com>", "example.com"),
        ("jane@ example . com", "example.com"),
        # Encoded-words are not decoded: what they hide cannot pose as an address.
        ("=?utf-8?q?J=C3=B6rg?= <j@example.com>", "example.com"),
        ("=?UTF-8?B?SsO2cmc=?= <j@example.com>", "example.com"),
        ("=?utf-8?q?ceo=40bank.example?= <x@evil.example>", "evil.example"),
        ('"=?utf-8?q?Doe=2C_Jane?=" <jane@example.com>', "example.com"),
        # Group syntax (RFC 6854), with or without the closing ";".
        ("Team: a@example.com, b@example.com;", "example.com"),
        ("Team: <a@example.com>", "example.com"),
        # Several addresses in one domain: one evaluation covers them all.
        ("a@example.com, B <b@EXAMPLE.com>", "example.com"),
        # Internationalised domains come out as A-labels.
        ("Jörg <jörg@bücher.example>", "xn--bcher-kva.example"),
    ],
)
def test_from_domain(value: str, domain: str) -> None:
    assert from_domain(value) == domain


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Jane Doe",
        "a@example.com, b@example.net",  # several domains: the caller decides
        "Team: a@example.com; b@example.net",
        "undisclosed-recipients:;",
        "a@evil.example <b@example.com>",  # "@" in an unquoted display name
        "<a@example.com> <b@example.com>",
        "<a@example.com> trailing",
        "<<a@example.com>>",
        "a@b@example.com",
        "jane@[192.0.2.1]",  # a domain-literal names no DNS domain
        "jane@example..com",
        "jane@example.com.",
        "@example.com",
        "jane@",
        '"unterminated <a@example.com>',
        "(unclosed comment a@example.com",
        "jane@example.com)",
        "Jane <jane@example.com",
        "jane@example.com>",
        "Team: Inner: a@example.com;;",
        "jane@exa\udcffmple.com",  # undecodable bytes (surrogateescape) in the domain
    ],
)
def test_from_domain_refuses(value: str) -> None:
    assert from_domain(value) is None
