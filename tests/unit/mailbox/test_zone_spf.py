"""SPF syntax check, merge and lookup counting (RFC 7208), with a resolver faked from data."""

from __future__ import annotations

import pytest

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mailbox.zone.spf import (
    SpfMergeError,
    SpfRecord,
    SpfSyntaxError,
    count_lookups,
    covers,
    is_spf,
    merge_spf,
    parse_spf,
)

OURS = ["include:_spf.mail.example.test"]


class FakeResolver:
    """TXT answers from a dict; a missing name is NXDOMAIN, an exception value is raised."""

    def __init__(self, zone: dict[str, list[str] | Exception]) -> None:
        self.zone = zone
        self.queries: list[str] = []

    async def txt(self, name: str) -> list[str]:
        self.queries.append(name)
        answer = self.zone.get(name)
        if answer is None:
            raise DnsNotFound(name, "TXT", "no such domain (NXDOMAIN)")
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1", True),
        ("v=spf1 -all", True),
        ("V=SPF1 mx", True),
        ("v=spf10 -all", False),
        ("v=spf1-all", False),
        (" v=spf1 -all", False),
        ("spf1 -all", False),
        ("v=DMARC1; p=none", False),
        ("", False),
    ],
)
def test_is_spf(text: str, expected: bool) -> None:
    assert is_spf(text) is expected


# Records from RFC 7208 appendix A and section 7 (macro examples), which must parse.
RFC_RECORDS = [
    "v=spf1 +all",
    "v=spf1 a -all",
    "v=spf1 a:example.org -all",
    "v=spf1 mx -all",
    "v=spf1 mx:example.org -all",
    "v=spf1 mx mx:example.org -all",
    "v=spf1 mx/30 mx:example.org/30 -all",
    "v=spf1 ptr -all",
    "v=spf1 ip4:192.0.2.128/28 -all",
    "v=spf1 mx ip4:192.0.2.1 -all",
    "v=spf1 -ptr +all",
    "v=spf1 a:mail.example.com -all",
    "v=spf1 redirect=_spf.example.com",
    "v=spf1 mx -all exp=explain._spf.%{d}",
    "v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all",
    "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
    "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all",
    "v=spf1 exists:%{lr-}.lp._spf.%{d2} -all",
    "v=spf1 exists:%{ir}.%{v}.%{l1r-}.lp._spf.%{d2} -all",
    "v=spf1 exists:%{d2}.trusted-domains.example.net -all",
    "v=spf1 ip6:2001:db8::/32 ip6:::1 a/24//64 mx//64 ~all",
    "v=spf1 include:_spf.google.com include:spf.protection.outlook.com ?all",
    "v=spf1 a:example.org. ip4:0.0.0.0/0 unknown-mod=%{d}.x%_%%%- ",
    "v=spf1",
]


@pytest.mark.parametrize("text", RFC_RECORDS)
def test_valid_records_parse(text: str) -> None:
    record = parse_spf(text)
    assert record.terms == tuple(text.split()[1:])
    assert record.text == " ".join(text.split())


def test_terms_are_kept_as_written_without_version() -> None:
    record = parse_spf("v=spf1  MX  Include:Example.ORG   -ALL ")
    assert record == SpfRecord(("MX", "Include:Example.ORG", "-ALL"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=spf1 foo -all", "unknown mechanism 'foo'"),
        ("v=spf1 !all", "bad qualifier '!'"),
        ("v=spf1 --all", "bad qualifier '-'"),
        ("v=spf1 + mx", "qualifier without a mechanism"),
        ("v=spf1 redirect=a.example redirect=b.example", "redirect= appears more than once"),
        ("v=spf1 exp=a.example exp=b.example -all", "exp= appears more than once"),
        ("v=spf1 -redirect=a.example", "a modifier takes no qualifier"),
        ("v=spf1 include=_spf.example.com -all", "takes ':' not '='"),
        ("v=spf1 mx -all v=spf1 a", "second version term"),
        ("v=spf1 include -all", "include needs ':<domain>'"),
        ("v=spf1 include: -all", "empty domain"),
        ("v=spf1 include:localhost -all", "does not end in a domain name"),
        ("v=spf1 a:192.0.2.1 -all", "does not end in a domain name"),
        ("v=spf1 include:a..example.com -all", "empty or too long label"),
        ("v=spf1 exists:%{x}.example.com", "malformed macro"),
        ("v=spf1 exists:%{d0}.example.com", "digit must be nonzero"),
        ("v=spf1 exists:%{c}.example.com", "malformed macro"),
        ("v=spf1 exists:50%.example.com", "malformed macro"),
        ("v=spf1 all:example.com", "'all' takes no argument"),
        ("v=spf1 ip4 -all", "ip4 needs ':<network>'"),
        ("v=spf1 ip4:192.0.2.256 -all", "is not an ip4 address"),
        ("v=spf1 ip4:192.0.2.1/33 -all", "bad CIDR length '33'"),
        ("v=spf1 ip4:192.0.2.0/024 -all", "bad CIDR length '024'"),
        ("v=spf1 ip6:192.0.2.1 -all", "is not an ip6 address"),
        ("v=spf1 ip6:2001:db8::/129 -all", "bad CIDR length '129'"),
        ("v=spf1 a/ -all", "bad CIDR length ''"),
        ("v=spf1 mx//200 -all", "bad CIDR length '200'"),
        ("v=spf1 ptr/24 -all", "ptr takes an optional"),
        ("v=spf2.0/pra -all", "not an SPF record"),
    ],
)
def test_syntax_errors_name_the_term_and_rule(text: str, message: str) -> None:
    with pytest.raises(SpfSyntaxError) as raised:
        parse_spf(text)
    assert message in str(raised.value)


def test_merge_with_nothing_published() -> None:
    assert merge_spf([], OURS) == "v=spf1 include:_spf.mail.example.test ~all"
    assert merge_spf(["google-site-verification=abc"], ["ip4:192.0.2.1", "ip4:192.0.2.1"]) == (
        "v=spf1 ip4:192.0.2.1 ~all"
    )


def test_merge_inserts_ours_before_all_and_keeps_the_owners_all() -> None:
    assert merge_spf(["v=spf1 mx -all"], OURS) == ("v=spf1 mx include:_spf.mail.example.test -all")
    assert merge_spf(["v=spf1 a ~all"], OURS) == "v=spf1 a include:_spf.mail.example.test ~all"


def test_merge_never_weakens_and_keeps_pass_all_for_the_owner_to_decide() -> None:
    # "+all" and "?all" stay as published: the audit warns; only the owner may decide.
    assert merge_spf(["v=spf1 +all"], OURS) == "v=spf1 include:_spf.mail.example.test +all"
    assert merge_spf(["v=spf1 ?all"], OURS) == "v=spf1 include:_spf.mail.example.test ?all"


def test_merge_is_idempotent_when_ours_is_present() -> None:
    published = "v=spf1 mx +Include:_SPF.mail.example.test -all"
    assert merge_spf([published], OURS) == published
    assert merge_spf([merge_spf(["v=spf1 a -all"], OURS)], OURS) == (
        "v=spf1 a include:_spf.mail.example.test -all"
    )


def test_merge_several_records_into_one_with_the_strictest_all() -> None:
    merged = merge_spf(
        [
            "v=spf1 include:_spf.google.com ~all",
            "v=spf1 include:mailgun.org include:_spf.google.com -all",
        ],
        OURS,
    )
    assert merged == (
        "v=spf1 include:_spf.google.com include:mailgun.org include:_spf.mail.example.test -all"
    )
    assert parse_spf(merged).terms.count("-all") == 1


def test_merge_keeps_redirect_last_when_there_is_no_all() -> None:
    assert merge_spf(["v=spf1 redirect=_spf.example.com mx"], OURS) == (
        "v=spf1 mx include:_spf.mail.example.test redirect=_spf.example.com"
    )


def test_merge_puts_modifiers_after_all_and_drops_dead_mechanisms() -> None:
    merged = merge_spf(["v=spf1 exp=explain.example.com mx -all a"], OURS)
    # "a" after "-all" is never evaluated; moving it before "-all" would authorise more.
    assert merged == "v=spf1 mx include:_spf.mail.example.test -all exp=explain.example.com"


def test_merge_drops_duplicates_case_insensitively_keeping_the_first() -> None:
    assert merge_spf(["v=spf1 MX mx +mx ip4:192.0.2.1 -all"], ["IP4:192.0.2.1"]) == (
        "v=spf1 MX ip4:192.0.2.1 -all"
    )


def test_merge_without_all_does_not_invent_one() -> None:
    assert merge_spf(["v=spf1 mx"], OURS) == "v=spf1 mx include:_spf.mail.example.test"


def test_merge_refuses_what_it_cannot_merge() -> None:
    with pytest.raises(SpfMergeError, match="different redirect="):
        merge_spf(["v=spf1 redirect=a.example.com", "v=spf1 redirect=b.example.com"], OURS)
    with pytest.raises(SpfSyntaxError, match="unknown mechanism"):
        merge_spf(["v=spf1 mx bogus -all"], OURS)
    with pytest.raises(SpfSyntaxError, match="other than 'all'"):
        merge_spf([], ["-all"])
    with pytest.raises(SpfSyntaxError, match="other than 'all'"):
        merge_spf([], ["redirect=x.example.com"])


def test_covers() -> None:
    assert covers(parse_spf("v=spf1 mx INCLUDE:_spf.mail.example.test -all"), OURS)
    assert covers(parse_spf("v=spf1 +include:_spf.mail.example.test ~all"), OURS)
    assert not covers(parse_spf("v=spf1 mx -all"), OURS)
    assert not covers(parse_spf("v=spf1 include:_spf.other.test -all"), OURS)
    assert not covers(parse_spf("v=spf1 -all include:_spf.mail.example.test"), OURS)
    assert not covers(parse_spf("v=spf1 ~include:_spf.mail.example.test -all"), OURS)
    assert not covers(parse_spf("v=spf1 include:_spf.mail.example.test"), [*OURS, "ip4:192.0.2.1"])


async def test_count_lookups_through_includes_and_redirect() -> None:
    resolver = FakeResolver(
        {
            "_spf.a.test": ["some other text", "v=spf1 include:_nb.a.test a mx -all"],
            "_nb.a.test": ["v=spf1 ip4:192.0.2.0/24 ptr ~all"],
            "_r.b.test": ["v=spf1 exists:%{i}.x.test -all"],
        }
    )
    result = await count_lookups(
        "v=spf1 ip4:192.0.2.1 include:_spf.a.test redirect=_r.b.test", resolver
    )
    assert result.count == 7
    assert not result.over_limit
    assert result.detail == (
        "lookup 1: include:_spf.a.test",
        "lookup 2: include:_spf.a.test > include:_nb.a.test",
        "lookup 3: include:_spf.a.test > include:_nb.a.test > ptr",
        "lookup 4: include:_spf.a.test > a",
        "lookup 5: include:_spf.a.test > mx",
        "lookup 6: redirect=_r.b.test",
        "lookup 7: redirect=_r.b.test > exists:%{i}.x.test",
    )
    assert not result.temporary_error and not result.permanent_error


async def test_redirect_next_to_all_is_not_counted() -> None:
    result = await count_lookups("v=spf1 redirect=x.test -all", FakeResolver({}))
    assert result.count == 0
    assert result.detail == ("redirect=x.test: ignored next to 'all', not counted",)


async def test_count_stops_after_the_limit() -> None:
    zone: dict[str, list[str] | Exception] = {
        f"s{index}.test": [f"v=spf1 a include:s{index + 1}.test"] for index in range(50)
    }
    resolver = FakeResolver(zone)
    result = await count_lookups("v=spf1 include:s0.test -all", resolver)
    assert result.over_limit
    assert result.count == 11
    assert result.detail[-1] == "stopped: more than 10 lookups"
    assert len(resolver.queries) <= 11


async def test_exactly_the_limit_is_not_over() -> None:
    mechanisms = " ".join(["a"] * 10)
    result = await count_lookups(f"v=spf1 {mechanisms} -all", FakeResolver({}))
    assert (result.count, result.over_limit) == (10, False)
    low = await count_lookups(f"v=spf1 {mechanisms} -all", FakeResolver({}), limit=9)
    assert (low.count, low.over_limit) == (10, True)


async def test_loop_is_reported_and_bounded() -> None:
    resolver = FakeResolver(
        {"a.test": ["v=spf1 include:b.test -all"], "b.test": ["v=spf1 include:a.test -all"]}
    )
    result = await count_lookups("v=spf1 include:a.test -all", resolver)
    assert result.over_limit
    assert result.detail[-1] == "include:a.test > include:b.test > include:a.test: loop"
    assert resolver.queries == ["a.test", "b.test"]


async def test_depth_is_bounded_even_with_a_high_limit() -> None:
    zone: dict[str, list[str] | Exception] = {
        f"d{index}.test": [f"v=spf1 include:d{index + 1}.test"] for index in range(30)
    }
    resolver = FakeResolver(zone)
    result = await count_lookups("v=spf1 include:d0.test", resolver, limit=100)
    assert len(resolver.queries) == 10
    assert result.detail[-1].endswith("nested deeper than 10, not followed")
    assert not result.over_limit


async def test_target_problems_are_reported() -> None:
    resolver = FakeResolver(
        {
            "nodata.test": DnsNoData("nodata.test", "TXT", "no records of this type"),
            "two.test": ["v=spf1 -all", "v=spf1 ~all"],
            "bad.test": ["v=spf1 bogus"],
            "other.test": ["hello"],
        }
    )
    record = (
        "v=spf1 include:x.test include:nodata.test include:two.test include:bad.test "
        "include:other.test include:%{d}.test -all"
    )
    result = await count_lookups(record, resolver)
    assert result.count == 6
    assert result.permanent_error and not result.temporary_error and not result.over_limit
    assert [line for line in result.detail if not line.startswith("lookup")] == [
        "include:x.test: no SPF record (no such domain (NXDOMAIN))",
        "include:nodata.test: no SPF record (no records of this type)",
        "include:two.test: 2 SPF records",
        "include:bad.test: invalid SPF record: 'bogus': unknown mechanism 'bogus'",
        "include:other.test: no SPF record",
        "include:%{d}.test: target depends on macros, not followed",
    ]


async def test_temporary_errors_are_reported_not_over_limit() -> None:
    resolver = FakeResolver({"slow.test": DnsTemporaryError("slow.test", "TXT", "timeout")})
    result = await count_lookups("v=spf1 include:slow.test -all", resolver)
    assert (result.count, result.over_limit) == (1, False)
    assert result.temporary_error and not result.permanent_error
    assert result.detail[-1] == "include:slow.test: temporary DNS error (timeout)"


async def test_count_refuses_an_invalid_top_record() -> None:
    with pytest.raises(SpfSyntaxError):
        await count_lookups("v=spf1 include", FakeResolver({}))
