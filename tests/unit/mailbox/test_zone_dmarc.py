"""DMARC record syntax (RFC 7489 6.3/6.4) and the never-weaker record we ask for."""

from __future__ import annotations

import pytest

from postroom.mailbox.zone.dmarc import (
    DmarcRecord,
    DmarcSyntaxError,
    expected_dmarc,
    is_dmarc,
    parse_dmarc,
    policy_strength,
)

RUA = "dmarc-reports@mail.example.test"

# Records from RFC 7489 appendix B.
RFC_RECORDS = [
    "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com",
    "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; "
    "ruf=mailto:auth-reports@thirdparty.example.net",
    "v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com,"
    "mailto:tld-test@thirdparty.example.net!10m; pct=25",
    "v=DMARC1; p=reject; sp=none; rua=mailto:dmarc@example.com",
]


@pytest.mark.parametrize("text", RFC_RECORDS)
def test_rfc_examples_parse_and_normalise_to_themselves(text: str) -> None:
    record = parse_dmarc(text)
    assert record.text == text
    assert parse_dmarc(record.text) == record


def test_properties_and_defaults() -> None:
    record = parse_dmarc(RFC_RECORDS[2])
    assert record.policy == "quarantine"
    assert record.subdomain_policy == "quarantine"
    assert record.pct == 25
    assert record.rua == (
        "mailto:dmarc-feedback@example.com",
        "mailto:tld-test@thirdparty.example.net!10m",
    )
    plain = parse_dmarc("v=DMARC1; p=reject")
    assert (plain.pct, plain.rua, plain.subdomain_policy) == (100, (), "reject")
    assert parse_dmarc("v=DMARC1; p=reject; sp=none").subdomain_policy == "none"


def test_whitespace_case_and_separators_are_normalised() -> None:
    record = parse_dmarc(
        "v=DMARC1;P = Reject ;  RUA=mailto:a@example.com , mailto:b@example.com;"
        "adkim=S;fo=0 : d; x_future=Keep Me;;"
    )
    assert record.tags == (
        ("v", "DMARC1"),
        ("p", "reject"),
        ("rua", "mailto:a@example.com,mailto:b@example.com"),
        ("adkim", "s"),
        ("fo", "0:d"),
        ("x_future", "Keep Me"),
    )
    assert record.text == (
        "v=DMARC1; p=reject; rua=mailto:a@example.com,mailto:b@example.com; "
        "adkim=s; fo=0:d; x_future=Keep Me"
    )


def test_missing_p_is_valid_only_with_rua() -> None:
    # RFC 7489 6.6.3 step 5: without a valid p, a valid rua makes receivers apply p=none.
    record = parse_dmarc("v=DMARC1; rua=mailto:d@example.com")
    assert record.policy == "none"
    assert record.tag("p") is None
    with pytest.raises(DmarcSyntaxError, match="p= is missing and there is no rua="):
        parse_dmarc("v=DMARC1; sp=reject")
    with pytest.raises(DmarcSyntaxError, match="p= is missing"):
        parse_dmarc("v=DMARC1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with v=DMARC1"),
        ("p=none; v=DMARC1", "must start with v=DMARC1"),
        ("v=dmarc1; p=none", "must start with v=DMARC1"),
        ("v=DMARC2; p=none", "must start with v=DMARC1"),
        ("v=spf1 -all", "must start with v=DMARC1"),
        ("v=DMARC1; rua=mailto:a@example.com; p=none", "p= must directly follow v=DMARC1"),
        ("v=DMARC1; p=rejct", "p='rejct': must be none, quarantine or reject"),
        ("v=DMARC1; p=", "p='': must be none"),
        ("v=DMARC1; p=none; sp=block", "sp='block'"),
        ("v=DMARC1; p=none; pct=101", "pct='101': must be an integer from 0 to 100"),
        ("v=DMARC1; p=none; pct=-1", "pct='-1'"),
        ("v=DMARC1; p=none; pct=50%", "pct='50%'"),
        ("v=DMARC1; p=none; rua=dmarc@example.com", "'dmarc@example.com' is not a mailto: URI"),
        ("v=DMARC1; p=none; rua=https://example.com/r", "is not a mailto: URI"),
        ("v=DMARC1; p=none; rua=mailto:a@example.com,", "'' is not a mailto: URI"),
        ("v=DMARC1; p=none; ruf=mailto:a@example.com!10x", "ruf=: 'mailto:a@example.com!10x'"),
        ("v=DMARC1; p=none; adkim=x", "adkim='x': must be r or s"),
        ("v=DMARC1; p=none; aspf=relaxed", "aspf='relaxed'"),
        ("v=DMARC1; p=none; ri=1h", "ri='1h'"),
        ("v=DMARC1; p=none; fo=2", "fo='2'"),
        ("v=DMARC1; p=none; rf=afrf:", "rf='afrf:'"),
        ("v=DMARC1; p=none; p=reject", "tag p= appears more than once"),
        ("v=DMARC1; p=none; pct=50; PCT=60", "tag pct= appears more than once"),
        ("v=DMARC1; p=none; reject", "'reject' is not tag=value"),
        ("v=DMARC1; p=none; 1x=y", "'1x=y' is not tag=value"),
        ("v=DMARC1; p=none; x-y=1", "'x-y=1' is not tag=value"),
    ],
)
def test_syntax_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(DmarcSyntaxError) as raised:
        parse_dmarc(text)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", True),
        ("v = DMARC1 ;p=reject", True),
        ("V=DMARC1", True),
        ("v=DMARC1", True),
        ("v=dmarc1; p=none", False),
        ("v=DMARC10; p=none", False),
        ("p=none; v=DMARC1", False),
        ("v=spf1 -all", False),
        ("", False),
    ],
)
def test_is_dmarc(text: str, expected: bool) -> None:
    assert is_dmarc(text) is expected


def test_policy_strength_orders_policies() -> None:
    assert policy_strength("none") < policy_strength("quarantine") < policy_strength("reject")
    assert policy_strength("REJECT") == 2
    with pytest.raises(ValueError, match="not a DMARC policy"):
        policy_strength("block")


def test_expected_when_nothing_or_garbage_is_published() -> None:
    minimal = f"v=DMARC1; p=none; rua=mailto:{RUA}"
    assert expected_dmarc(None, RUA) == minimal
    assert expected_dmarc("", RUA) == minimal
    assert expected_dmarc("v=DMARC1; p=rejct", RUA) == minimal
    assert expected_dmarc("v=DMARC1; p=none", f"mailto:{RUA}") == minimal


def test_expected_keeps_the_published_policy_and_appends_our_rua() -> None:
    published = (
        "v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=s; "
        "rua=mailto:owner@example.com; ruf=mailto:f@example.com"
    )
    expected = expected_dmarc(published, RUA)
    assert expected == (
        "v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=s; "
        f"rua=mailto:owner@example.com,mailto:{RUA}; ruf=mailto:f@example.com"
    )
    record = parse_dmarc(expected)
    before = parse_dmarc(published)
    assert policy_strength(record.policy) >= policy_strength(before.policy)
    assert (record.subdomain_policy, record.pct) == (before.subdomain_policy, before.pct)


def test_expected_adds_rua_when_the_record_has_none() -> None:
    assert expected_dmarc("v=DMARC1;p=quarantine;pct=10", RUA) == (
        f"v=DMARC1; p=quarantine; pct=10; rua=mailto:{RUA}"
    )


def test_expected_does_not_duplicate_our_rua() -> None:
    published = f"v=DMARC1; p=none; rua=mailto:{RUA.upper()}!50m, mailto:o@example.com"
    assert expected_dmarc(published, RUA) == (
        f"v=DMARC1; p=none; rua=mailto:{RUA.upper()}!50m,mailto:o@example.com"
    )
    assert expected_dmarc(expected_dmarc(None, RUA), RUA) == expected_dmarc(None, RUA)


def test_expected_makes_the_implied_none_explicit() -> None:
    assert expected_dmarc("v=DMARC1; rua=mailto:o@example.com", RUA) == (
        f"v=DMARC1; p=none; rua=mailto:o@example.com,mailto:{RUA}"
    )


def test_expected_refuses_a_bad_report_address() -> None:
    for bad in ("not an address", "mailto:", f"{RUA}!10m"):
        with pytest.raises(ValueError, match="not a report address"):
            expected_dmarc(None, bad)


def test_record_value_is_comparable() -> None:
    assert parse_dmarc("v=DMARC1; p=none") == DmarcRecord((("v", "DMARC1"), ("p", "none")))
