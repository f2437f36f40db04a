"""Structural rules of the bounce parser: re-wrapped reports, delay notices, stages, codes.

Each test is a hand-written minimal bounce for one mechanism: a gateway that
attaches the real DSN whole, a delay notice with nothing but a code, X3-style
"SMTP:RCPT" stage tags, a refusal at the greeting, exact status codes that no
wording overrides, and the DSN field syntax "rfc822;" that is not a citation of
RFC 822.
"""

from __future__ import annotations

import pytest

from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.parse import parse_bounce, shipped_classifier
from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.stage import failed_stage, refine


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return shipped_classifier()


def _dsn(
    status: str, diagnostic: str, action: str = "failed", human: str = "Delivery failed."
) -> str:
    return (
        "From: Mail Delivery System <mailer-daemon@relay.test>\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="inner"\n\n'
        f"--inner\nContent-Type: text/plain\n\n{human}\n\n"
        "--inner\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.test\n\n"
        "Original-Recipient: rfc822;someone@dest.test\n"
        "Final-Recipient: rfc822; someone@dest.test\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        "--inner--\n"
    )


def test_a_gateway_that_attaches_the_real_report_is_read_through() -> None:
    inner = _dsn("5.1.1", "550 5.1.1 User unknown")
    outer = (
        "From: Mail Delivery Subsystem <mailer-daemon@gateway.test>\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail: User unknown\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="outer"\n\n'
        "--outer\nContent-Type: text/plain\n\n"
        "----- The following addresses had permanent delivery errors -----\n\n"
        "--outer\nContent-Type: message/rfc822\n\n"
        f"{inner}\n"
        "--outer--\n"
    ).encode()
    report = parse_bounce(outer)
    assert [(r.address, r.reason, r.hard) for r in report.recipients] == [
        ("someone@dest.test", Reason.USERUNKNOWN, True)
    ]
    assert report.kind == "dsn"


def test_a_delay_notice_with_only_a_code_is_an_expiring_message() -> None:
    message = _dsn("4.4.0", "", action="delayed", human="The server will keep trying.")
    [recipient] = parse_bounce(message.encode()).recipients
    assert (recipient.action, recipient.reason, recipient.hard) == (
        "delayed",
        Reason.EXPIRED,
        False,
    )


def test_a_delay_with_a_dns_failure_says_which_network_trouble() -> None:
    message = _dsn(
        "4.4.7",
        "Deferred: Name server: dest.test.: host name lookup failure",
        action="delayed",
    )
    [recipient] = parse_bounce(message.encode()).recipients
    assert recipient.reason == Reason.NETWORKERROR


def test_dsn_field_syntax_is_not_a_citation_of_rfc_822(classifier: Classifier) -> None:
    fields = "Original-Recipient: rfc822;someone@dest.test Content-Type: text/rfc822-headers"
    rule = classifier.first_match(None, None, fields, text_only=True)
    assert rule is None or rule.reason is not Reason.NOTCOMPLIANTRFC
    assert (
        classifier.classify("550", "5.7.1", "550 5.7.1 Message not RFC 5322 compliant")
        is Reason.NOTCOMPLIANTRFC
    )
    assert (
        classifier.classify("550", "5.7.1", "550-5.7.1 Messages with multiple addresses in From:")
        is Reason.NOTCOMPLIANTRFC
    )


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("551 5.1.6 not our user", Reason.HASMOVED),
        ("554 The domain is not reachable. Please check the domain", Reason.HOSTUNKNOWN),
        ("550 domain [origin.test] mismatches client ip 192.0.2.1.", Reason.REQUIREPTR),
        ("450 service permits 2 unverifyable sending IPs", Reason.REQUIREPTR),
        ("550 5.7.1 can't determine Purported Responsible Address", Reason.REJECTED),
        ("550 5.1.0 <a@origin.test> sender rejected. AUP#CDRBL", Reason.BLOCKED),
    ],
)
def test_exact_codes_and_phrases(classifier: Classifier, reply: str, reason: Reason) -> None:
    code = reply[:3]
    status = reply[4:9] if reply[4:5].isdigit() and reply[5:6] == "." else ""
    assert classifier.classify(code, status, reply) is reason


def test_x3_style_stage_tags_name_the_command() -> None:
    assert failed_stage("SMTP:RCPT host 192.0.2.8: 553 5.3.0 <a@b.test>... No such user") == (
        "rcpt to"
    )
    assert failed_stage("SMTP:MAIL host 192.0.2.8: 553 sender refused") == "mail from"
    # At RCPT the address is judged: an unknown user stays one whatever the status.
    text = "SMTP:RCPT host 192.0.2.8: 553 5.3.0 <a@b.test>... No such user here"
    assert refine(Reason.USERUNKNOWN, "5.3.0", "failed", text) is Reason.USERUNKNOWN


def test_a_server_that_refuses_the_greeting_blocks_our_host() -> None:
    text = (
        "connect to mx.dest.test[192.0.2.2]: server refused to talk to me: "
        "421 Service not available, closing transmission channel"
    )
    assert refine(Reason.SYSTEMERROR, "4.0.0", "failed", text) is Reason.BLOCKED
    # Without a stage, "service not available" stays the remote system's own trouble.
    assert refine(Reason.SYSTEMERROR, "4.0.0", "failed", "421 Service not available") is (
        Reason.SYSTEMERROR
    )
