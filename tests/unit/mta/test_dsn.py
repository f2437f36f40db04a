"""DSN generation: parse what build_dsn writes with the email package, field by field."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage, Message

import pytest

from postroom.mta.bounce import dsn as dsn_module
from postroom.mta.bounce.dsn import DsnRequest, RecipientStatus, build_dsn

NOW = datetime(2024, 3, 5, 10, 30, 0, tzinfo=UTC)
ARRIVAL = datetime(2024, 3, 5, 9, 0, 0, tzinfo=UTC)
ORIGINAL = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <orig-1@example.org>\r\n"
    b"\r\n"
    b"The body, which headers-only DSNs must not return.\r\n"
)

FAILED = RecipientStatus(
    final_recipient="bob@example.test",
    action="failed",
    status="5.1.1",
    diagnostic="smtp; 550 5.1.1 <bob@example.test>: user unknown",
    remote_mta="mx.example.test",
    last_attempt=datetime(2024, 3, 5, 10, 29, 0, tzinfo=UTC),
)
DELAYED = RecipientStatus(
    final_recipient="carol@example.test",
    action="delayed",
    status="4.4.1",
    diagnostic="X-Postroom; connect to 127.0.0.5:25: Connection refused",
    last_attempt=datetime(2024, 3, 5, 10, 0, 0, tzinfo=UTC),
    will_retry_until=datetime(2024, 3, 10, 9, 0, 0, tzinfo=UTC),
)


def request(*recipients: RecipientStatus, **changes: object) -> DsnRequest:
    base = DsnRequest(
        reporting_mta="mta.postroom.test",
        queue_id="4Q7xK2",
        original_sender="alice@example.org",
        arrival_date=ARRIVAL,
        recipients=recipients or (FAILED,),
        original_message=ORIGINAL,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_parts())  # type: ignore[arg-type]


def status_groups(message: EmailMessage) -> list[Message]:
    delivery_status = parts(message)[1]
    assert delivery_status.get_content_type() == "message/delivery-status"
    groups = delivery_status.get_payload()
    assert isinstance(groups, list)
    return groups


def fields(group: Message) -> dict[str, str]:
    return {name: str(value) for name, value in group.items()}


def test_top_level_headers() -> None:
    message = parse(build_dsn(request(), now=NOW, message_id_domain="ids.postroom.test"))
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mta.postroom.test>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Date"].datetime == NOW
    assert re.fullmatch(r"<\d{14}\.4Q7xK2\.[0-9a-f]+@ids\.postroom\.test>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message.defects == []


def test_message_id_defaults_to_the_reporting_host_and_is_unique() -> None:
    first = parse(build_dsn(request(), now=NOW))["Message-ID"]
    second = parse(build_dsn(request(), now=NOW))["Message-ID"]
    assert first.endswith("@mta.postroom.test>")
    assert first != second


def test_a_configured_postmaster_is_the_sender() -> None:
    message = parse(build_dsn(request(postmaster="postmaster@postroom.test"), now=NOW))
    assert message["From"] == "Mail Delivery System <postmaster@postroom.test>"


def test_three_parts_in_rfc_3464_order() -> None:
    types = [part.get_content_type() for part in parts(parse(build_dsn(request(), now=NOW)))]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_per_message_fields() -> None:
    groups = status_groups(parse(build_dsn(request(envelope_id="env-77"), now=NOW)))
    assert fields(groups[0]) == {
        "Original-Envelope-Id": "env-77",
        "Reporting-MTA": "dns; mta.postroom.test",
        "Arrival-Date": "Tue, 05 Mar 2024 09:00:00 +0000",
        "X-Postroom-Queue-ID": "4Q7xK2",
    }


def test_original_envelope_id_only_when_known() -> None:
    groups = status_groups(parse(build_dsn(request(), now=NOW)))
    assert "Original-Envelope-Id" not in groups[0]


def test_failed_recipient_fields() -> None:
    recipient = replace(FAILED, original_recipient="rfc822;Bob@Example.Test")
    groups = status_groups(parse(build_dsn(request(recipient), now=NOW)))
    assert len(groups) == 2
    assert fields(groups[1]) == {
        "Original-Recipient": "rfc822; Bob@Example.Test",
        "Final-Recipient": "rfc822; bob@example.test",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx.example.test",
        "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.test>: user unknown",
        "Last-Attempt-Date": "Tue, 05 Mar 2024 10:29:00 +0000",
    }
    # RFC 3464 order within the group.
    assert list(groups[1].keys())[:4] == [
        "Original-Recipient",
        "Final-Recipient",
        "Action",
        "Status",
    ]


def test_original_recipient_given_as_a_bare_address_is_typed() -> None:
    recipient = replace(FAILED, original_recipient="Bob@Example.Test")
    groups = status_groups(parse(build_dsn(request(recipient), now=NOW)))
    assert groups[1]["Original-Recipient"] == "rfc822; Bob@Example.Test"


def test_delayed_recipient_fields_and_subject() -> None:
    message = parse(build_dsn(request(DELAYED), now=NOW))
    assert message["Subject"] == "Delivery Status Notification (Delay)"
    assert fields(status_groups(message)[1]) == {
        "Final-Recipient": "rfc822; carol@example.test",
        "Action": "delayed",
        "Status": "4.4.1",
        "Diagnostic-Code": "X-Postroom; connect to 127.0.0.5:25: Connection refused",
        "Last-Attempt-Date": "Tue, 05 Mar 2024 10:00:00 +0000",
        "Will-Retry-Until": "Sun, 10 Mar 2024 09:00:00 +0000",
    }


def test_a_failure_among_delays_makes_it_a_failure_notice() -> None:
    message = parse(build_dsn(request(DELAYED, FAILED), now=NOW))
    assert message["Subject"] == "Undelivered Mail Returned to Sender"


def test_success_notice() -> None:
    success = RecipientStatus(
        "bob@example.test", "delivered", "2.0.0", "smtp; 250 2.0.0 Ok", "mx.example.test"
    )
    message = parse(build_dsn(request(success), now=NOW))
    assert message["Subject"] == "Successful Mail Delivery Report"
    assert status_groups(message)[1]["Action"] == "delivered"


def test_multiple_recipients_each_get_their_group_in_order() -> None:
    third = replace(FAILED, final_recipient="dave@example.test", status="5.2.2",
                    diagnostic="smtp; 552 5.2.2 mailbox full")  # fmt: skip
    groups = status_groups(parse(build_dsn(request(FAILED, DELAYED, third), now=NOW)))
    assert [g["Final-Recipient"] for g in groups[1:]] == [
        "rfc822; bob@example.test",
        "rfc822; carol@example.test",
        "rfc822; dave@example.test",
    ]
    assert [g["Status"] for g in groups[1:]] == ["5.1.1", "4.4.1", "5.2.2"]
    assert [g["Action"] for g in groups[1:]] == ["failed", "delayed", "failed"]


def test_human_part_lists_each_recipient_with_the_remote_reply() -> None:
    message = parse(build_dsn(request(FAILED, DELAYED), now=NOW))
    text = parts(message)[0].get_content()
    assert "mta.postroom.test" in text
    assert "<bob@example.test>: status 5.1.1" in text
    assert "550 5.1.1 <bob@example.test>: user unknown" in text
    assert "mx.example.test" in text
    assert "<carol@example.test>: status 4.4.1" in text
    assert "Connection refused" in text
    assert "4Q7xK2" in text


def test_original_headers_are_returned_without_the_body() -> None:
    original = parts(parse(build_dsn(request(), now=NOW)))[2]
    returned = original.get_payload(decode=True)
    assert returned == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b"The body" not in build_dsn(request(), now=NOW)


def test_full_return_includes_the_body_as_message_rfc822() -> None:
    message = parse(build_dsn(request(return_content="full"), now=NOW))
    original = parts(message)[2]
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_content()
    assert inner["Subject"] == "quarterly figures"
    assert inner.get_content().strip() == "The body, which headers-only DSNs must not return."


def test_full_return_over_the_size_cap_falls_back_to_headers() -> None:
    raw = build_dsn(request(return_content="full"), now=NOW, full_return_limit_bytes=40)
    message = parse(raw)
    assert parts(message)[2].get_content_type() == "text/rfc822-headers"
    assert b"The body" not in raw
    assert "headers are attached" in parts(message)[0].get_content()


def test_full_return_of_an_8bit_original_falls_back_to_headers_and_stays_7bit() -> None:
    eight_bit = ORIGINAL.replace(b"The body", b"Le corps \xc3\xa9")
    raw = build_dsn(request(return_content="full", original_message=eight_bit), now=NOW)
    assert raw.isascii()
    assert parts(parse(raw))[2].get_content_type() == "text/rfc822-headers"


def test_unknown_return_content_is_refused() -> None:
    with pytest.raises(ValueError):
        build_dsn(request(return_content="body"), now=NOW)


def test_8bit_utf8_original_headers_are_quoted_printable_and_round_trip() -> None:
    original = b"Subject: R\xc3\xa9sum\xc3\xa9\r\nFrom: J\xc3\xb6rg <j@example.org>\r\n\r\nbody\r\n"
    raw = build_dsn(request(original_message=original), now=NOW)
    assert raw.isascii()
    part = parts(parse(raw))[2]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == original.split(b"\r\n\r\n")[0] + b"\r\n"


def test_8bit_original_headers_in_an_unknown_charset_keep_their_bytes() -> None:
    original = b"Subject: caf\xe9 cr\xe8me\r\n\r\nbody\r\n"  # Latin-1, not UTF-8
    raw = build_dsn(request(original_message=original), now=NOW)
    assert raw.isascii()
    part = parts(parse(raw))[2]
    assert part.get_content_charset() == "unknown-8bit"
    assert part.get_payload(decode=True) == b"Subject: caf\xe9 cr\xe8me\r\n"


def test_long_diagnostic_is_folded_and_unfolds_to_the_same_text() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    diagnostic = f"smtp; 550 5.7.1 {words}"
    raw = build_dsn(request(replace(FAILED, diagnostic=diagnostic)), now=NOW)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert status_groups(parse(raw))[1]["Diagnostic-Code"] == diagnostic


def test_a_word_too_long_to_fold_is_split_below_998_octets() -> None:
    diagnostic = "smtp; 550 5.7.1 " + "x" * 3000
    raw = build_dsn(request(replace(FAILED, diagnostic=diagnostic)), now=NOW)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = status_groups(parse(raw))[1]["Diagnostic-Code"]
    assert parsed.replace(" ", "") == diagnostic.replace(" ", "")


def test_crlf_only_even_when_the_original_uses_bare_lf() -> None:
    original = ORIGINAL.replace(b"\r\n", b"\n")
    raw = build_dsn(request(FAILED, DELAYED, original_message=original), now=NOW)
    assert re.search(rb"(?<!\r)\n", raw) is None
    assert re.search(rb"\r(?!\n)", raw) is None
    assert parts(parse(raw))[2].get_payload(decode=True) == (
        ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    )


def test_long_original_header_lines_are_kept_within_998_octets() -> None:
    original = b"X-Long: " + b"a" * 2000 + b"\r\nSubject: s\r\n\r\nbody\r\n"
    raw = build_dsn(request(original_message=original), now=NOW)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert parts(parse(raw))[2].get_payload(decode=True) == original.split(b"\r\n\r\n")[0] + (
        b"\r\n"
    )


def test_non_ascii_recipient_uses_the_utf8_address_type_and_stays_7bit() -> None:
    recipient = replace(FAILED, final_recipient="jörg+x@exämple.test")
    raw = build_dsn(request(recipient), now=NOW)
    assert raw.isascii()
    group = status_groups(parse(raw))[1]
    # RFC 6533 utf-8-addr-xtext: non-ASCII and "+" as \x{HEX}.
    assert group["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}x@ex\\x{E4}mple.test"
    assert "jörg+x@exämple.test" in parts(parse(raw))[0].get_content()


def test_non_ascii_diagnostic_is_escaped_in_the_report() -> None:
    recipient = replace(FAILED, diagnostic="smtp; 550 5.1.1 Empfänger unbekannt")
    raw = build_dsn(request(recipient), now=NOW)
    assert raw.isascii()
    assert status_groups(parse(raw))[1]["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 Empf\\x{E4}nger unbekannt"
    )


def test_a_non_ascii_sender_is_addressed_in_utf8() -> None:
    raw = build_dsn(request(original_sender="jörg@exämple.test"), now=NOW)
    assert "To: <jörg@exämple.test>".encode() in raw


def test_a_remote_reply_cannot_inject_fields() -> None:
    recipient = replace(FAILED, diagnostic="smtp; 550 5.1.1 no\r\nStatus: 2.0.0\r\n\r\nAction: x")
    group = status_groups(parse(build_dsn(request(recipient), now=NOW)))[1]
    assert group.get_all("Status") == ["5.1.1"]
    assert group.get_all("Action") == ["failed"]
    assert group["Diagnostic-Code"] == "smtp; 550 5.1.1 no Status: 2.0.0 Action: x"


def test_the_boundary_never_occurs_in_the_content(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(dsn_module.secrets, "token_hex", lambda _n: next(tokens))
    # The first boundary drawn ("aaaa") is one the original message already holds.
    original = b"Subject: s\r\nX-Trap: --=_postroom_aaaa--\r\n\r\nbody\r\n"
    raw = build_dsn(request(original_message=original), now=NOW)
    message = parse(raw)
    assert message.get_boundary() == "=_postroom_bbbb"
    assert [p.get_content_type() for p in parts(message)][2] == "text/rfc822-headers"


def test_naive_datetimes_are_utc() -> None:
    naive = request(arrival_date=datetime(2024, 3, 5, 9, 0, 0))
    assert status_groups(parse(build_dsn(naive, now=NOW)))[0]["Arrival-Date"] == (
        "Tue, 05 Mar 2024 09:00:00 +0000"
    )


def test_dates_keep_their_offset() -> None:
    paris = timezone(timedelta(hours=1))
    message = parse(build_dsn(request(), now=datetime(2024, 3, 5, 11, 30, tzinfo=paris)))
    assert message["Date"] == "Tue, 05 Mar 2024 11:30:00 +0100"


def test_a_dsn_to_the_null_sender_is_refused() -> None:
    with pytest.raises(ValueError, match="null sender"):
        build_dsn(request(original_sender=""), now=NOW)


def test_a_dsn_without_recipients_is_refused() -> None:
    with pytest.raises(ValueError):
        build_dsn(replace(request(), recipients=()), now=NOW)


@pytest.mark.parametrize(
    ("action", "status"),
    [("delayed", "5.1.1"), ("delivered", "5.0.0"), ("failed", "2.0.0"), ("bounced", "5.0.0")],
)
def test_an_action_with_a_status_it_cannot_carry_is_refused(action: str, status: str) -> None:
    with pytest.raises(ValueError):
        build_dsn(request(replace(FAILED, action=action, status=status)), now=NOW)


def test_a_failure_after_retries_may_keep_its_transient_status() -> None:
    expired = replace(FAILED, status="4.4.7", diagnostic="X-Postroom; delivery time expired")
    group = status_groups(parse(build_dsn(request(expired), now=NOW)))[1]
    assert (group["Action"], group["Status"]) == ("failed", "4.4.7")


@pytest.mark.parametrize("status", ["5.1", "550", "6.0.0", ""])
def test_a_malformed_status_is_refused(status: str) -> None:
    with pytest.raises(ValueError):
        build_dsn(request(replace(FAILED, status=status)), now=NOW)


def test_an_untyped_diagnostic_is_refused() -> None:
    with pytest.raises(ValueError, match="type"):
        build_dsn(request(replace(FAILED, diagnostic="550 user unknown")), now=NOW)
