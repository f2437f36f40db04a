"""The confirmation code and its mail, as pure functions."""

from __future__ import annotations

import email
import email.policy

import pytest

from postroom.campaign.sender_code import (
    code_digest,
    code_mail,
    code_matches,
    new_code,
    normalised_code,
)

KEY = b"k" * 32


def test_codes_are_six_random_digits() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 190  # 200 draws from a million collide rarely


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("012345", "012345"),
        (" 012 345 ", "012345"),
        ("012-345", "012345"),
        ("12345", None),
        ("0123456", None),
        ("01234x", None),
        ("-012345", None),
        ("٠١٢٣٤٥", None),  # Arabic-Indic digits are digits to str.isdigit, not to us
        ("1 " * 1000, None),
    ],
)
def test_a_typed_code_is_read_leniently_but_only_as_six_digits(
    typed: str, expected: str | None
) -> None:
    assert normalised_code(typed) == expected


def test_the_digest_is_keyed_and_bound_to_row_and_address() -> None:
    digest = code_digest(KEY, 7, "bot@far.test", "012345")
    assert len(digest) == 64 and "012345" not in digest
    assert code_matches(KEY, 7, "bot@far.test", "012345", digest)
    assert not code_matches(KEY, 8, "bot@far.test", "012345", digest)
    assert not code_matches(KEY, 7, "bat@far.test", "012345", digest)
    assert not code_matches(KEY, 7, "bot@far.test", "012346", digest)
    assert not code_matches(b"x" * 32, 7, "bot@far.test", "012345", digest)


def test_operator_text_is_encoded_in_headers_and_escaped_in_html() -> None:
    raw = code_mail(
        author="postmaster@mx.example.test",
        author_name="mx.example.test",
        sender="bot@far.test",
        display_name='Bot "<b>", Inc.',
        project="<script>x</script>",
        code="012345",
        expires_at=1_800_003_600,
        max_failures=5,
        hostname="mx.example.test",
        now=1_800_000_000,
    )
    assert raw.isascii()  # 7-bit: quoted-printable bodies, RFC 2047 words where needed
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"].addresses[0].display_name == 'Bot "<b>", Inc.'
    assert parsed["To"].addresses[0].addr_spec == "bot@far.test"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"].datetime.timestamp() == 1_800_000_000
    assert parsed["Message-ID"].endswith("@mx.example.test>")
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    text = parsed.get_body(("plain",)).get_content()
    assert "postroom sender confirm bot@far.test 012345 --project <script>x</script>" in text
    assert "valid until 2027-01-15 09:00 UTC" in text
