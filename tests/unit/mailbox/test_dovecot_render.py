"""Dovecot passwd-file and config rendering: exact lines, mailboxes left out (never
fatal) when they would break the format, and the atomic 0640 write
(postroom.mailbox.dovecot)."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from postroom.mailbox.dovecot import (
    DovecotMailbox,
    LeftOut,
    UnusableValue,
    passwd_line,
    render_config,
    render_passwd_file,
    write_passwd_file,
)

HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$3mCzWv7P0eQf0bSxTtq2K3Ywq9vQvHh1bq6gLrD0v1I"


def mailbox(
    address: str = "alice@example.test",
    password_hash: str = HASH,
    maildir: str = "/var/mail/example.test/alice",
    quota_bytes: int = 0,
) -> DovecotMailbox:
    return DovecotMailbox(address, password_hash, maildir, quota_bytes)


def test_one_line_per_mailbox_with_maildir_and_quota_in_bytes() -> None:
    rendered = render_passwd_file(
        [
            mailbox("Alice@Example.TEST", quota_bytes=10_485_760),
            mailbox("bob@example.test", maildir="/var/mail/example.test/bob"),
        ]
    )
    assert rendered.left_out == ()
    text = rendered.text
    assert text == (
        f"alice@example.test:{{ARGON2ID}}{HASH}::::::"
        "userdb_mail=maildir:/var/mail/example.test/alice"
        " userdb_quota_rule=*:storage=10485760B\n"
        f"bob@example.test:{{ARGON2ID}}{HASH}::::::"
        "userdb_mail=maildir:/var/mail/example.test/bob\n"
    )
    # user:password:uid:gid:gecos:home:shell:extra_fields; Dovecot joins every
    # field past the seventh back into the extra fields, colons included.
    for line in text.splitlines():
        assert line.split(":", 7)[2:7] == ["", "", "", "", ""]


def test_no_mailboxes_is_an_empty_file() -> None:
    assert render_passwd_file([]).text == ""


def left_out_alone(bad: DovecotMailbox) -> LeftOut:
    """Renders `bad` between two good mailboxes: both good lines are written, `bad` is
    left out with a reason, and `passwd_line` refuses it on its own."""
    first = mailbox("first@example.test", maildir="/var/mail/example.test/first")
    last = mailbox("last@example.test", maildir="/var/mail/example.test/last")
    rendered = render_passwd_file([first, bad, last])
    assert rendered.text == passwd_line(first) + "\n" + passwd_line(last) + "\n"
    with pytest.raises(ValueError):
        passwd_line(bad)
    (left,) = rendered.left_out
    assert left.address == bad.address and left.reason
    return left


@pytest.mark.parametrize(
    "address",
    [
        "ali:ce@example.test",
        "alice@example.test\nbob@example.test",
        "al ice@example.test",
        "alice%u@example.test",
        "#alice@example.test",
        "alice",
        "@example.test",
        "alice@",
        "",
    ],
)
def test_an_address_that_would_break_the_line_is_left_out(address: str) -> None:
    left_out_alone(mailbox(address))


@pytest.mark.parametrize(
    "maildir",
    [
        "/var/mail/a:b",
        "/var/mail/a b",
        "/var/mail/a\n",
        "/var/mail/%d/%n",
        "var/mail/relative",
        "/var/mail/example.test/..",
        "/var/mail/example.test/../../etc",
        "/var/mail/./x",
        "",
    ],
)
def test_a_maildir_that_would_break_the_line_is_left_out(maildir: str) -> None:
    left_out_alone(mailbox(maildir=maildir))


@pytest.mark.parametrize(
    "password_hash",
    [
        "plaintext",
        HASH.replace("argon2id", "argon2i"),
        HASH + ":0",
        HASH + "\nmallory@example.test:{PLAIN}x",
        "{ARGON2ID}" + HASH,
    ],
)
def test_a_hash_that_is_not_a_bare_argon2id_phc_string_is_left_out(password_hash: str) -> None:
    left_out_alone(mailbox(password_hash=password_hash))


def test_a_negative_quota_is_left_out_and_a_second_login_too() -> None:
    left_out_alone(mailbox(quota_bytes=-1))
    rendered = render_passwd_file([mailbox("alice@example.test"), mailbox("ALICE@example.test")])
    assert rendered.text == passwd_line(mailbox("alice@example.test")) + "\n"
    assert rendered.left_out == (
        LeftOut("ALICE@example.test", "another mailbox has the login 'alice@example.test'"),
    )


def test_write_is_atomic_with_mode_0640(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")
    old_inode = path.stat().st_ino
    assert write_passwd_file(path, [mailbox()]) == ()
    assert path.read_text() == render_passwd_file([mailbox()]).text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != old_inode  # a new file renamed over the old one
    assert [entry.name for entry in tmp_path.iterdir()] == ["passwd"]


def test_a_left_out_mailbox_is_returned_and_the_others_are_written(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")
    left_out = write_passwd_file(path, [mailbox("bad:address@example.test"), mailbox()])
    assert [left.address for left in left_out] == ["bad:address@example.test"]
    assert path.read_text() == passwd_line(mailbox()) + "\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["passwd"]


def test_write_sets_the_given_group_or_keeps_the_replaced_files_group(tmp_path: Path) -> None:
    other = grp.getgrnam("nogroup")
    assert other.gr_gid != os.getegid()
    path = tmp_path / "passwd"
    write_passwd_file(path, [mailbox()], group="nogroup")
    assert path.stat().st_gid == other.gr_gid
    write_passwd_file(path, [])
    assert path.stat().st_gid == other.gr_gid
    assert path.read_text() == ""


def test_config_reads_the_passwd_file_with_argon2id_and_serves_imap() -> None:
    text = render_config(
        passwd_file="/etc/dovecot/postroom.passwd",
        mail_root="/var/lib/postroom/mail/",
        mail_user="vmail",
        mail_group="vmail",
        listen="127.0.0.1, ::1",
        imap_port=1143,
    )
    assert "  args = scheme=ARGON2ID /etc/dovecot/postroom.passwd\n" in text
    assert "  args = /etc/dovecot/postroom.passwd\n" in text
    assert "  default_fields = uid=vmail gid=vmail\n" in text
    assert "\nmail_location = maildir:/var/lib/postroom/mail/%d/%n\n" in text
    assert "    address = 127.0.0.1, ::1\n    port = 1143\n" in text
    assert "\nmail_plugins = $mail_plugins quota\n" in text
    assert "  quota = maildir:User quota\n" in text
    # Braces balance outside comments: every section is closed.
    body = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert sum(line.count("{") for line in body) == sum(line.count("}") for line in body)


def test_config_without_quota_keeps_it_as_a_commented_recommendation() -> None:
    text = render_config(
        passwd_file="/p", mail_root="/m", mail_user="vmail", mail_group="vmail", quota=False
    )
    assert "\n#mail_plugins = $mail_plugins quota\n" in text
    body = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("quota" in line for line in body)
    assert "    address = *\n    port = 143\n" in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"passwd_file": "relative/passwd"},
        {"passwd_file": "/etc/dovecot/pass wd"},
        {"mail_root": "/var/mail/%d"},
        {"mail_root": "/var/mail\n}"},
        {"mail_user": "vmail gid=0"},
        {"mail_group": ""},
        {"listen": "127.0.0.1; rm"},
        {"imap_port": 0},
        {"imap_port": 65536},
    ],
)
def test_config_refuses_values_that_would_break_it(overrides: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "passwd_file": "/etc/dovecot/postroom.passwd",
        "mail_root": "/var/mail",
        "mail_user": "vmail",
        "mail_group": "vmail",
        **overrides,
    }
    with pytest.raises(ValueError):
        render_config(**arguments)  # type: ignore[arg-type]


def test_config_says_what_it_assumes_and_lists_what_to_do_first() -> None:
    arguments = {
        "passwd_file": "/etc/dovecot/postroom/passwd",
        "mail_root": "/var/lib/postroom/mail",
        "mail_user": "postroom",
        "mail_group": "postroom",
        "passwd_group": "dovecot",
    }
    ready = render_config(**arguments)
    assert '# - the Maildirs under /var/lib/postroom/mail ("root") belong to postroom:postroom' in (
        ready
    )
    assert '# - postroom rewrites /etc/dovecot/postroom/passwd ("dovecot_passwd_file")' in ready
    assert 'mode 0640, group dovecot ("dovecot_group")' in ready
    assert "# Checked on this machine when generated: all of this holds.\n" in ready
    note = "create the user " + "x" * 100  # a long note is wrapped, every line a comment
    waiting = render_config(**arguments, notes=[note, "second"])
    head = waiting.split("passdb {")[0]
    assert "# NOT READY on this machine (checked when generated); first:\n# - create" in head
    assert "\n# - second\n" in head
    assert all(line.startswith("#") for line in head.splitlines() if line)
    with pytest.raises(UnusableValue) as raised:
        render_config(**{**arguments, "passwd_group": "dove cot"})
    assert raised.value.name == "passwd_group"
