"""DKIM keys and DNS for the message-authentication unit tests.

`Signer(algorithm, domain, selector)` is one key pair: our `SigningKey`, its
DNS record, and (RSA) the same key as PKCS#1 PEM for dkimpy; `sign(message)`
prepends our DKIM-Signature(s), timestamped `NOW`. `FakeDns` is a `DnsLookup`
over {name: TXT text or an exception}; `published(*signers)` one that serves
their keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.rdata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.fakes.dns_records import record

from postroom.core.dns import DnsNotFound
from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mta.signing.dkim import SigningKey, load_private_key, parse_message, sign_headers

NOW = 1_700_000_000

Answer = str | Exception


class FakeDns:
    """A `DnsLookup` over {name: TXT text or an exception}; other names do not exist."""

    def __init__(self, zone: Mapping[str, Answer]) -> None:
        self.zone = dict(zone)
        self.asked: list[tuple[str, str]] = []

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        key = name.lower().removesuffix(".")
        self.asked.append((key, rdtype))
        answer = self.zone.get(key, DnsNotFound(key, rdtype, "not in the fake zone"))
        if isinstance(answer, Exception):
            raise answer
        return [record("TXT", answer.encode("ascii"))]


class Signer:
    """One key pair: our `SigningKey` and the same RSA key as PKCS#1 PEM for dkimpy."""

    def __init__(self, algorithm: KeyAlgorithm, domain: str, selector: str) -> None:
        generated = generate_key(algorithm, 1024) if algorithm is KeyAlgorithm.RSA else None
        generated = generated or generate_key(algorithm)
        private = load_private_key(algorithm, generated.private_pem)
        self.key = SigningKey(domain, selector, algorithm, private)
        self.record = dkim_txt_value(algorithm, generated.public_b64)
        self.name = f"{selector}._domainkey.{domain}"
        self.pkcs1_pem = (
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            if isinstance(private, rsa.RSAPrivateKey)
            else b""
        )

    def sign(self, message: bytes, *, copies: int = 1) -> bytes:
        headers, body = parse_message(message)
        return sign_headers(headers, body, [self.key] * copies, now=NOW) + message


def published(*signers: Signer) -> FakeDns:
    return FakeDns({signer.name: signer.record for signer in signers})
