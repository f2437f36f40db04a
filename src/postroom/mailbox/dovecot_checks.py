"""What `postroom dovecot config` assumes of this machine, and whether it holds.

The printed config serves the Maildirs as one mail user (the userdb's uid and
gid) and reads logins from the passwd-file as Dovecot's auth process (Dovecot's
`default_internal_user`, `dovecot`). `DovecotSetup.for_config(config)` names
them: [mailbox] dovecot_mail_user / dovecot_mail_group, by default the owner
of the mail root (or of the state directory, or of its nearest existing
parent, before postroom has written anything) — the user postroom runs as,
which under `make run` is root or whoever ran it, under systemd `postroom`.

`problems(setup)` checks those assumptions against the file system and the
user database and returns one line per thing to do first, each saying what to
run or to set: a mail user that does not exist, is root (Dovecot refuses mail
access below `first_valid_uid`, 500 by default, and for root always), or
cannot enter the mail root; a missing `dovecot` user (Dovecot not installed);
a passwd-file that does not exist yet or that the auth process cannot reach
(every directory above it needs search permission for it, the file read
permission: a 0750 state directory keeps it out, so the file belongs
elsewhere: the note says how to make /etc/dovecot/postroom for it).
Permissions are read from the mode bits, owner and group (ACLs are not
consulted).

Input: our config and the local system; nothing untrusted. No changes made.
Config keys read: [state] dir, [mailbox] root, dovecot_passwd_file,
dovecot_group, dovecot_mail_user, dovecot_mail_group.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from postroom.config import Config

AUTH_USER = "dovecot"  # Dovecot's default_internal_user: its auth process runs as it
FIRST_VALID_UID = 500  # Dovecot's default first_valid_uid
# Suggested when the auth process cannot reach the file: a directory of its own, setgid
# so that every file written into it gets Dovecot's group even from a non-member.
SUGGESTED_DIRECTORY = "/etc/dovecot/postroom"
_SEARCH, _WRITE, _READ = 1, 2, 4


@dataclass(frozen=True, slots=True)
class DovecotSetup:
    state_dir: Path
    mail_root: Path
    mail_user: str
    mail_group: str
    passwd_file: Path
    passwd_group: str

    @classmethod
    def for_config(cls, config: Config) -> DovecotSetup:
        mail_root, state_dir = Path(config.mail_root), Path(config.state.dir)
        owned = next(path for path in (mail_root, state_dir, *state_dir.parents) if path.exists())
        owner = owned.stat()
        return cls(
            state_dir=Path(config.state.dir),
            mail_root=mail_root,
            mail_user=config.mailbox.dovecot_mail_user or _user_name(owner.st_uid),
            mail_group=config.mailbox.dovecot_mail_group or _group_name(owner.st_gid),
            passwd_file=Path(config.dovecot_passwd_file),
            passwd_group=config.mailbox.dovecot_group,
        )


def problems(setup: DovecotSetup) -> list[str]:
    """One line per assumption of the printed config that does not hold yet."""
    return [*_mail_user_problems(setup), *_auth_problems(setup)]


def _mail_user_problems(setup: DovecotSetup) -> list[str]:
    choose = "or set [mailbox] dovecot_mail_user"
    try:
        # A uid without a name (a state directory made in a container) is looked up as such.
        name = setup.mail_user
        user = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return [
            f"user {setup.mail_user} does not exist: create it (useradd --system --shell "
            f"/usr/sbin/nologin --home-dir {setup.state_dir} {setup.mail_user}) and give it "
            f"the state (chown -R {setup.mail_user}: {setup.state_dir}), {choose}"
        ]
    found = []
    if user.pw_uid == 0:
        found.append(
            "the Maildirs belong to root, and Dovecot never reads mail as root: create a user "
            "(useradd --system --shell /usr/sbin/nologin --home-dir "
            f"{setup.state_dir} postroom, as systemd/postroom.sysusers does), give it the "
            f"state (chown -R postroom: {setup.state_dir}) and run postroom as it, {choose}"
        )
    elif user.pw_uid < FIRST_VALID_UID:
        found.append(
            f"uid {user.pw_uid} of {setup.mail_user} is below Dovecot's first_valid_uid "
            f"({FIRST_VALID_UID}): add `first_valid_uid = {user.pw_uid}` to this file"
        )
    try:
        group = setup.mail_group
        grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except KeyError:
        found.append(
            f"group {setup.mail_group} does not exist: create it (groupadd --system "
            f"{setup.mail_group}) or set [mailbox] dovecot_mail_group"
        )
    blocked = _blocker(setup.mail_root, user, _READ | _WRITE | _SEARCH)
    if user.pw_uid != 0 and blocked:
        found.append(
            f"{setup.mail_user} cannot use the Maildirs under {setup.mail_root}: {blocked}"
        )
    return found


def _auth_problems(setup: DovecotSetup) -> list[str]:
    try:
        auth = pwd.getpwnam(AUTH_USER)
    except KeyError:
        return [f"no user {AUTH_USER}: install Dovecot (Debian: apt-get install dovecot-imapd)"]
    writer = _user_name(os.geteuid())  # whoever runs the CLI rewrites the file
    move = (
        f"as root: install -d -o {writer} -g {setup.passwd_group} -m 2750 {SUGGESTED_DIRECTORY}"
        f'; then set [mailbox] dovecot_passwd_file = "{SUGGESTED_DIRECTORY}/passwd" and run '
        "`postroom dovecot passwd`"
    )
    blocked = _blocker(setup.passwd_file.parent, auth, _SEARCH)
    if blocked:
        return [
            f"Dovecot's auth process (user {AUTH_USER}) cannot reach {setup.passwd_file}: "
            f"{blocked}; {move}"
        ]
    if not setup.passwd_file.exists():
        return [f"{setup.passwd_file} does not exist yet: run `postroom dovecot passwd`"]
    blocked = _blocker(setup.passwd_file, auth, _READ, parents=False)
    if blocked:
        return [
            f"Dovecot's auth process (user {AUTH_USER}) cannot read {setup.passwd_file}: "
            f"{blocked}; as root: chgrp {setup.passwd_group} {setup.passwd_file}, or {move}"
        ]
    return []


def _blocker(path: Path, user: pwd.struct_passwd, wanted: int, *, parents: bool = True) -> str:
    """Why `user` cannot search every directory above `path` and have `wanted` on
    `path` itself (if it exists), or "" when nothing stands in the way."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    above = [directory for directory in reversed(path.parents) if directory.exists()]
    checks = [(directory, _SEARCH) for directory in above] if parents else []
    if path.exists():
        checks.append((path, wanted))
    for checked, bits in checks:
        status = checked.stat()
        if not _allows(status, user.pw_uid, groups, bits):
            return (
                f"{checked} is {status.st_mode & 0o7777:04o} "
                f"{_user_name(status.st_uid)}:{_group_name(status.st_gid)}"
            )
    return ""


def _allows(status: os.stat_result, uid: int, groups: set[int], bits: int) -> bool:
    if uid == 0:
        return True
    if status.st_uid == uid:
        granted = status.st_mode >> 6
    elif status.st_gid in groups:
        granted = status.st_mode >> 3
    else:
        granted = status.st_mode
    return granted & bits == bits


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
