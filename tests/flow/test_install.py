"""`make install` and `make uninstall` (tools/install.sh), as a packager and as a sysadmin.

Into a DESTDIR: the tree holds the virtualenv (and no module left over in build/ from an
earlier build), the /usr/bin symlink, the units, the docs and the config with their
modes; no file names the DESTDIR (shebangs, pyvenv.cfg and bytecode name /opt/postroom).
Then, in a private mount namespace where the DESTDIR's
/opt/postroom and /usr/bin/postroom appear at their real paths, the installed program
runs (`--help`, `config check` of the installed config, `config init` and `db upgrade`:
the migrations are shipped) and `systemd-analyze verify` accepts the installed unit with
its real ExecStart. `make uninstall DESTDIR=...` leaves only the config.

On the live system, inside a private mount namespace whose /etc, /usr and /opt are
overlays on scratch directories (the host is never changed) and whose /run/systemd is
empty (no systemd to reload): install creates the postroom user, makes /etc/postroom
0750 and the config 0640, both root:postroom; a second install (an upgrade) keeps an
edited config and replaces the virtualenv; uninstall removes the program and keeps the
config and the user.

Runs as root (mount namespaces, overlayfs), like CI. Each install takes some seconds:
pip installs from its cache.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/opt/postroom"
MAKE_TIMEOUT_S = 600


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # A make of its own, not a sub-make of `make test` (its flags and jobserver).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=MAKE_TIMEOUT_S, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["make", "-C", str(REPO), "--no-print-directory", *args])


def in_mount_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """`sh -eu -c script` in a private mount namespace: its mounts vanish with it."""
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-euc", script])


def facts(output: str) -> dict[str, str]:
    """`fact NAME VALUE` lines printed by a namespace script."""
    found = {}
    for line in output.splitlines():
        if line.startswith("fact "):
            _, name, *value = line.split(" ", 2)
            found[name] = value[0] if value else ""
    return found


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_install_into_a_destdir_then_uninstall(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    # A module deleted since an earlier build, still in setuptools' build/ (install builds
    # there, as the checkout is its build tree): it must not be installed.
    stale = REPO / "build" / "lib" / "postroom" / "deleted_since.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("STALE = True\n")
    make("install", f"DESTDIR={dest}")

    copies = {
        "usr/lib/systemd/system/postroom.service": "systemd/postroom.service",
        "usr/lib/sysusers.d/postroom.conf": "systemd/postroom.sysusers",
        "usr/lib/tmpfiles.d/postroom.conf": "systemd/postroom.tmpfiles",
        "usr/share/doc/postroom/README.md": "README.md",
        "usr/share/doc/postroom/postroom.toml": "config/postroom.toml",
        "etc/postroom/postroom.toml": "config/postroom.toml",
    }
    for installed, source in copies.items():
        assert (dest / installed).read_bytes() == (REPO / source).read_bytes(), installed
        expected_mode = 0o640 if installed.startswith("etc/") else 0o644
        assert mode(dest / installed) == expected_mode, installed
    assert mode(dest / "etc/postroom") == 0o750
    assert os.readlink(dest / "usr/bin/postroom") == f"{PREFIX}/bin/postroom"
    venv = dest / PREFIX.lstrip("/")
    assert (venv / "bin/postroom").read_text().startswith(f"#!{PREFIX}/bin/python\n")
    assert mode(venv / "bin/postroom") == 0o755
    assert "home = /usr/bin\n" in (venv / "pyvenv.cfg").read_text()  # the system interpreter
    [package] = venv.glob("lib/python3*/site-packages/postroom/__init__.py")
    assert mode(package) == 0o644  # readable by the service's user whatever root's umask
    assert not list(venv.glob("lib/python3*/site-packages/pip"))  # nothing but the app
    assert not list(venv.glob("lib/python3*/site-packages/postroom/deleted_since*"))
    assert sorted(p.name for p in (dest / "opt").iterdir()) == ["postroom"]  # no .new/.old
    staged = str(dest).encode()
    naming_destdir = [
        str(p)
        for p in venv.rglob("*")
        if p.is_file() and not p.is_symlink()
        if staged in p.read_bytes()
    ]
    assert naming_destdir == []

    work = tmp_path / "work"
    work.mkdir()
    d, w = shlex.quote(str(dest)), shlex.quote(str(work))
    ran = in_mount_namespace(
        f"""
        mount -t tmpfs tmpfs /opt
        mkdir {PREFIX}
        mount --bind {d}{PREFIX} {PREFIX}
        mount -t overlay overlay -o lowerdir={d}/usr/bin:/usr/bin /usr/bin
        /usr/bin/postroom --help
        /usr/bin/postroom config check -c {d}/etc/postroom/postroom.toml
        /usr/bin/postroom -c {w}/trial.toml config init --state-dir {w}/state
        /usr/bin/postroom -c {w}/trial.toml db upgrade
        systemd-analyze verify {d}/usr/lib/systemd/system/postroom.service > {w}/verify.log 2>&1
        """
    )
    assert "usage: postroom" in ran.stdout
    assert "postroom.toml: ok (hostname mail.example.com" in ran.stdout
    assert "database at revision" in ran.stdout
    # verify exits 0 even on unknown keys: any line about the unit is a complaint.
    verify_log = (work / "verify.log").read_text()
    assert [line for line in verify_log.splitlines() if "postroom" in line] == [], verify_log

    make("uninstall", f"DESTDIR={dest}")
    assert files_under(dest) == {"etc/postroom/postroom.toml"}


LIVE_SCRIPT = """
fact() {{ echo "fact $1 $2"; }}
for dir in etc usr opt; do
    mkdir -p {scratch}/$dir.upper {scratch}/$dir.work
    mount -t overlay overlay \
        -o lowerdir=/$dir,upperdir={scratch}/$dir.upper,workdir={scratch}/$dir.work /$dir
done
[ ! -d /run/systemd ] || mount -t tmpfs tmpfs /run/systemd

make -C {repo} --no-print-directory install
fact user "$(getent passwd postroom | cut -d: -f1,6,7)"
fact confdir "$(stat -c '%a %U:%G' /etc/postroom)"
fact config "$(stat -c '%a %U:%G' /etc/postroom/postroom.toml)"
fact help "$(postroom --help | head -n 1)"

echo '# edited by the operator' >> /etc/postroom/postroom.toml
touch {prefix}/left-by-the-old-version
make -C {repo} --no-print-directory install
fact config_kept "$(tail -n 1 /etc/postroom/postroom.toml)"
fact old_venv "$(ls {prefix}/left-by-the-old-version 2>/dev/null || echo replaced)"
fact staging "$(ls -d {prefix}.new {prefix}.old 2>/dev/null || echo none)"

make -C {repo} --no-print-directory uninstall
fact removed "$(ls -d /usr/bin/postroom {prefix} /usr/lib/systemd/system/postroom.service \
    2>/dev/null || echo all)"
fact config_after "$(tail -n 1 /etc/postroom/postroom.toml)"
fact user_after "$(getent passwd postroom | cut -d: -f1)"
"""


def test_live_install_upgrade_and_uninstall_in_a_private_namespace(tmp_path: Path) -> None:
    script = LIVE_SCRIPT.format(
        scratch=shlex.quote(str(tmp_path)), repo=shlex.quote(str(REPO)), prefix=PREFIX
    )
    found = facts(in_mount_namespace(script).stdout)

    assert found["user"] == "postroom:/var/lib/postroom:/usr/sbin/nologin"
    assert found["confdir"] == "750 root:postroom"
    assert found["config"] == "640 root:postroom"
    assert found["help"].startswith("usage: postroom")
    assert found["config_kept"] == "# edited by the operator"
    assert found["old_venv"] == "replaced"
    assert found["staging"] == "none"
    assert found["removed"] == "all"
    assert found["config_after"] == "# edited by the operator"
    assert found["user_after"] == "postroom"
