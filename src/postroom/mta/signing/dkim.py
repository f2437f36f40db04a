"""DKIM signatures (RFC 6376, RFC 8463) computed with OpenSSL.

`sign_headers(headers, body, keys, now)` returns the DKIM-Signature header
lines (CRLF-terminated, folded) for an already parsed message, one per key, in
the order of `keys`. `parse_message` splits raw bytes the way the verifiers do
(what dkimpy's `rfc822_parse` gives, in linear time: the inbound checks run it
on untrusted mail); `field_values` reads fields of the result.
`load_private_key` parses a PEM key once: callers cache the result, because
parsing and checking an RSA key costs more than a signature.

Why not `dkim.sign()`: dkimpy does the RSA operation in pure Python, about
5 ms per RSA-2048 signature here — more than the rest of the relay path. We
keep dkimpy for what verifiers must agree with byte for byte (parsing,
relaxed canonicalisation of headers and body, the header hash including the
signature header with an empty b=, folding) and do only the private-key
operation with `cryptography`: RSASSA-PKCS1-v1_5 over the SHA-256 digest, or
Ed25519 over the SHA-256 digest (RFC 8463 3).

Signed header fields: those of `SIGNED_FIELDS` present in the message, every
instance, plus From once more than present ("over-signed", RFC 6376 8.15), so
a second From added in transit breaks the signature. Canonicalisation is
relaxed/relaxed, hash SHA-256, no l= (a body length tag lets others append).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import (
    CanonicalizationPolicy,
    correct_empty_body,
    strip_trailing_lines,
)

from postroom.mailbox.dkim_keys import KeyAlgorithm

SIGNED_FIELDS = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"content-type",
        b"reply-to",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"feedback-id",
    }
)
OVERSIGNED_FIELDS = (b"from",)

_CANONICALISATION = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_SIGNATURE_FIELD = b"DKIM-Signature"
_FOLD = b"\r\n\t"
_MAX_COLUMN = 76
_RSA_PADDING = padding.PKCS1v15()
_PREHASHED_SHA256 = Prehashed(hashes.SHA256())

_LINE_END = re.compile(rb"\r?\n")
# dkimpy's field-name rule (printable ASCII up to the first colon).
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")

Headers = list[list[bytes]]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class SigningError(ValueError):
    """The message cannot be signed (no From field, a header line that is not a header)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One active key: signs for `domain` (ASCII, lower case) under `selector`."""

    domain: str
    selector: str
    algorithm: KeyAlgorithm
    private_key: PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey({self.domain!r}, {self.selector!r}, {self.algorithm.value})"


def load_private_key(algorithm: KeyAlgorithm, private_pem: bytes) -> PrivateKey:
    """Parse a PKCS#8 PEM key of the given algorithm (ValueError when it is another)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    wanted = rsa.RSAPrivateKey if algorithm is KeyAlgorithm.RSA else ed25519.Ed25519PrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the stored key is not an {algorithm.value} private key")
    return key


def parse_message(message: bytes) -> tuple[Headers, bytes]:
    """(header fields as [name, value], body) as DKIM verifiers split them.

    The result is dkimpy's `rfc822_parse`'s: each value keeps its folding, every
    line CRLF-terminated; an "mbox From " line is skipped; the body's lines are
    CRLF-joined. Unlike it, the work is linear (it appends each folded line to its
    field's value, copying the value again each time: a header folded over a
    megabyte took seconds), and a header section that opens with a folded line is a
    SigningError, not an IndexError.
    """
    if message.startswith(b"\r\n") or message.startswith(b"\n"):
        return [], b"\r\n".join(_LINE_END.split(message)[1:])
    end = message.find(b"\r\n\r\n")
    if end >= 0 and message.count(b"\n") == message.count(b"\r\n"):
        # CRLF throughout (what SMTP carries): splitting the body into lines to join
        # them again would change nothing; only the header section is split.
        return _header_fields(_LINE_END.split(message[:end])), message[end + 4 :]
    lines = _LINE_END.split(message)
    blank = next((index for index, line in enumerate(lines) if not line), len(lines))
    return _header_fields(lines[:blank]), b"\r\n".join(lines[blank + 1 :])


def _header_fields(lines: list[bytes]) -> Headers:
    names: list[bytes] = []
    values: list[list[bytes]] = []  # each field's lines, joined once at the end
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not values:
                raise SigningError("the header section opens with a folded line")
            values[-1].append(line + b"\r\n")
            continue
        name = _FIELD_NAME.match(line)
        if name is not None:
            names.append(name.group(1))
            values.append([line[name.end() :] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise SigningError(f"Unexpected characters in RFC822 header: {line[:80]!r}")
    return [[name, b"".join(value)] for name, value in zip(names, values, strict=True)]


def field_values(headers: Headers, name: bytes) -> list[str]:
    """The values of every `name` field (lower case) of parsed `headers`, as text."""
    return [
        value.decode("utf-8", "surrogateescape")
        for field, value in headers
        if field.lower() == name
    ]


def sign_headers(
    headers: Headers, body: bytes, keys: Sequence[SigningKey], now: float | None = None
) -> bytes:
    """The DKIM-Signature fields for `keys`, to be prepended to the message."""
    present = [name.lower() for name, _ in headers if name.lower() in SIGNED_FIELDS]
    if b"from" not in present:
        raise SigningError("the message has no From field")
    signed = present + [name for name in present if name in OVERSIGNED_FIELDS]
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    # Only signed fields take part in the hash: canonicalising the others is wasted.
    canonical_headers = _CANONICALISATION.canonicalize_headers(
        [field for field in headers if field[0].lower() in SIGNED_FIELDS]
    )
    timestamp = str(int(time.time() if now is None else now)).encode("ascii")
    return b"".join(
        _signature(canonical_headers, signed, body_hash, timestamp, key) for key in keys
    )


def relaxed_body(body: bytes) -> bytes:
    """dkimpy's relaxed body (RFC 6376 3.4.4). Its two whitespace passes are regular-
    expression substitutions over the whole body, most of the cost of signing a large
    message; a body with no tab, no double space and no space before a line end
    passes through them unchanged, so they are skipped for it."""
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        return _CANONICALISATION.canonicalize_body(body)
    return correct_empty_body(strip_trailing_lines(body))


def _signature(
    canonical_headers: Headers,
    signed: list[bytes],
    body_hash: bytes,
    timestamp: bytes,
    key: SigningKey,
) -> bytes:
    algorithm = b"rsa-sha256" if key.algorithm is KeyAlgorithm.RSA else b"ed25519-sha256"
    tags = [
        (b"v", b"1"),
        (b"a", algorithm),
        (b"c", b"relaxed/relaxed"),
        (b"d", key.domain.encode("ascii")),
        (b"s", key.selector.encode("ascii")),
        (b"t", timestamp),
        (b"h", b":".join(signed)),
        (b"bh", body_hash),
    ]
    # The value hashed is the field as it will be sent, with an empty b=; folding
    # first and appending b= last keeps the hashed prefix identical to the final one.
    unsigned = _folded(tags)
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher,
        _CANONICALISATION,
        canonical_headers,
        signed,
        (_SIGNATURE_FIELD, b" " + unsigned),
        {},
    )
    digest = hasher.digest()
    if isinstance(key.private_key, rsa.RSAPrivateKey):
        signature = key.private_key.sign(digest, _RSA_PADDING, _PREHASHED_SHA256)
    else:
        signature = key.private_key.sign(digest)
    value = _fold_base64(unsigned, base64.b64encode(signature))
    return _SIGNATURE_FIELD + b": " + value + b"\r\n"


def _folded(tags: list[tuple[bytes, bytes]]) -> bytes:
    """ "tag=value;" tokens and a final "b=", folded before column 76. A line may only
    break where RFC 6376 3.2 allows whitespace: between tags, and after a colon of h=."""
    tokens: list[tuple[bytes, bytes]] = []  # (glue before it on the same line, token)
    for name, value in tags:
        pieces = (
            (name + b"=" + value + b";").split(b":")
            if name == b"h"
            else [name + b"=" + value + b";"]
        )
        tokens.append((b" ", pieces[0] + (b":" if len(pieces) > 1 else b"")))
        tokens.extend((b"", piece + b":") for piece in pieces[1:-1])
        if len(pieces) > 1:
            tokens.append((b"", pieces[-1]))
    tokens.append((b" ", b"b="))
    value = bytearray()
    column = len(_SIGNATURE_FIELD) + 1
    for glue, token in tokens:
        if value and column + len(glue) + len(token) > _MAX_COLUMN:
            value += _FOLD
            column = 1
        elif value or glue != b" ":
            value += glue
            column += len(glue)
        value += token
        column += len(token)
    return bytes(value)


def _fold_base64(prefix: bytes, data: bytes) -> bytes:
    """Append the b= data in lines of at most 76 columns; folding whitespace inside
    b= is ignored by verifiers (RFC 6376 3.5), and short lines survive relays
    that rewrap long ones."""
    column = len(prefix) - prefix.rfind(b"\r\n") - 2 if b"\r\n" in prefix else len(prefix) + 16
    room = max(_MAX_COLUMN - column, 0)
    pieces = [data[:room]]
    pieces.extend(data[index : index + 72] for index in range(room, len(data), 72))
    return prefix + _FOLD.join(piece for piece in pieces if piece)
