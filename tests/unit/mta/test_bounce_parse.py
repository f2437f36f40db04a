"""Inbound bounce parser on hand-written messages: DSN, ARF, qmail, vacation, SES, garbage."""

from __future__ import annotations

import pytest

from postroom.mta.bounce.parse import parse_bounce
from postroom.mta.bounce.reasons import Reason

DSN = b"""\
From: MAILER-DAEMON@mx.example.org
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; bob@example.test
Original-Recipient: rfc822;Bob@Example.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.test>: Recipient address rejected:
 User unknown in local recipient table

Final-Recipient: rfc822; carol@example.test
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

Final-Recipient: rfc822; dave@example.test
Action: delivered
Status: 2.0.0

--B
Content-Type: text/rfc822-headers

From: alice@example.org
To: bob@example.test, carol@example.test, dave@example.test
Subject: hello

--B--
"""

ARF = b"""\
From: feedback@fbl.example.net
To: abuse@example.org
Subject: FW: hello
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <complainer@example.net>

--F
Content-Type: message/rfc822

From: alice@example.org
To: someone-else@example.net
Subject: hello

hi
--F--
"""

QMAIL = b"""\
From: MAILER-DAEMON@mail.example.org
To: alice@example.org
Subject: failure notice

Hi. This is the qmail-send program at mail.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bob@example.test>:
192.0.2.7 does not like recipient.
Remote host said: 552 5.2.2 <bob@example.test>: mailbox is full
Giving up on 192.0.2.7.

<carol@example.test>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <alice@example.org>
From: alice@example.org
To: bob@example.test, carol@example.test
Subject: hello

hi
"""

VACATION = b"""\
From: Bob <bob@example.test>
To: alice@example.org
Subject: Out of office: hello
Auto-Submitted: auto-replied

I am away until Monday.
"""

SES_DELIVERY = b"""\
From: no-reply@sns.amazonaws.com
To: alice@example.org
Subject: AWS Notification Message
Content-Type: text/plain; charset=UTF-8

{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[\
{"emailAddress":"bob@example.test","action":"failed","status":"5.1.1",\
"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]}}
"""


def test_rfc3464_dsn_groups() -> None:
    report = parse_bounce(DSN)
    assert report.kind == "dsn" and report.is_bounce and report.feedback_type is None
    bob, carol, dave = report.recipients
    assert (bob.address, bob.action, bob.status, bob.reply_code) == (
        "bob@example.test",
        "failed",
        "5.1.1",
        "550",
    )
    assert bob.reason is Reason.USERUNKNOWN and bob.hard
    assert "User unknown" in bob.diagnostic
    assert (carol.action, carol.status, carol.reason, carol.hard) == (
        "delayed",
        "4.2.2",
        Reason.MAILBOXFULL,
        False,
    )
    assert (dave.action, dave.reason, dave.hard) == ("delivered", Reason.DELIVERED, False)


def test_crlf_gives_the_same_report() -> None:
    assert parse_bounce(DSN.replace(b"\n", b"\r\n")) == parse_bounce(DSN)


def test_arf_complaint() -> None:
    report = parse_bounce(ARF)
    assert report.kind == "arf" and report.is_bounce  # a report about mail we sent
    assert report.feedback_type == "abuse"
    assert [(r.address, r.reason, r.hard) for r in report.recipients] == [
        ("complainer@example.net", Reason.FEEDBACK, False)
    ]


def test_arf_without_recipient_fields_names_the_original_recipient() -> None:
    report = parse_bounce(ARF.replace(b"Original-Rcpt-To: <complainer@example.net>\n", b""))
    assert [r.address for r in report.recipients] == ["someone-else@example.net"]


def test_qmail_prose_bounce() -> None:
    report = parse_bounce(QMAIL)
    assert report.kind == "text" and report.is_bounce
    got = {r.address: (r.reason, r.status, r.reply_code, r.hard) for r in report.recipients}
    assert got == {
        "bob@example.test": (Reason.MAILBOXFULL, "5.2.2", "552", False),
        "carol@example.test": (Reason.USERUNKNOWN, "5.1.1", "", True),
    }


def test_vacation_is_not_a_bounce() -> None:
    report = parse_bounce(VACATION)
    assert report.kind == "autoreply" and not report.is_bounce
    assert [(r.address, r.reason) for r in report.recipients] == [
        ("bob@example.test", Reason.VACATION)
    ]


def test_a_dsn_with_auto_submitted_is_not_a_vacation() -> None:
    report = parse_bounce(DSN.replace(b"Subject:", b"Auto-Submitted: auto-replied\nSubject:"))
    assert report.kind == "dsn"


def test_ses_json_notification() -> None:
    report = parse_bounce(SES_DELIVERY)
    assert report.kind == "ses"
    assert [(r.address, r.reason, r.status) for r in report.recipients] == [
        ("bob@example.test", Reason.USERUNKNOWN, "5.1.1")
    ]


def test_ordinary_mail_is_not_a_bounce() -> None:
    message = (
        b"From: carol@example.test\nTo: alice@example.org\nSubject: lunch?\n\nsee bob@x.test\n"
    )
    report = parse_bounce(message)
    assert not report.is_bounce and report.recipients == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80" * 50,
        b'Content-Type: multipart/report; boundary="X"\n\n--X\nContent-Type: message/delivery-s',
        DSN[: len(DSN) // 2],
        ARF[: len(ARF) // 3],
        b'Content-Type: multipart/mixed; boundary=""\n\n' + b"--\n" * 500,
        b"Subject: =?utf-8?B?####?=\nContent-Type: text/plain; charset=no-such-charset\n\n\xff",
        b"From: MAILER-DAEMON@x\nSubject: failure\n\n" + b"<a@b.example>: " * 20000,
    ],
)
def test_garbage_and_truncated_input_never_raise(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    report = parse_bounce(data)
    assert isinstance(report.recipients, tuple)
    # The catch-all in parse_bounce is a last resort: these inputs must not need it.
    assert "bounce parse failed" not in caplog.text


def test_truncated_dsn_still_reads_what_arrived() -> None:
    cut = DSN[: DSN.index(b"Final-Recipient: rfc822; carol")]
    report = parse_bounce(cut)
    assert [r.address for r in report.recipients] == ["bob@example.test"]
