"""`postroom dovecot config` says what it assumes and checks it on this machine (real users
root, nobody and dovecot, real directories and modes): `make run` as root gets the exact
steps (a mail user, a passwd-file Dovecot can reach) at the top of the output and on stderr;
a ready machine gets a config for the Maildirs' real owner; a value dovecot.conf cannot hold
is one line naming the config key."""

from __future__ import annotations

import grp
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.cli.main import main
from postroom.config import load_config
from postroom.mailbox.dovecot_checks import DovecotSetup, problems


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory the `dovecot` and `nobody` users can enter (pytest's tmp_path is not)."""
    directory = Path(tempfile.mkdtemp(prefix="postroom-checks-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def write_config(directory: Path, extra: str = "") -> Path:
    path = directory / "postroom.toml"
    path.write_text(f'[state]\ndir = "{directory}/state"\n{extra}')
    return path


def dovecot_config(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["-c", str(config), "dovecot", "config"])
    out, err = capsys.readouterr()
    return status, out, err


def test_make_run_as_root_is_told_exactly_what_to_do_first(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `make run` as root leaves: a 0750 root state directory with the Maildirs and
    the passwd-file inside. The config used to assume a `postroom` user silently."""
    config = write_config(world)
    assert main(["-c", str(config), "db", "upgrade"]) == 0
    assert main(["-c", str(config), "dovecot", "passwd"]) == 0
    status, out, err = dovecot_config(config, capsys)
    assert status == 0
    assert "default_fields = uid=root gid=root" in out  # what is, not a guessed `postroom`
    assert "# NOT READY on this machine" in out
    state = world / "state"
    header = " ".join(line.lstrip("# ") for line in out.split("passdb {")[0].splitlines())
    assert f"chown -R postroom: {state}" in header and "useradd --system" in header
    assert f"cannot reach {state}/dovecot/passwd: {state} is 0750 root:root" in header
    assert "install -d -o root -g dovecot -m 2750 /etc/dovecot/postroom" in header
    assert 'dovecot_passwd_file = "/etc/dovecot/postroom/passwd"' in header
    notes = err.splitlines()
    assert len(notes) == 2 and all(
        n.startswith("postroom: dovecot config: not ready: ") for n in notes
    )


def test_a_ready_machine_gets_the_maildirs_owner_and_no_notes(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, passwd_directory = world / "state", world / "dovecot"
    state.mkdir(mode=0o750)
    shutil.chown(state, "nobody", "nogroup")
    passwd_directory.mkdir()
    passwd_directory.chmod(0o2750)
    shutil.chown(passwd_directory, "root", "dovecot")
    config = write_config(world, f'[mailbox]\ndovecot_passwd_file = "{passwd_directory}/passwd"\n')
    assert main(["-c", str(config), "dovecot", "passwd"]) == 0
    assert (passwd_directory / "passwd").stat().st_gid == grp.getgrnam("dovecot").gr_gid
    status, out, err = dovecot_config(config, capsys)
    assert (status, err) == (0, "")
    assert "default_fields = uid=nobody gid=nogroup" in out
    assert "# Checked on this machine when generated: all of this holds." in out
    assert "NOT READY" not in out


def test_each_assumption_that_fails_has_its_note(world: Path) -> None:
    config = load_config(
        write_config(
            world,
            '[mailbox]\ndovecot_mail_user = "postroom-nobody-here"\n'
            f'dovecot_mail_group = "postroom-nogroup-here"\n'
            f'dovecot_passwd_file = "{world}/passwd"\n',
        )
    )
    setup = DovecotSetup.for_config(config)
    found = problems(setup)
    assert len(found) == 2
    assert found[0].startswith("user postroom-nobody-here does not exist: create it (useradd")
    assert found[1] == f"{world}/passwd does not exist yet: run `postroom dovecot passwd`"

    (world / "passwd").write_text("")
    (world / "passwd").chmod(0o600)
    nobody = DovecotSetup(
        state_dir=world,
        mail_root=world / "mail",
        mail_user="nobody",
        mail_group="postroom-nogroup-here",
        passwd_file=world / "passwd",
        passwd_group="dovecot",
    )
    group_note, unreadable = problems(nobody)
    assert group_note.startswith("group postroom-nogroup-here does not exist: create it")
    assert f"cannot read {world}/passwd: {world}/passwd is 0600 root:root" in unreadable
    assert f"chgrp dovecot {world}/passwd" in unreadable

    (world / "mail").mkdir(mode=0o700)
    low_uid = next(user for user in pwd.getpwall() if 0 < user.pw_uid < 500)
    below = DovecotSetup(world, world / "mail", low_uid.pw_name, "nogroup", world / "p", "x")
    uid_note, reach_note, _ = problems(below)
    assert f"add `first_valid_uid = {low_uid.pw_uid}` to this file" in uid_note
    assert f"cannot use the Maildirs under {world}/mail: {world}/mail is 0700 root:root" in (
        reach_note
    )


def test_a_value_dovecot_conf_cannot_hold_names_its_key(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(world, f'[mailbox]\nroot = "{world}/my mail"\n')
    status, out, err = dovecot_config(config, capsys)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and "[mailbox] root" in err and "contains ' '" in err
