"""Outbound DKIM signatures: what is signed, how, and that dkimpy's verifier agrees.

Interoperability with independent verifiers (Mail::DKIM, OpenDKIM) is proved in
tests/flow/test_dkim_interop.py; here dkimpy checks every signature, and the
signed header list, the tags and the folding are checked directly.
"""

from __future__ import annotations

import base64

import dkim
import dkim.util
import pytest
from dkim.canonicalization import CanonicalizationPolicy

from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mta.signing.dkim import (
    SigningError,
    SigningKey,
    load_private_key,
    parse_message,
    relaxed_body,
    sign_headers,
)

DOMAIN = "example.test"
MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@far.test,\r\n carol@far.test\r\n"
    b"Cc: dave@far.test\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Fri, 27 Nov 2026 07:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.test/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: c1:acme:postroom\r\n"
    b"X-Mailer: something\r\n"
    b"Received: from a by b; Fri, 27 Nov 2026 07:00:00 +0000\r\n"
    b"\r\n"
    b"Hello  there \r\n\r\n\r\n"
)


def make_key(algorithm: KeyAlgorithm, selector: str) -> tuple[SigningKey, bytes]:
    generated = generate_key(algorithm, 1024 if algorithm is KeyAlgorithm.RSA else 2048)
    key = SigningKey(
        DOMAIN, selector, algorithm, load_private_key(algorithm, generated.private_pem)
    )
    return key, dkim_txt_value(algorithm, generated.public_b64).encode()


@pytest.fixture(scope="module")
def keys() -> tuple[list[SigningKey], dict[bytes, bytes]]:
    rsa_key, rsa_record = make_key(KeyAlgorithm.RSA, "rsa1")
    ed_key, ed_record = make_key(KeyAlgorithm.ED25519, "ed1")
    records = {
        f"rsa1._domainkey.{DOMAIN}.".encode(): rsa_record,
        f"ed1._domainkey.{DOMAIN}.".encode(): ed_record,
    }
    return [rsa_key, ed_key], records


def signed(message: bytes, keys: list[SigningKey]) -> bytes:
    headers, body = parse_message(message)
    return sign_headers(headers, body, keys, now=1_700_000_000) + message


def verify_all(message: bytes, records: dict[bytes, bytes]) -> list[bool]:
    verifier = dkim.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    return [_verifies(verifier, index, records) for index in range(count)]


def _verifies(verifier: dkim.DKIM, index: int, records: dict[bytes, bytes]) -> bool:
    try:
        return verifier.verify(idx=index, dnsfunc=lambda name, timeout=5: records.get(name))
    except dkim.ValidationError:  # dkimpy raises for a body hash mismatch
        return False


def signature_tags(message: bytes) -> list[dict[bytes, bytes]]:
    headers, _ = parse_message(message)
    return [
        dkim.util.parse_tag_value(value)
        for name, value in headers
        if name.lower() == b"dkim-signature"
    ]


def test_rsa_and_ed25519_signatures_verify(keys) -> None:
    signing_keys, records = keys
    message = signed(MESSAGE, signing_keys)
    assert verify_all(message, records) == [True, True]
    algorithms = [tags[b"a"] for tags in signature_tags(message)]
    assert algorithms == [b"rsa-sha256", b"ed25519-sha256"]


def test_signed_fields_are_the_listed_ones_with_from_oversigned(keys) -> None:
    signing_keys, _ = keys
    tags = signature_tags(signed(MESSAGE, signing_keys[:1]))[0]
    assert b"".join(tags[b"h"].split()).split(b":") == [
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"content-type",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"feedback-id",
        b"from",
    ]
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == b"rsa1"
    assert tags[b"t"] == b"1700000000"
    assert b"l" not in tags  # a body length would let anyone append to the body


def test_a_second_from_added_in_transit_breaks_the_signature(keys) -> None:
    signing_keys, records = keys
    message = b"From: Mallory <m@evil.test>\r\n" + signed(MESSAGE, signing_keys[:1])
    assert verify_all(message, records) == [False]


def test_body_changes_break_and_whitespace_changes_do_not(keys) -> None:
    signing_keys, records = keys
    message = signed(MESSAGE, signing_keys)
    assert verify_all(message.replace(b"Hello  there", b"Hello there"), records) == [True, True]
    assert verify_all(message.replace(b"Hello", b"Jello"), records) == [False, False]


def test_header_lines_stay_short_and_b_is_complete(keys) -> None:
    signing_keys, _ = keys
    message = signed(MESSAGE, signing_keys)
    header_section = message.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header_section.split(b"\r\n")) <= 78
    for tags in signature_tags(message):
        signature = base64.b64decode(b"".join(tags[b"b"].split()))
        assert len(signature) in (128, 64)  # RSA-1024, Ed25519


def test_long_folded_headers_and_8bit_body_verify(keys) -> None:
    signing_keys, records = keys
    to = b",\r\n ".join(b"person%d@far.test" % n for n in range(40))
    message = (
        b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.test>\r\nTo: " + to + b"\r\n"
        b"Subject: " + b"word " * 150 + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Grüße aus Köln — ünïcödé\r\n".encode()
    )
    assert verify_all(signed(message, signing_keys), records) == [True, True]


def test_a_message_without_from_is_refused(keys) -> None:
    signing_keys, _ = keys
    headers, body = parse_message(b"To: bob@far.test\r\nSubject: x\r\n\r\nbody\r\n")
    with pytest.raises(SigningError, match="no From"):
        sign_headers(headers, body, signing_keys)


def test_a_garbled_header_section_is_a_signing_error() -> None:
    with pytest.raises(SigningError):
        parse_message(b"From: a@example.test\r\nthis is not a header\r\n\r\nbody\r\n")


def test_a_key_of_the_other_algorithm_is_refused() -> None:
    generated = generate_key(KeyAlgorithm.ED25519)
    with pytest.raises(ValueError, match="not an rsa"):
        load_private_key(KeyAlgorithm.RSA, generated.private_pem)


def test_the_relaxed_body_shortcut_equals_dkimpy_on_every_shape() -> None:
    """relaxed_body skips dkimpy's whitespace passes when they cannot change anything:
    compared with dkimpy's full canonicalisation on every combination of the pieces
    that matter (spaces, tabs, line ends, empty lines, a missing final CRLF)."""
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    pieces = [b"a", b" ", b"  ", b"\t", b"\r\n", b"x y", b"\r\n\r\n", b"\r"]
    bodies = [b""] + [a + b + c for a in pieces for b in pieces for c in pieces]
    for body in bodies:
        assert relaxed_body(body) == policy.canonicalize_body(body), body
