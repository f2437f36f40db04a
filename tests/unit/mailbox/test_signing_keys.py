"""The signer's keys come from the directory (real SQLite, real secret file): only ACTIVE
keys of verified domains sign, each key is decrypted once, and the outbound signer signs
exactly the mail whose From domain has a key."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
from sqlalchemy import Engine

from postroom.config.schema import DkimConfig
from postroom.mailbox.directory import Directory
from postroom.mailbox.dkim_keys import KeyAlgorithm, KeyState, dkim_txt_value
from postroom.mailbox.keyring import Keyring
from postroom.mta.signing.keys import SigningKeys
from postroom.mta.signing.outbound import OutboundSigner

DOMAIN = "shop.test"


@pytest.fixture
def directory(engine: Engine, tmp_path: Path) -> Directory:
    directory = Directory(engine)
    directory.add_project("acme")
    directory.add_domain(DOMAIN, "acme")
    directory.add_domain("unverified.test", "acme")
    keyring = Keyring(
        directory,
        DkimConfig(algorithms=("rsa", "ed25519"), rsa_bits=1024),
        tmp_path / "s.key",
        tmp_path,
    )
    directory.mark_verified(DOMAIN, keyring.first_keys(DOMAIN))
    return directory


@pytest.fixture
def keys(directory: Directory, tmp_path: Path) -> SigningKeys:
    keys = SigningKeys(directory, tmp_path / "s.key")
    keys.load()
    return keys


def records(directory: Directory) -> dict[bytes, bytes]:
    return {
        f"{key.selector}._domainkey.{DOMAIN}.".encode(): dkim_txt_value(
            KeyAlgorithm(key.algorithm), key.public_key
        ).encode()
        for key in directory.dkim_keys(DOMAIN)
    }


def message(sender: str, extra: str = "") -> bytes:
    return (
        f"{extra}From: Shop <{sender}>\r\nTo: someone@far.test\r\nSubject: order\r\n\r\nthanks\r\n"
    ).encode()


def signatures(data: bytes) -> list[bytes]:
    return [
        value for name, value in dkim.rfc822_parse(data)[0] if name.lower() == b"dkim-signature"
    ]


def test_active_keys_of_verified_domains_rsa_first(keys: SigningKeys) -> None:
    held = keys.for_domain(DOMAIN)
    assert [key.algorithm for key in held] == [KeyAlgorithm.RSA, KeyAlgorithm.ED25519]
    assert keys.for_domain("unverified.test") == ()
    assert keys.for_domain("other.test") == ()


def test_mail_from_a_linked_domain_is_signed_and_verifies(
    keys: SigningKeys, directory: Directory
) -> None:
    signed = OutboundSigner(keys).sign(message(f"orders@{DOMAIN.upper()}"))
    assert len(signatures(signed)) == 2
    published = records(directory)
    verifier = dkim.DKIM(signed)
    assert all(
        verifier.verify(idx=index, dnsfunc=lambda name, timeout=5: published.get(name))
        for index in range(2)
    )


def test_other_domains_and_unparsable_mail_leave_unchanged(keys: SigningKeys) -> None:
    signer = OutboundSigner(keys)
    for data in (
        message("someone@other.test"),
        message("someone@unverified.test"),
        message(f"a@{DOMAIN}", extra=f"From: b@{DOMAIN}\r\n"),  # two From fields
        b"From: a@shop.test\r\nnot a header line\r\n\r\nbody\r\n",
    ):
        assert signer.sign(data) == data


def test_presigned_mail_keeps_its_own_signature_unless_configured(keys: SigningKeys) -> None:
    once = OutboundSigner(keys).sign(message(f"orders@{DOMAIN}"))
    assert OutboundSigner(keys).sign(once) == once
    assert len(signatures(OutboundSigner(keys, sign_presigned=True).sign(once))) == 4


def test_a_rotated_key_is_picked_up_and_parsed_once(
    keys: SigningKeys, directory: Directory
) -> None:
    before = {key.selector: key for key in keys.for_domain(DOMAIN)}
    keys.load()
    assert {key.selector: key for key in keys.for_domain(DOMAIN)} == before
    assert all(before[k.selector] is k for k in keys.for_domain(DOMAIN))  # not re-parsed
    rsa = next(k for k in directory.dkim_keys(DOMAIN) if k.algorithm == "rsa")
    directory.set_key_states(DOMAIN, {rsa.selector: KeyState.RETIRING.value})
    keys.load()
    assert [key.algorithm for key in keys.for_domain(DOMAIN)] == [KeyAlgorithm.ED25519]


def test_a_wrong_secret_leaves_mail_unsigned_and_says_so(
    directory: Directory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other.key"
    Keyring(directory, DkimConfig(), other, tmp_path)._new_keys(["rsa"], [], KeyState.PENDING)
    keys = SigningKeys(directory, other)
    keys.load()
    assert keys.for_domain(DOMAIN) == ()
    assert "unsigned" in caplog.text and "wrong secret key" in caplog.text
