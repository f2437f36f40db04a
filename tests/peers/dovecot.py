"""A private Dovecot (not the system's) serving IMAP on loopback: the mailbox reader peer.

Contract: `with DovecotServer() as dovecot:` makes a private directory under
the system temp dir with a complete dovecot.conf (the peer's own settings
followed by `postroom.mailbox.dovecot.render_config(...)`, so the config
postroom ships is the one under test), an empty passwd-file, a mail root and
Dovecot's base_dir, state_dir and log inside it; runs `dovecot -F -c CONF` as a
child process in its own process group; and returns once the IMAP greeting
arrives on `address`:`port` (bounded wait). The test then builds Maildirs
under `mail_root`, gives them to the mail user with `hand_over(path)` and
writes `passwd_file` with `write_passwd_file(..., group=AUTH_GROUP)`; Dovecot
re-reads the file when it changes. On exit the master gets TERM (then KILL,
bounded), anything left in its process group is killed, and the directory is
removed. A missing `dovecot` binary, a non-root caller or a server that does
not come up raises `DovecotError`: flow tests fail, never skip.

Test-only settings, all safe because the traffic never leaves loopback:
`listen` and the IMAP listener on 127.0.0.1 only, the imaps listener off,
`ssl = no` and `disable_plaintext_auth = no` (plain LOGIN without TLS), and
`auth_failure_delay = 0` and no anvil auth penalty, so that a refused password
costs no test time.

Root and uids: the tests run as root, and Dovecot's master must stay root to
switch users; but Dovecot refuses mail access as uid 0 (below
`first_valid_uid`, 500 by default), and lowering `first_valid_uid` to 0 would
run IMAP processes parsing client input as root. Instead the mail processes
run as `nobody:nogroup` (uid 65534, accepted by the defaults) — the role the
dedicated `vmail` user has in production — and `hand_over` chowns each Maildir
to it. Hence the private directory is mode 0755 and must sit in a directory
`nobody` can traverse (pytest's tmp_path, under the 0700 /tmp/pytest-of-root,
is not). The auth process runs as the `dovecot` user, so the passwd-file is
group `dovecot`, mode 0640, exactly as in production. Login processes run as
Debian's `dovenull`. Needs the Debian package dovecot-imapd.

Untrusted input: none (our own config; IMAP comes from the test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from tests.peers.lifecycle import Peer, stop_process

from postroom.mailbox.dovecot import render_config, write_passwd_file

DOVECOT = "/usr/sbin/dovecot"
AUTH_GROUP = "dovecot"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PROBE_TIMEOUT_S = 0.5
_POLL_INTERVAL_S = 0.05


class DovecotError(RuntimeError):
    """Dovecot is missing, we are not root, or the instance did not start."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class DovecotServer(Peer):
    """A private Dovecot: IMAP on `address`:`port`, users from `passwd_file`."""

    def __init__(
        self,
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        mail_user: str = "nobody",
        mail_group: str = "nogroup",
        quota: bool = True,
    ) -> None:
        self.address = address
        self.port = port if port is not None else _free_port(address)
        self.mail_user = mail_user
        self.mail_group = mail_group
        self.quota = quota
        self._dovecot = shutil.which("dovecot") or (DOVECOT if Path(DOVECOT).exists() else None)
        self._directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise DovecotError("Dovecot is not running")
        return self._directory

    @property
    def passwd_file(self) -> Path:
        return self.directory / "passwd"

    @property
    def mail_root(self) -> Path:
        return self.directory / "mail"

    @property
    def config_file(self) -> Path:
        return self.directory / "dovecot.conf"

    def start(self) -> DovecotServer:
        if self._dovecot is None:
            raise DovecotError("dovecot not found: install the Debian package 'dovecot-imapd'")
        if os.geteuid() != 0:
            raise DovecotError("DovecotServer needs root (the master switches to the mail user)")
        self._directory = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
        try:
            self._prepare()
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def stop(self) -> None:
        self._stop()

    def hand_over(self, path: Path) -> None:
        """Give `path` and everything under it to the mail user, as delivery would."""
        for root, directories, files in os.walk(path):
            for name in [*directories, *files]:
                shutil.chown(Path(root) / name, self.mail_user, self.mail_group)
        shutil.chown(path, self.mail_user, self.mail_group)

    def log(self) -> str:
        """Dovecot's log and output so far (for failure messages)."""
        parts = []
        for name in ("dovecot.log", "dovecot.stdout"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def _prepare(self) -> None:
        directory = self.directory
        # The mail processes (nobody) must reach the Maildirs below this directory.
        directory.chmod(0o755)
        for parent in directory.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise DovecotError(f"{parent} is not traversable by {self.mail_user}")
        self.mail_root.mkdir(mode=0o755)
        write_passwd_file(self.passwd_file, [], group=AUTH_GROUP)
        rendered = render_config(
            passwd_file=str(self.passwd_file),
            mail_root=str(self.mail_root),
            mail_user=self.mail_user,
            mail_group=self.mail_group,
            listen=self.address,
            imap_port=self.port,
            quota=self.quota,
        )
        header = f"""\
# Private test instance (tests/peers/dovecot.py); never the system's Dovecot.
protocols = imap
listen = {self.address}
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
# Loopback-only test traffic: no TLS, so plain LOGIN must be allowed without it.
ssl = no
disable_plaintext_auth = no
# A refused password would otherwise cost test time: 2 s of auth_failure_delay,
# then 2-15 s of per-IP auth penalty, which mode 0 turns off by not creating
# anvil's penalty socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imaps {{
    port = 0
  }}
}}

"""
        self.config_file.write_text(header + rendered)

    def _start(self) -> None:
        directory = self.directory
        with (directory / "dovecot.stdout").open("wb") as output:
            self._process = subprocess.Popen(
                [str(self._dovecot), "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
                # Own process group: the master forks auth, login and imap
                # processes, and stopping must reach every one of them.
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._greets():
            if self._process.poll() is not None:
                raise DovecotError(f"dovecot exited with {self._process.returncode}:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise DovecotError(
                    f"no IMAP greeting on {self.address}:{self.port} within "
                    f"{START_TIMEOUT_S}s:\n{self.log()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(
                (self.address, self.port), timeout=_PROBE_TIMEOUT_S
            ) as connection:
                return connection.recv(256).startswith(b"* OK")
        except OSError:
            return False

    def _stop(self) -> None:
        process, self._process = self._process, None
        try:
            if process is not None:
                stop_process(process, STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)  # any child left behind
        finally:
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None
