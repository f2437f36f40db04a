"""The records a linked domain needs and those the appliance needs (zone/expected.py)."""

from __future__ import annotations

import pytest

from postroom.mailbox.zone.expected import (
    DkimSelector,
    DomainFacts,
    Egress,
    LiveTxt,
    domain_records,
    our_spf_mechanisms,
    policy_id,
    self_records,
)
from postroom.mailbox.zone.render import DnsRecord

DOMAIN = "example.test"
MAIL_HOST = "mail.example.test"
SPF_HOST = "_spf.mail.example.test"
OURS = (f"include:{SPF_HOST}",)
REPORT = "dmarc-reports@mail.example.test"
VERIFICATION = "postroom-verification=4f9c2a"


def facts(mail_host: str = MAIL_HOST) -> DomainFacts:
    return DomainFacts(
        domain=DOMAIN,
        verification_text=VERIFICATION,
        mail_host=mail_host,
        spf_mechanisms=OURS,
        report_address=REPORT,
        dkim=(
            DkimSelector("pr20250101-ed", "retiring", "v=DKIM1; k=ed25519; p=T2xkS2V5"),
            DkimSelector("pr20250301-ed", "active", "v=DKIM1; k=ed25519; p=QWN0aXZl"),
            DkimSelector("pr20250401-rsa", "pending", "v=DKIM1; k=rsa; p=TmV4dA=="),
        ),
    )


def by_name_type(records: list[DnsRecord], name: str, rdtype: str) -> list[DnsRecord]:
    return [record for record in records if record.name == name and record.type == rdtype]


def spf_of(records: list[DnsRecord]) -> DnsRecord:
    (spf,) = [r for r in by_name_type(records, DOMAIN, "TXT") if r.value.startswith("v=spf1")]
    return spf


def test_fresh_domain_gets_every_record_in_order() -> None:
    records = domain_records(facts(), LiveTxt())
    assert [(r.name, r.type, r.required) for r in records] == [
        (DOMAIN, "TXT", True),
        (DOMAIN, "MX", True),
        (DOMAIN, "TXT", True),
        ("pr20250101-ed._domainkey.example.test", "TXT", False),
        ("pr20250301-ed._domainkey.example.test", "TXT", True),
        ("pr20250401-rsa._domainkey.example.test", "TXT", True),
        ("_dmarc.example.test", "TXT", True),
        ("_mta-sts.example.test", "TXT", False),
        ("mta-sts.example.test", "CNAME", False),
        ("_smtp._tls.example.test", "TXT", False),
    ]
    assert [r.value for r in records] == [
        VERIFICATION,
        f"10 {MAIL_HOST}",
        f"v=spf1 include:{SPF_HOST} ~all",
        "v=DKIM1; k=ed25519; p=T2xkS2V5",
        "v=DKIM1; k=ed25519; p=QWN0aXZl",
        "v=DKIM1; k=rsa; p=TmV4dA==",
        f"v=DMARC1; p=none; rua=mailto:{REPORT}",
        f"v=STSv1; id={policy_id(MAIL_HOST)}",
        MAIL_HOST,
        f"v=TLSRPTv1; rua=mailto:{REPORT}",
    ]


def test_dkim_reasons_follow_the_key_state() -> None:
    records = domain_records(facts(), LiveTxt())
    reasons = {r.name.split(".")[0]: r.reason for r in records if "._domainkey." in r.name}
    assert "previous key" in reasons["pr20250101-ed"]
    assert "sign with now" in reasons["pr20250301-ed"]
    assert "next key" in reasons["pr20250401-rsa"]


def test_mta_sts_reason_names_the_policy_url() -> None:
    (sts,) = by_name_type(domain_records(facts(), LiveTxt()), "_mta-sts.example.test", "TXT")
    assert "https://mta-sts.example.test/.well-known/mta-sts.txt" in sts.reason


def test_published_spf_is_merged_never_duplicated() -> None:
    live = LiveTxt(spf=("v=spf1 mx include:_spf.google.com -all",))
    spf = spf_of(domain_records(facts(), live))
    assert spf.value == f"v=spf1 mx include:_spf.google.com include:{SPF_HOST} -all"
    assert spf.required
    assert "merged" in spf.reason


def test_published_spf_that_already_covers_us_is_kept_as_is() -> None:
    live = LiveTxt(spf=(f"v=spf1 include:{SPF_HOST} -all",))
    assert spf_of(domain_records(facts(), live)).value == f"v=spf1 include:{SPF_HOST} -all"


def test_malformed_published_spf_is_replaced_with_the_reason() -> None:
    live = LiveTxt(spf=("v=spf1 include:nodot -all",))
    spf = spf_of(domain_records(facts(), live))
    assert spf.value == f"v=spf1 include:{SPF_HOST} ~all"
    assert "replaces the published record" in spf.reason
    assert "include:nodot" in spf.reason


def test_unmergeable_published_spf_records_are_replaced() -> None:
    live = LiveTxt(spf=("v=spf1 redirect=a.example.net", "v=spf1 redirect=b.example.net"))
    spf = spf_of(domain_records(facts(), live))
    assert spf.value == f"v=spf1 include:{SPF_HOST} ~all"
    assert "different redirect=" in spf.reason
    assert "\n" not in spf.reason


def test_published_dmarc_is_never_weakened_and_gets_our_rua() -> None:
    live = LiveTxt(dmarc="v=DMARC1; p=reject; pct=50; rua=mailto:owner@example.test")
    (dmarc,) = by_name_type(domain_records(facts(), live), "_dmarc.example.test", "TXT")
    assert dmarc.value == (
        f"v=DMARC1; p=reject; pct=50; rua=mailto:owner@example.test,mailto:{REPORT}"
    )


def test_policy_id_is_stable_and_follows_the_mail_host() -> None:
    assert policy_id(MAIL_HOST) == policy_id(MAIL_HOST)
    assert policy_id(MAIL_HOST) != policy_id("mx2.example.test")
    assert policy_id(MAIL_HOST).isalnum() and 1 <= len(policy_id(MAIL_HOST)) <= 32
    moved = domain_records(facts("mx2.example.test"), LiveTxt())
    (sts,) = by_name_type(moved, "_mta-sts.example.test", "TXT")
    assert sts.value == f"v=STSv1; id={policy_id('mx2.example.test')}"


EGRESS = [
    Egress("192.0.2.1", "out1.example.test"),
    Egress("2001:db8::1", "out2.example.test"),
    Egress("192.0.2.1", "out3.example.test"),
    Egress("", "unset.example.test"),
]


def test_our_spf_mechanisms_include_mode() -> None:
    assert our_spf_mechanisms("include", SPF_HOST, EGRESS) == (f"include:{SPF_HOST}",)


def test_our_spf_mechanisms_address_mode_dedups_and_skips_empty() -> None:
    assert our_spf_mechanisms("addresses", SPF_HOST, EGRESS) == (
        "ip4:192.0.2.1",
        "ip6:2001:db8::1",
    )


def test_self_records_list_egress_and_fcrdns() -> None:
    egress = [Egress("192.0.2.1", "out1.example.test"), Egress("2001:db8::1", "out2.example.test")]
    records = self_records(MAIL_HOST, SPF_HOST, egress)
    assert [(r.name, r.type, r.value, r.required) for r in records] == [
        (SPF_HOST, "TXT", "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 -all", True),
        ("out1.example.test", "A", "192.0.2.1", True),
        ("1.2.0.192.in-addr.arpa", "PTR", "out1.example.test", True),
        ("out2.example.test", "AAAA", "2001:db8::1", True),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            "PTR",
            "out2.example.test",
            True,
        ),
    ]


@pytest.mark.parametrize("egress", [[], [Egress("", "unset.example.test")]])
def test_self_records_fall_back_to_the_mail_host(egress: list[Egress]) -> None:
    records = self_records(MAIL_HOST, SPF_HOST, egress)
    assert [(r.name, r.type, r.value) for r in records] == [
        (SPF_HOST, "TXT", f"v=spf1 a:{MAIL_HOST} -all"),
    ]


def test_self_records_publish_the_bounce_domain_mx_and_spf() -> None:
    records = self_records(MAIL_HOST, SPF_HOST, [], bounce_domain="bounces.example.test")
    assert [(r.name, r.type, r.value, r.required) for r in records][1:] == [
        ("bounces.example.test", "MX", f"10 {MAIL_HOST}", True),
        ("bounces.example.test", "TXT", f"v=spf1 include:{SPF_HOST} -all", True),
    ]
