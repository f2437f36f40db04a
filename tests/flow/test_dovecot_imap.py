"""A real Dovecot reads what postroom writes: a Maildir, a passwd-file with an
argon2-cffi argon2id hash, and the config from `render_config`; an IMAP client
logs in, fetches the message byte for byte and sees the quota; a wrong
password and an unknown user are refused. Driven by the real CLI, mailbox
changes reach Dovecot even with a stored name the passwd-file cannot hold."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from tests.fakes.mailbox_rows import insert_mailbox_row
from tests.peers.dovecot import AUTH_GROUP, DovecotServer
from tests.peers.postroom import PostroomServer

from postroom.db.engine import make_engine
from postroom.mailbox.directory import Directory
from postroom.mailbox.dovecot import DovecotMailbox, write_passwd_file

pytestmark = pytest.mark.flow

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "copper meadow seventeen lantern"
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


def imap_login(dovecot: DovecotServer, user: str, password: str) -> bool:
    """True when Dovecot accepts the login, False when it refuses the credentials."""
    imap = imaplib.IMAP4(dovecot.address, dovecot.port, timeout=5)
    try:
        imap.login(user, password)
    except imaplib.IMAP4.error as error:
        imap.shutdown()
        assert "AUTHENTICATIONFAILED" in str(error), dovecot.log()
        return False
    try:
        assert imap.select("INBOX")[0] == "OK", dovecot.log()
    finally:
        imap.logout()
    return True


def test_a_bad_stored_name_never_stops_changes_reaching_dovecot(tmp_path: Path) -> None:
    """Issue 12 item 5: with a row the passwd-file cannot hold in the database (an older
    version's `a%d@...`, a hand-written `#x@...`), `mailbox delete` and `mailbox passwd`
    still reach Dovecot: the deleted mailbox and the old password no longer log in."""
    with DovecotServer() as dovecot:
        config = (
            f'[server]\nhostname = "mx.shop.test"\n[state]\ndir = "{tmp_path}/state"\n'
            f'[mailbox]\nroot = "{dovecot.mail_root}"\n'
            f'dovecot_passwd_file = "{dovecot.passwd_file}"\ndovecot_group = "{AUTH_GROUP}"\n'
        )
        postroom = PostroomServer(tmp_path, config, 0)
        postroom.cli("db", "upgrade")
        engine = make_engine(f"sqlite:///{tmp_path}/state/postroom.db")
        directory = Directory(engine)
        directory.add_project("acme")
        directory.add_domain("shop.test", "acme")
        directory.mark_verified("shop.test", [])
        for name in ("alice", "bob"):
            postroom.cli("mailbox", "add", f"{name}@shop.test", "--password-stdin", stdin=PASSWORD)
        dovecot.hand_over(dovecot.mail_root / "shop.test")
        assert imap_login(dovecot, "bob@shop.test", PASSWORD)

        for address in ("a%d@shop.test", "#x@shop.test"):
            insert_mailbox_row(engine, address, PasswordHasher().hash(PASSWORD))
        engine.dispose()
        deleted = postroom.cli("mailbox", "delete", "bob@shop.test", "--yes")
        changed = postroom.cli(
            "mailbox", "passwd", "alice@shop.test", "--password-stdin", stdin=NEW_PASSWORD
        )
        for result in (deleted, changed):
            assert "mailbox 'a%d@shop.test' is not in" in result.stderr
            assert "mailbox '#x@shop.test' is not in" in result.stderr

        assert not imap_login(dovecot, "bob@shop.test", PASSWORD)
        assert not imap_login(dovecot, "alice@shop.test", PASSWORD)
        assert imap_login(dovecot, "alice@shop.test", NEW_PASSWORD)
