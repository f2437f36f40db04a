"""Vendor-format knowledge of the inbound bounce parser, on hand-written minimal bounces.

Each message below is written for this test in the layout its vendor uses (where the
remote reply sits, which heading or code the vendor prints); none is a copy of a real
bounce.
"""

from __future__ import annotations

import pytest

from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.parse import parse_bounce
from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.vendors import remote_reply, reporter_says_no_such_address


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(())


def _dsn(human: str, status: str, diagnostic: str, sender: str = "mailer-daemon@mx.test") -> bytes:
    return (
        f"From: Mail Delivery System <{sender}>\n"
        "To: sender@origin.test\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\n"
        f"{human}\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.test\n\n"
        "Final-Recipient: rfc822; someone@dest.test\n"
        "Action: failed\n"
        f"Status: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        "--b--\n"
    ).encode()


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        (
            "Google tried to deliver your message, but it was rejected by the recipient "
            "domain. The error that the other server returned was: 554 no thanks (state 18).",
            "554 no thanks",
        ),
        ("<a@dest.test>:\nRemote host said: 552 mailbox over quota\nGiving up.", "552 mailbox"),
        (
            "<a@dest.test>: host mx.dest.test[192.0.2.9] said: 550 nope (in reply to RCPT TO "
            "command)",
            "550 nope",
        ),
        ("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'", "550 5.1.10"),
        ("Your message could not be delivered.", ""),
    ],
)
def test_remote_reply_is_found_in_each_layout(text: str, reply: str) -> None:
    assert remote_reply(text).startswith(reply)


def test_gmail_wrapper_words_do_not_decide_the_reason() -> None:
    human = (
        "Delivery to the following recipient failed permanently:\n\n     someone@dest.test\n\n"
        "Technical details of permanent failure:\nGoogle tried to deliver your message, but "
        "it was rejected by the recipient domain. The error that the other server returned "
        "was: 530 Must issue a STARTTLS command first (state 4)."
    )
    message = (
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.test>\n"
        "To: sender@origin.test\nSubject: Delivery Status Notification (Failure)\n\n"
        f"{human}\n"
    ).encode()
    [recipient] = parse_bounce(message).recipients
    assert recipient.reason == Reason.FAILEDSTARTTLS


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            "550 SC-001 (BAY0-MC1-F2) Unfortunately, messages from 192.0.2.1 weren't sent.",
            "blocked",
        ),
        ("421 DYN:T1 http://postmaster.aol.test/error-codes#421dynt1", "blocked"),
        ("554 RTR:RD Reverse DNS is not set up for this IP", "requireptr"),
        (
            "550 5.1.1 <a@b.test> 192.0.2.1 has sent to too many recipients this hour. IB607",
            "speeding",
        ),
        ("554 5.7.1 Message rejected. Refer to error codes. AUP#CXBL", "blocked"),
        (
            "550 5.7.512 Access denied, message must be RFC 5322 section 3.6.2 compliant",
            "notcompliantrfc",
        ),
        ("553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1", "blocked"),
        (
            "550-5.7.1 Messages with multiple addresses in From: header are not accepted",
            "notcompliantrfc",
        ),
        ("550 Unauthenticated senders not allowed", "securityerror"),
        (
            "550 5.7.1 <a@b.test>: Recipient address rejected: User a@b.test temporary locked",
            "suspend",
        ),
    ],
)
def test_documented_vendor_codes(classifier: Classifier, reply: str, reason: str) -> None:
    code = reply[:3]
    status = reply[4:9] if reply[4:5].isdigit() and reply[5:6] == "." else ""
    assert classifier.classify(code, status, reply) == Reason(reason)


def test_exchange_2003_diagnostic_number_means_unknown_recipient() -> None:
    human = (
        "Your message\n\n  To: someone@dest.test\n  Subject: hello\n\n"
        "did not reach the following recipient(s):\n\n"
        "someone@dest.test on Mon, 1 Jan 2007 10:00:00 +0000\n"
        "    The recipient name is not recognized\n"
        "    The MTS-ID of the original message is: c=us;a= ;p=origin;l=HOST0701010000AAAA\n"
        "    MSEXCH:IMS:ORIGIN:SITE:HOST 0 (000C05A6) Unknown Recipient\n"
    )
    message = (
        "From: System Administrator <postmaster@dest.test>\nTo: sender@origin.test\n"
        f"Subject: Undeliverable: hello\n\n{human}"
    ).encode()
    [recipient] = parse_bounce(message).recipients
    assert (recipient.reason, recipient.hard) == (Reason.USERUNKNOWN, True)


def test_unknown_user_without_stage_or_address_status_is_the_recipients_filter() -> None:
    report = parse_bounce(_dsn("Delivery failed.", "5.0.0", "550 Unknown user someone@dest.test"))
    [recipient] = report.recipients
    assert (recipient.reason, recipient.hard) == (Reason.FILTERED, False)


def test_reporter_that_looked_the_address_up_keeps_unknown_user() -> None:
    human = (
        "** Address not found **\n\nYour message wasn't delivered to someone@dest.test because "
        "the address couldn't be found, or is unable to receive mail.\n\nThe response was:\n\n"
        "550 <someone@dest.test>: User unknown"
    )
    assert reporter_says_no_such_address(human)
    report = parse_bounce(_dsn(human, "5.0.0", "550 <someone@dest.test>: User unknown"))
    assert report.recipients[0].reason == Reason.USERUNKNOWN


def test_generic_status_field_yields_to_the_remote_enhanced_code() -> None:
    report = parse_bounce(_dsn("Failed.", "5.0.0", "550 5.1.1 <someone@dest.test>: no mailbox"))
    assert report.recipients[0].status == "5.1.1"


def test_reason_stated_before_the_recipient_list_belongs_to_the_one_recipient() -> None:
    message = (
        b"From: MailMarshal <postmaster@gateway.test>\nTo: sender@origin.test\n"
        b"Subject: Undeliverable Mail\n\n"
        b"Your message:\n   From:    sender@origin.test\n   Subject: hello\n\n"
        b"Could not be delivered because of\n\n550 5.1.1 User unknown\n\n"
        b"The following recipients were affected:\n    someone@dest.test\n"
    )
    [recipient] = parse_bounce(message).recipients
    assert (recipient.status, recipient.reason) == ("5.1.1", Reason.USERUNKNOWN)
