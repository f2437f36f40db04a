"""Recipient extraction and wrapped replies: one hand-written minimal bounce per mechanism.

Covered: an old Sendmail transcript listing several "NNN <addr>... reason"
lines (every recipient, each with its own reason); a DSN whose Final-Recipient
carries no usable address while its prose names the recipient; an mbox of
several bounces; an address quoted in single quotes; Amazon SES's older
wrapper that quotes the remote reply after its own guess; X.7.1 "Access
denied" / "delivery not authorized", which is a security refusal except at
MAIL FROM, where it refuses the sender.
"""

from __future__ import annotations

from postroom.mta.bounce.parse import parse_bounce
from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.vendors.replies import remote_reply, reply_codes


def _verdicts(text: str) -> list[tuple[str, Reason]]:
    return [(r.address, r.reason) for r in parse_bounce(text.encode()).recipients]


def test_every_recipient_of_a_sendmail_transcript_is_read() -> None:
    bounce = (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.test>\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail: User unknown\n\n"
        "   ----- Transcript of session follows -----\n"
        "550 <first@dest.test>... Host unknown (Authoritative answer from name server)\n"
        "550 5.1.1 <second@other.test>... User unknown\n\n"
        "   ----- Unsent message follows -----\n"
        "From: sender@origin.test\n"
        "To: first@dest.test, second@other.test\n"
        "Subject: hello\n\nhello\n"
    )
    assert _verdicts(bounce) == [
        ("first@dest.test", Reason.HOSTUNKNOWN),
        ("second@other.test", Reason.USERUNKNOWN),
    ]


def test_a_reply_line_naming_no_address_adds_no_recipient() -> None:
    bounce = (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.test>\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail: Host unknown\n\n"
        "   ----- Transcript of session follows -----\n"
        "550 dest.test (smtp)... Host unknown\n"
        "550 <only@dest.test>... Host unknown\n"
    )
    assert [address for address, _ in _verdicts(bounce)] == ["only@dest.test"]


def test_an_address_less_final_recipient_takes_the_one_the_prose_names() -> None:
    bounce = (
        "From: MAILER-DAEMON@relay.test\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        "<lost@dest.test>\n    (reason: 550 Host unknown)\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.test\n\n"
        "Final-Recipient: RFC822; @mx.dest.test\n"
        "Action: failed\nStatus: 5.1.2\n\n"
        "--b--\n"
    )
    assert _verdicts(bounce) == [("lost@dest.test", Reason.HOSTUNKNOWN)]


def test_address_less_groups_stay_empty_when_the_prose_does_not_pair_up() -> None:
    bounce = (
        "From: MAILER-DAEMON@relay.test\n"
        "To: sender@origin.test\n"
        "Subject: Returned mail\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\n"
        "<one@dest.test>: failed\n<two@dest.test>: failed\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.test\n\n"
        "Final-Recipient: RFC822; @mx.dest.test\n"
        "Action: failed\nStatus: 5.1.2\n\n"
        "--b--\n"
    )
    assert [address for address, _ in _verdicts(bounce)] == [""]


def _postfix_notice(recipient: str, separator: str) -> str:
    return (
        f"{separator}"
        "From: MAILER-DAEMON@relay.test (Mail Delivery System)\n"
        "To: sender@origin.test\n"
        "Subject: Undelivered Mail Returned to Sender\n\n"
        "This is the mail system at host relay.test.\n\n"
        f"<{recipient}>: host mx.dest.test[192.0.2.1] said: 550 5.1.1 User unknown\n"
        "    (in reply to RCPT TO command)\n"
    )


def test_an_mbox_of_several_bounces_gives_the_recipients_of_each() -> None:
    mailbox = _postfix_notice(
        "one@dest.test", "From MAILER-DAEMON  Thu Jul  2 12:05:05 2020\n"
    ) + _postfix_notice("two@dest.test", "From MAILER-DAEMON  Thu Jul  2 12:06:01 2020\n")
    report = parse_bounce(mailbox.encode())
    assert report.is_bounce
    assert [(r.address, r.reason) for r in report.recipients] == [
        ("one@dest.test", Reason.USERUNKNOWN),
        ("two@dest.test", Reason.USERUNKNOWN),
    ]


def test_a_body_line_starting_with_from_does_not_split_a_message() -> None:
    single = _postfix_notice("one@dest.test", "From MAILER-DAEMON  Thu Jul  2 12:05:05 2020\n")
    single += "From the desk of the postmaster: nothing else.\n"
    assert [address for address, _ in _verdicts(single)] == ["one@dest.test"]


def test_the_ses_wrapper_yields_the_remote_reply_and_its_codes() -> None:
    diagnostic = (
        "5.1.0 - Unknown address error 550-'5.7.1 <bounce-id@bounces.sender.test>... "
        "Access denied' (delivery attempts: 0)"
    )
    assert remote_reply(diagnostic) == "550 5.7.1 <bounce-id@bounces.sender.test>... Access denied"
    assert reply_codes(diagnostic) == ("550", "5.7.1")
    # A diagnostic without a wrapped reply keeps its own codes.
    assert reply_codes("550 5.1.1 user unknown") == ("550", "5.1.1")


def _dsn(diagnostic: str, human: str = "Delivery failed.") -> str:
    return (
        "From: MAILER-DAEMON@relay.test\n"
        "To: sender@origin.test\n"
        "Subject: Delivery Status Notification (Failure)\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        f"--b\nContent-Type: text/plain\n\n{human}\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.test\n\n"
        "Final-Recipient: rfc822;someone@dest.test\n"
        "Action: failed\nStatus: 5.0.0 (permanent failure)\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        "--b--\n"
    )


def test_an_ses_wrapped_access_denied_is_a_security_refusal_not_an_unknown_user() -> None:
    report = parse_bounce(
        _dsn(
            "5.1.0 - Unknown address error 550-'5.7.1 <bounce-id@bounces.sender.test>... "
            "Access denied' (delivery attempts: 0)"
        ).encode()
    )
    (recipient,) = report.recipients
    assert (recipient.status, recipient.reply_code) == ("5.7.1", "550")
    assert recipient.reason is Reason.SECURITYERROR
    assert not recipient.hard


def test_delivery_not_authorized_is_a_security_refusal() -> None:
    diagnostic = (
        "551 5.7.1 <someone@dest.test>: Recipient address rejected: Delivery not authorized"
    )
    assert _verdicts(_dsn(diagnostic)) == [("someone@dest.test", Reason.SECURITYERROR)]


def test_relay_access_denied_stays_a_relaying_refusal() -> None:
    diagnostic = "554 5.7.1 <someone@dest.test>: Relay access denied"
    assert _verdicts(_dsn(diagnostic)) == [("someone@dest.test", Reason.NORELAYING)]


def test_access_denied_at_mail_from_refuses_the_sender() -> None:
    bounce = (
        "From: MAILER-DAEMON@relay.test\n"
        "To: sender@origin.test\n"
        "Subject: failure notice\n\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<someone@dest.test>:\n"
        "Connected to 192.0.2.7 but sender was rejected.\n"
        "Remote host said: 550 5.7.1 <sender@origin.test>... Access denied\n"
    )
    assert _verdicts(bounce) == [("someone@dest.test", Reason.REJECTED)]


def test_an_address_in_single_quotes_is_read_without_them() -> None:
    bounce = (
        "From: Mail Delivery System <postmaster@relay.test>\n"
        "To: sender@origin.test\n"
        "Subject: Mail delivery failure\n\n"
        "The following message, addressed to 'someone@dest.test',\n"
        "could not be delivered: no such mailbox.\n"
    )
    assert [address for address, _ in _verdicts(bounce)] == ["someone@dest.test"]
