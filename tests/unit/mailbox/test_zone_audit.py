"""Live DNS of a linked domain against what it needs (zone/audit.py), with DNS faked from data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeVar

import pytest

from postroom.core.dns import DnsError, DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mailbox.zone.audit import AuditReport, AuditRow, audit_domain
from postroom.mailbox.zone.expected import DkimSelector, DomainFacts, policy_id

DOMAIN = "example.test"
MAIL_HOST = "mail.example.test"
MAIL_ADDRESS = "192.0.2.1"
SPF_HOST = "_spf.mail.example.test"
REPORT = "dmarc-reports@mail.example.test"
VERIFICATION = "postroom-verification=4f9c2a"
SELECTOR = "pr20250301-ed"
DKIM_HOST = f"{SELECTOR}._domainkey.{DOMAIN}"
KEY_TXT = dkim_txt_value(KeyAlgorithm.ED25519, generate_key(KeyAlgorithm.ED25519).public_b64)
OTHER_KEY_TXT = dkim_txt_value(KeyAlgorithm.ED25519, generate_key(KeyAlgorithm.ED25519).public_b64)
GOOD_SPF = f"v=spf1 mx include:{SPF_HOST} -all"
GOOD_DMARC = f"v=DMARC1; p=none; rua=mailto:{REPORT}"

FACTS = DomainFacts(
    domain=DOMAIN,
    verification_text=VERIFICATION,
    mail_host=MAIL_HOST,
    spf_mechanisms=(f"include:{SPF_HOST}",),
    report_address=REPORT,
    dkim=(DkimSelector(SELECTOR, "active", KEY_TXT),),
)

Answer = list[str] | DnsError
T = TypeVar("T")


class FakeDns:
    """Answers from dicts keyed by name; an absent name is NXDOMAIN, a DnsError value is raised."""

    def __init__(self) -> None:
        self.txt_answers: dict[str, Answer] = {
            DOMAIN: [VERIFICATION, GOOD_SPF],
            SPF_HOST: [f"v=spf1 ip4:{MAIL_ADDRESS} -all"],
            DKIM_HOST: [KEY_TXT],
            f"_dmarc.{DOMAIN}": [GOOD_DMARC],
            f"_mta-sts.{DOMAIN}": [f"v=STSv1; id={policy_id(MAIL_HOST)}"],
            f"_smtp._tls.{DOMAIN}": [f"v=TLSRPTv1; rua=mailto:{REPORT}"],
        }
        self.mx_answers: dict[str, list[tuple[int, str]] | DnsError] = {DOMAIN: [(10, MAIL_HOST)]}
        self.address_answers: dict[str, Answer] = {
            MAIL_HOST: [MAIL_ADDRESS],
            f"mta-sts.{DOMAIN}": [MAIL_ADDRESS],
        }

    async def txt(self, name: str) -> list[str]:
        return list(_answer(self.txt_answers, name, "TXT"))

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        return list(_answer(self.mx_answers, domain, "MX"))

    async def addresses(self, host: str) -> list[str]:
        return list(_answer(self.address_answers, host, "A/AAAA"))


def _answer(table: Mapping[str, list[T] | DnsError], name: str, rdtype: str) -> list[T]:
    answer = table.get(name)
    if answer is None:
        raise DnsNotFound(name, rdtype, "no such domain (NXDOMAIN)")
    if isinstance(answer, DnsError):
        raise answer
    return answer


async def audit(dns: FakeDns) -> AuditReport:
    return await audit_domain(FACTS, dns)


def row_of(report: AuditReport, name: str, rdtype: str = "TXT") -> AuditRow:
    (row,) = [r for r in report.rows if r.name == name and r.type == rdtype]
    return row


def apex_row(report: AuditReport, spf: bool) -> AuditRow:
    (row,) = [
        r
        for r in report.rows
        if r.name == DOMAIN and r.type == "TXT" and r.expected.startswith("v=spf1") == spf
    ]
    return row


def spf_row(report: AuditReport) -> AuditRow:
    return apex_row(report, spf=True)


def dmarc_row(report: AuditReport) -> AuditRow:
    return row_of(report, f"_dmarc.{DOMAIN}")


def mx_row(report: AuditReport) -> AuditRow:
    return row_of(report, DOMAIN, "MX")


async def test_everything_published_is_ok() -> None:
    report = await audit(FakeDns())
    assert report.ok is True
    assert [(r.name, r.type, r.verdict) for r in report.rows] == [
        (DOMAIN, "TXT", "ok"),
        (DOMAIN, "MX", "ok"),
        (DOMAIN, "TXT", "ok"),
        (DKIM_HOST, "TXT", "ok"),
        (f"_dmarc.{DOMAIN}", "TXT", "ok"),
        (f"_mta-sts.{DOMAIN}", "TXT", "ok"),
        (f"mta-sts.{DOMAIN}", "CNAME", "ok"),
        (f"_smtp._tls.{DOMAIN}", "TXT", "ok"),
    ]
    assert spf_row(report).found == GOOD_SPF
    assert spf_row(report).expected == GOOD_SPF
    assert row_of(report, DKIM_HOST).found == KEY_TXT


async def test_json_shape_is_the_contract() -> None:
    document = (await audit(FakeDns())).as_json()
    assert set(document) == {"domain", "ok", "records"}
    assert document["domain"] == DOMAIN and document["ok"] is True
    records = document["records"]
    assert isinstance(records, list) and len(records) == 8
    for record in records:
        assert set(record) == {"name", "type", "expected", "found", "verdict", "required", "reason"}
    json.dumps(document)  # must serialise as is


async def test_missing_dmarc_nxdomain() -> None:
    dns = FakeDns()
    del dns.txt_answers[f"_dmarc.{DOMAIN}"]
    report = await audit(dns)
    assert dmarc_row(report).verdict == "missing"
    assert dmarc_row(report).expected == GOOD_DMARC
    assert report.ok is False


async def test_missing_apex_txt_nodata_fails_verification_and_spf() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = DnsNoData(DOMAIN, "TXT", "no records of this type")
    report = await audit(dns)
    assert apex_row(report, spf=False).verdict == "missing"
    assert spf_row(report).verdict == "missing"
    assert report.ok is False


async def test_missing_dkim_record_names_the_failure() -> None:
    dns = FakeDns()
    del dns.txt_answers[DKIM_HOST]
    row = row_of(await audit(dns), DKIM_HOST)
    assert row.verdict == "missing"
    assert "NXDOMAIN" in row.reason


async def test_missing_mx_nodata() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = DnsNoData(DOMAIN, "MX", "no records of this type")
    report = await audit(dns)
    assert mx_row(report).verdict == "missing"
    assert report.ok is False


async def test_verification_token_of_another_add_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = ["postroom-verification=other", GOOD_SPF]
    row = apex_row(await audit(dns), spf=False)
    assert row.verdict == "wrong"
    assert row.found == "postroom-verification=other"


async def test_two_spf_records_are_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = [VERIFICATION, GOOD_SPF, "v=spf1 a -all"]
    report = await audit(dns)
    row = spf_row(report)
    assert row.verdict == "wrong"
    assert row.found == f"{GOOD_SPF} | v=spf1 a -all"
    assert row.expected == f"v=spf1 mx include:{SPF_HOST} a -all"
    assert "2 SPF records" in row.reason
    assert report.ok is False


async def test_spf_without_our_include_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = [VERIFICATION, "v=spf1 mx -all"]
    report = await audit(dns)
    row = spf_row(report)
    assert row.verdict == "wrong"
    assert f"include:{SPF_HOST}" in row.reason
    assert row.expected == f"v=spf1 mx include:{SPF_HOST} -all"
    assert report.ok is False


async def test_malformed_spf_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = [VERIFICATION, f"v=spf1 include:{SPF_HOST} bogus -all"]
    row = spf_row(await audit(dns))
    assert row.verdict == "wrong"
    assert "malformed SPF" in row.reason
    assert row.expected == f"v=spf1 include:{SPF_HOST} ~all"


async def test_spf_over_ten_lookups_is_wrong() -> None:
    dns = FakeDns()
    others = [f"inc{index}.example.net" for index in range(11)]
    for host in others:
        dns.txt_answers[host] = ["v=spf1 -all"]
    dns.txt_answers[DOMAIN] = [
        VERIFICATION,
        " ".join(
            ["v=spf1", *(f"include:{host}" for host in others), f"include:{SPF_HOST}", "-all"]
        ),
    ]
    report = await audit(dns)
    row = spf_row(report)
    assert row.verdict == "wrong"
    assert "over the limit of 10" in row.reason
    assert report.ok is False


async def test_spf_include_loop_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers["loop.example.net"] = ["v=spf1 include:loop.example.net -all"]
    dns.txt_answers[DOMAIN] = [
        VERIFICATION,
        f"v=spf1 include:{SPF_HOST} include:loop.example.net -all",
    ]
    row = spf_row(await audit(dns))
    assert row.verdict == "wrong"
    assert "include loop" in row.reason


async def test_spf_include_target_missing_is_permerror() -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = [
        VERIFICATION,
        f"v=spf1 include:{SPF_HOST} include:gone.example.net -all",
    ]
    report = await audit(dns)
    row = spf_row(report)
    assert row.verdict == "wrong"
    assert "permerror" in row.reason and "gone.example.net" in row.reason
    assert report.ok is False


@pytest.mark.parametrize("all_term", ["+all", "all"])
async def test_spf_allowing_everyone_is_a_warning(all_term: str) -> None:
    dns = FakeDns()
    dns.txt_answers[DOMAIN] = [VERIFICATION, f"v=spf1 include:{SPF_HOST} {all_term}"]
    report = await audit(dns)
    assert spf_row(report).verdict == "warning"
    assert "+all" in spf_row(report).reason
    assert report.ok is False


async def test_spf_include_temporary_failure_is_a_warning() -> None:
    dns = FakeDns()
    dns.txt_answers[SPF_HOST] = DnsTemporaryError(SPF_HOST, "TXT", "SERVFAIL")
    report = await audit(dns)
    assert spf_row(report).verdict == "warning"
    assert "SERVFAIL" in spf_row(report).reason
    assert report.ok is False


async def test_dkim_key_mismatch_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DKIM_HOST] = [OTHER_KEY_TXT]
    report = await audit(dns)
    row = row_of(report, DKIM_HOST)
    assert row.verdict == "wrong"
    assert "a different key" in row.reason
    assert row.found == OTHER_KEY_TXT
    assert report.ok is False


async def test_dkim_malformed_record_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[DKIM_HOST] = ["v=DKIM1; k=ed25519; p=not base64!"]
    row = row_of(await audit(dns), DKIM_HOST)
    assert row.verdict == "wrong"
    assert "malformed" in row.reason


async def test_dkim_one_matching_record_among_others_is_ok() -> None:
    dns = FakeDns()
    dns.txt_answers[DKIM_HOST] = [OTHER_KEY_TXT, KEY_TXT]
    assert row_of(await audit(dns), DKIM_HOST).verdict == "ok"


async def test_two_dmarc_records_are_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[f"_dmarc.{DOMAIN}"] = [GOOD_DMARC, "v=DMARC1; p=reject"]
    report = await audit(dns)
    assert dmarc_row(report).verdict == "wrong"
    assert dmarc_row(report).expected == GOOD_DMARC
    assert report.ok is False


async def test_malformed_dmarc_is_wrong() -> None:
    dns = FakeDns()
    dns.txt_answers[f"_dmarc.{DOMAIN}"] = ["v=DMARC1; p=bogus"]
    report = await audit(dns)
    assert dmarc_row(report).verdict == "wrong"
    assert "malformed DMARC" in dmarc_row(report).reason
    assert report.ok is False


async def test_published_strict_dmarc_is_ok_and_kept_in_expected() -> None:
    dns = FakeDns()
    dns.txt_answers[f"_dmarc.{DOMAIN}"] = ["v=DMARC1; p=reject; rua=mailto:owner@example.test"]
    row = dmarc_row(await audit(dns))
    assert row.verdict == "ok"
    assert row.expected == f"v=DMARC1; p=reject; rua=mailto:owner@example.test,mailto:{REPORT}"


async def test_mx_elsewhere_is_wrong() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(10, "mx.other.test")]
    dns.address_answers["mx.other.test"] = ["198.51.100.7"]
    report = await audit(dns)
    assert mx_row(report).verdict == "wrong"
    assert mx_row(report).found == "10 mx.other.test"
    assert report.ok is False


async def test_mx_elsewhere_with_our_address_is_ok() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(10, "mx.other.test")]
    dns.address_answers["mx.other.test"] = ["198.51.100.7", MAIL_ADDRESS]
    report = await audit(dns)
    assert mx_row(report).verdict == "ok"
    assert "mx.other.test" in mx_row(report).reason
    assert report.ok is True


async def test_mx_dead_name_does_not_hide_a_later_one_with_our_address() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(10, "dead.other.test"), (20, "alias.other.test")]
    dns.address_answers["alias.other.test"] = [MAIL_ADDRESS]
    assert mx_row(await audit(dns)).verdict == "ok"


async def test_mx_elsewhere_with_temporary_failure_is_a_warning() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(10, "mx.other.test")]
    dns.address_answers["mx.other.test"] = DnsTemporaryError("mx.other.test", "A", "timeout")
    row = mx_row(await audit(dns))
    assert row.verdict == "warning"
    assert "timeout" in row.reason


async def test_our_host_not_preferred_is_a_warning() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(5, "backup.other.test"), (10, MAIL_HOST)]
    report = await audit(dns)
    assert mx_row(report).verdict == "warning"
    assert "not the preferred MX" in mx_row(report).reason
    assert report.ok is False


async def test_our_host_tied_at_best_preference_is_ok() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = [(10, "a.other.test"), (10, MAIL_HOST)]
    assert mx_row(await audit(dns)).verdict == "ok"


async def test_temporary_failure_of_a_required_record_is_a_warning() -> None:
    dns = FakeDns()
    dns.txt_answers[f"_dmarc.{DOMAIN}"] = DnsTemporaryError(f"_dmarc.{DOMAIN}", "TXT", "SERVFAIL")
    report = await audit(dns)
    assert dmarc_row(report).verdict == "warning"
    assert "SERVFAIL" in dmarc_row(report).reason
    assert report.ok is False


async def test_temporary_failure_of_the_mx_lookup_is_a_warning() -> None:
    dns = FakeDns()
    dns.mx_answers[DOMAIN] = DnsTemporaryError(DOMAIN, "MX", "timeout")
    assert mx_row(await audit(dns)).verdict == "warning"


async def test_temporary_failure_of_a_recommended_record_keeps_the_report_ok() -> None:
    dns = FakeDns()
    name = f"_mta-sts.{DOMAIN}"
    dns.txt_answers[name] = DnsTemporaryError(name, "TXT", "REFUSED")
    report = await audit(dns)
    assert row_of(report, name).verdict == "warning"
    assert report.ok is True


async def test_missing_recommended_records_keep_the_report_ok() -> None:
    dns = FakeDns()
    del dns.txt_answers[f"_mta-sts.{DOMAIN}"]
    del dns.txt_answers[f"_smtp._tls.{DOMAIN}"]
    del dns.address_answers[f"mta-sts.{DOMAIN}"]
    report = await audit(dns)
    assert row_of(report, f"_mta-sts.{DOMAIN}").verdict == "missing"
    assert row_of(report, f"_smtp._tls.{DOMAIN}").verdict == "missing"
    assert row_of(report, f"mta-sts.{DOMAIN}", "CNAME").verdict == "missing"
    assert not any(r.required for r in report.rows if r.verdict != "ok")
    assert report.ok is True


async def test_mta_sts_without_version_tag_is_missing() -> None:
    dns = FakeDns()
    dns.txt_answers[f"_mta-sts.{DOMAIN}"] = ["some other text"]
    assert row_of(await audit(dns), f"_mta-sts.{DOMAIN}").verdict == "missing"
