"""A real Dovecot reads what postroom writes: a Maildir, a passwd-file with an
argon2-cffi argon2id hash, and the config from `render_config`; an IMAP client
logs in, fetches the message byte for byte and sees the quota; a wrong
password and an unknown user are refused."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from tests.peers.dovecot import AUTH_GROUP, DovecotServer

from postroom.mailbox.dovecot import DovecotMailbox, write_passwd_file

pytestmark = pytest.mark.flow

PASSWORD = "correct horse battery staple"
MESSAGE = (
    b"From: Bob <bob@sender.test>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Message-ID: <dovecot-flow@sender.test>\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b"\xc3\xa9 and a line with trailing space \r\n"
)
QUOTA_BYTES = 10 * 1024 * 1024


def make_maildir(path: Path, message: bytes) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    # Dovecot trusts S=<size> in the name: it must be the exact byte count.
    (path / "new" / f"1732680000.M1P1Q1.host,S={len(message)}").write_bytes(message)


def test_dovecot_serves_a_postroom_maildir_over_imap() -> None:
    password_hash = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1).hash(PASSWORD)
    with DovecotServer() as dovecot:
        maildir = dovecot.mail_root / "example.test" / "alice"
        make_maildir(maildir, MESSAGE)
        dovecot.hand_over(dovecot.mail_root / "example.test")
        mailboxes = [DovecotMailbox("Alice@Example.test", password_hash, str(maildir), QUOTA_BYTES)]
        write_passwd_file(dovecot.passwd_file, mailboxes, group=AUTH_GROUP)

        imap = imaplib.IMAP4(dovecot.address, dovecot.port, timeout=5)
        try:
            assert imap.login("alice@example.test", PASSWORD)[0] == "OK", dovecot.log()
            assert imap.select("INBOX") == ("OK", [b"1"])
            status, data = imap.fetch("1", "(BODY.PEEK[])")
            assert status == "OK", dovecot.log()
            assert data[0][1] == MESSAGE
            status, data = imap.getquotaroot("INBOX")
            assert status == "OK"
            assert b"(STORAGE 1 10240)" in b" ".join(data[1]), data
        finally:
            imap.logout()

        for user, password in [
            ("alice@example.test", PASSWORD + "x"),
            ("mallory@example.test", PASSWORD),
        ]:
            imap = imaplib.IMAP4(dovecot.address, dovecot.port, timeout=5)
            try:
                with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                    imap.login(user, password)
            finally:
                imap.shutdown()
