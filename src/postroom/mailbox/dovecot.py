"""Dovecot 2.3 integration: the passwd-file of our mailboxes and the config that reads it.

Purpose: postroom owns the mailboxes (address, argon2id password hash, Maildir,
quota); Dovecot serves them over IMAP. This module renders what Dovecot needs:

- `passwd_line(mailbox)`: its passwd-file line (`check_maildir(path)` checks
  the path part alone, for a mailbox not created yet),
  `user:{ARGON2ID}<PHC string>::::::userdb_mail=maildir:<path>[ userdb_quota_rule=*:storage=<n>B]`
  (fields user:password:uid:gid:gecos:home:shell:extra_fields; uid and gid
  come from the userdb defaults of `render_config`, home is left empty because
  Dovecot advises against a home equal to the Maildir). Users are full
  addresses in lower case, matching Dovecot's default `auth_username_format = %Lu`.
- `render_passwd_file(mailboxes)`: one line per mailbox the file can hold, and
  the others `left_out` with the reason: one bad row (stored by an older
  version, or by hand) must never keep every other mailbox's change from
  reaching Dovecot, so it is left out, not fatal.
- `write_passwd_file(path, mailboxes, group=...)`: the same text, replaced
  atomically, mode 0640; returns what was left out.
- `render_config(...)`: a dovecot.conf fragment (Debian 12 ships 2.3.19) for
  /etc/dovecot/conf.d/99-postroom.conf, also usable inside a complete config;
  its comments say what it assumes of the machine and what to do first
  (`dovecot_checks` finds those).

Password hashes are argon2-cffi PHC strings ("$argon2id$v=19$m=..,t=..,p=..$salt$hash");
Dovecot's ARGON2ID scheme (libsodium) verifies them unchanged behind the
"{ARGON2ID}" prefix (checked against Dovecot 2.3.19.1 with `doveadm pw -t`
and over IMAP in tests/flow/test_dovecot_imap.py).

Refusals (ValueError from `passwd_line` and `render_config`, a `LeftOut` in a
rendered file): anything that would change the meaning of a line or of the
config: ":" or whitespace in a field, "%" (Dovecot expands variables in extra
fields and in paths), a leading "#" (comment line), a relative path or one with
"." or ".." components, a hash that is not argon2id, a negative quota, a second
mailbox with an address already written (the first one stays).

Untrusted input: addresses and paths come from our own database, but an
address was once typed by someone; the refusals above keep it from injecting
fields or lines. No I/O except `write_passwd_file`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PASSWD_FILE_MODE = 0o640
PASSWORD_SCHEME = "ARGON2ID"

# A line break ends a record, ":" ends a field, whitespace separates extra
# fields, "%" starts a variable, and a config value stops at whitespace or
# "#"; quotes and braces would open strings and sections.
_FORBIDDEN_IN_FIELD = re.compile(r"[:\s%\x00-\x1f\x7f]")
_FORBIDDEN_IN_CONFIG = re.compile(r"[:\s%#\"'{}$\\\x00-\x1f\x7f]")
# Listen addresses: IPv4, IPv6 (with ":"), "*" and "::" wildcards.
_LISTEN_ADDRESS = re.compile(r"[0-9A-Za-z.:*\[\]-]+")
_ARGON2ID_PHC = re.compile(r"\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


@dataclass(frozen=True, slots=True)
class DovecotMailbox:
    """One IMAP login: `quota_bytes` 0 means no per-user limit."""

    address: str
    password_hash: str
    maildir: str
    quota_bytes: int


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A mailbox the passwd-file cannot hold, and why (one line for the operator)."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class PasswdFile:
    text: str
    left_out: tuple[LeftOut, ...]


def render_passwd_file(mailboxes: Iterable[DovecotMailbox]) -> PasswdFile:
    """The passwd-file text for `mailboxes`, one line each in the given order, and
    the mailboxes left out of it."""
    lines: list[str] = []
    left_out: list[LeftOut] = []
    seen: set[str] = set()
    for mailbox in mailboxes:
        try:
            line = passwd_line(mailbox)
        except ValueError as error:
            left_out.append(LeftOut(mailbox.address, str(error)))
            continue
        user = line.split(":", 1)[0]
        if user in seen:
            left_out.append(LeftOut(mailbox.address, f"another mailbox has the login {user!r}"))
            continue
        seen.add(user)
        lines.append(line)
    return PasswdFile("".join(line + "\n" for line in lines), tuple(left_out))


def write_passwd_file(
    path: Path, mailboxes: Iterable[DovecotMailbox], *, group: str | None = None
) -> tuple[LeftOut, ...]:
    """Replace `path` atomically (temporary file in the same directory, fsync,
    rename, fsync of the directory) with mode 0640; returns the mailboxes left out.

    Dovecot's auth process runs as the `dovecot` user, so the file must be
    readable by its group: pass `group="dovecot"`. Without `group`, the group
    of the file being replaced is kept, so that an operator's chgrp survives
    every rewrite."""
    rendered = render_passwd_file(mailboxes)
    directory = path.parent
    keep_gid = path.stat().st_gid if group is None and path.exists() else None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), PASSWD_FILE_MODE)
            if group is not None:
                shutil.chown(temporary, group=group)
            elif keep_gid is not None:
                os.fchown(handle.fileno(), -1, keep_gid)
            handle.write(rendered.text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    return rendered.left_out


class UnusableValue(ValueError):
    """A value `render_config` cannot put in dovecot.conf; `name` is its parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def render_config(
    *,
    passwd_file: str,
    mail_root: str,
    mail_user: str,
    mail_group: str,
    passwd_group: str = "dovecot",
    listen: str = "*",
    imap_port: int = 143,
    quota: bool = True,
    notes: Sequence[str] = (),
) -> str:
    """A dovecot.conf fragment serving our passwd-file users over IMAP from
    their Maildirs; its opening comments say what it assumes (who owns the
    Maildirs, who reads the passwd-file) and list `notes`, the things to do
    before it works (see `dovecot_checks`). `quota=False` leaves the quota
    plugin as a commented-out recommendation. `UnusableValue` names a value
    the config cannot hold."""
    for name, value in (("passwd_file", passwd_file), ("mail_root", mail_root)):
        _check_config_value(name, value)
        if not value.startswith("/"):
            raise UnusableValue(name, f"{name} must be an absolute path, got {value!r}")
    for name, value in (
        ("mail_user", mail_user),
        ("mail_group", mail_group),
        ("passwd_group", passwd_group),
    ):
        _check_config_value(name, value)
    for address in listen.split(","):
        if not _LISTEN_ADDRESS.fullmatch(address.strip()):
            raise UnusableValue(
                "listen", f"listen {listen!r} is not a comma-separated list of addresses"
            )
    if not 0 < imap_port < 65536:
        raise UnusableValue("imap_port", f"imap_port must be 1..65535, got {imap_port}")
    mail_root = mail_root.rstrip("/") or "/"
    quota_prefix = "" if quota else "#"
    return f"""\
# postroom: IMAP access to the mailboxes postroom delivers to.
# Generated by `postroom dovecot config`; install as
# /etc/dovecot/conf.d/99-postroom.conf (read last, so it wins over Debian's
# 10-mail.conf), and comment out "!include auth-system.conf.ext" in 10-auth.conf
# so that system accounts are not offered as mail logins. TLS stays in Debian's
# 10-ssl.conf; keep disable_plaintext_auth = yes so that passwords only travel
# inside TLS.
#
# It assumes (the [mailbox] keys of postroom's config set each value):
# - the Maildirs under {mail_root} ("root") belong to {mail_user}:{mail_group}
#   ("dovecot_mail_user", "dovecot_mail_group": by default the owner of that
#   directory, the user postroom runs as); Dovecot's mail processes run as them,
#   and Dovecot refuses root and uids below first_valid_uid (500 by default);
# - postroom rewrites {passwd_file} ("dovecot_passwd_file")
#   at every mailbox change, mode 0640, group {passwd_group} ("dovecot_group");
#   Dovecot's auth process reads it as the user dovecot, so it must be able to
#   enter every directory above it.
{_render_notes(notes)}
# Logins: {passwd_file} holds "address:{{{PASSWORD_SCHEME}}}<argon2id PHC string>"
# lines. Dovecot re-reads the file when it changes.
passdb {{
  driver = passwd-file
  args = scheme={PASSWORD_SCHEME} {passwd_file}
}}

# Mail processes: the same file gives each user's Maildir (userdb_mail) and
# quota (userdb_quota_rule); they run as {mail_user}:{mail_group}.
userdb {{
  driver = passwd-file
  args = {passwd_file}
  default_fields = uid={mail_user} gid={mail_group}
}}

# Fallback for a user without userdb_mail: postroom's layout
# <root>/<domain>/<local part>/ with cur/ new/ tmp/.
mail_location = maildir:{mail_root}/%d/%n

# Quota: Maildir++ quota, usage kept in each Maildir's maildirsize file, limit
# from the user's quota_rule (none means unlimited). IMAP clients see it via
# GETQUOTAROOT; over-quota APPEND and COPY are refused.
{quota_prefix}mail_plugins = $mail_plugins quota
{quota_prefix}plugin {{
{quota_prefix}  quota = maildir:User quota
{quota_prefix}}}
{quota_prefix}protocol imap {{
{quota_prefix}  mail_plugins = $mail_plugins imap_quota
{quota_prefix}}}

# IMAP on {listen}, port {imap_port} (STARTTLS when 10-ssl.conf enables TLS).
service imap-login {{
  inet_listener imap {{
    address = {listen}
    port = {imap_port}
  }}
}}
"""


def passwd_line(mailbox: DovecotMailbox) -> str:
    """The mailbox's line (without its line break); ValueError naming what the
    passwd-file cannot hold."""
    user = mailbox.address.lower()
    _check_field("address", user)
    local, at, domain = user.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"address must be local@domain, got {mailbox.address!r}")
    if user.startswith("#"):
        raise ValueError(f"an address starting with '#' would be a comment: {mailbox.address!r}")
    if not _ARGON2ID_PHC.fullmatch(mailbox.password_hash):
        raise ValueError(f"password hash for {user!r} is not an argon2id PHC string")
    check_maildir(mailbox.maildir)
    if isinstance(mailbox.quota_bytes, bool) or mailbox.quota_bytes < 0:
        raise ValueError(f"quota_bytes must be a non-negative int, got {mailbox.quota_bytes!r}")
    # Fields 3-7 (uid, gid, gecos, home, shell) stay empty: the userdb's
    # default_fields give uid and gid; the eighth field holds the extra fields.
    extra = [f"userdb_mail=maildir:{mailbox.maildir}"]
    if mailbox.quota_bytes:
        # A bare number would be kilobytes; the "B" suffix makes it bytes.
        extra.append(f"userdb_quota_rule=*:storage={mailbox.quota_bytes}B")
    return f"{user}:{{{PASSWORD_SCHEME}}}{mailbox.password_hash}::::::{' '.join(extra)}"


def _render_notes(notes: Sequence[str]) -> str:
    if not notes:
        return "# Checked on this machine when generated: all of this holds.\n"
    lines = ["#", "# NOT READY on this machine (checked when generated); first:"]
    for note in notes:
        lines += textwrap.wrap(
            note, 84, initial_indent="# - ", subsequent_indent="#   ", break_on_hyphens=False
        )
    return "\n".join(lines) + "\n"


def check_maildir(maildir: str) -> None:
    """ValueError naming what keeps `maildir` out of a passwd-file line."""
    _check_field("maildir", maildir)
    if not maildir.startswith("/"):
        raise ValueError(f"maildir must be an absolute path, got {maildir!r}")
    if {".", ".."} & set(maildir.split("/")):
        # A stored name such as ".." would point the Maildir outside the mail root.
        raise ValueError(f"maildir {maildir!r} has a '.' or '..' component")


def _check_field(name: str, value: str) -> None:
    _check(name, value, _FORBIDDEN_IN_FIELD, "the passwd-file")


def _check_config_value(name: str, value: str) -> None:
    _check(name, value, _FORBIDDEN_IN_CONFIG, "dovecot.conf")


def _check(name: str, value: str, forbidden: re.Pattern[str], where: str) -> None:
    if not value:
        raise UnusableValue(name, f"{name} must not be empty")
    found = forbidden.search(value)
    if found:
        raise UnusableValue(
            name, f"{name} {value!r} contains {found.group()!r}, which {where} cannot hold"
        )
