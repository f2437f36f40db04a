"""A private Postfix instance (not the system's) relaying to a sink: the benchmark peer.

Contract: `with PostfixRelay(listen="127.0.0.1:0", relayhost="[127.0.0.10]:PORT") as relay:`
writes its own main.cf and master.cf into a fresh directory (or `config_dir`),
with the queue, data directory and log file inside it, runs `postfix -c DIR
check` (which creates the queue directories with Postfix's own ownership and
modes), then `postfix -c DIR start`, and waits (bounded) until smtpd accepts
connections on `listen`. It accepts mail from 127.0.0.0/8 only, delivers
nothing locally, and relays everything to `relayhost`. On exit: `postfix -c DIR
stop`, a bounded wait for the master to go, `postfix -c DIR abort` if it did
not, then the directory is removed (unless it was given).

Isolation from the system's Postfix: `postfix -c DIR` exports MAIL_CONFIG=DIR
to every daemon, and our main.cf names its own queue_directory, data_directory
and maillog_file; only the read-only program directories (/usr/sbin,
/usr/lib/postfix, meta_directory /etc/postfix) are shared. /etc/postfix is
not modified: `alternate_config_directories` only restricts the set-gid
programs (postdrop, postqueue) run by a non-root user; root starting the
instance and mail arriving over SMTP never need it.

Needs root (Postfix's master runs as root and its daemons drop to `postfix`)
and the Debian package postfix. The directory and its parents must be
traversable by the `postfix` user, so the default lives under /tmp (pytest's
tmp_path is not: /tmp/pytest-of-root is 0700).

Untrusted input: none (our own config; mail comes from the test).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from tests.peers.lifecycle import Peer

POSTFIX = "/usr/sbin/postfix"
_COMMAND_TIMEOUT_S = 60.0
_POLL_INTERVAL_S = 0.1

# Stock services (Debian's master.cf), without chroot: the chroot would need a
# copy of /etc files inside the queue directory, and nothing here is exposed.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixUnavailable(RuntimeError):
    """Postfix is missing, we are not root, or the instance did not start."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _check_traversable(directory: Path) -> None:
    """Postfix daemons run as `postfix` and chdir into the queue: every parent must let them."""
    for parent in [directory, *directory.parents]:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise PostfixUnavailable(
                f"{parent} is not traversable by the postfix user (mode "
                f"{stat.filemode(parent.stat().st_mode)}); use a directory under /tmp"
            )


class PostfixRelay(Peer):
    """A private Postfix: smtpd on `listen`, relaying all mail to `relayhost`."""

    def __init__(
        self,
        config_dir: Path | None = None,
        *,
        listen: str = "127.0.0.1:0",
        relayhost: str,
        myhostname: str = "relay.postfix.test",
        smtp_bind_address: str | None = None,
        main_cf_overrides: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 20.0,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host
        self.port = int(port)
        self.relayhost = relayhost
        self.myhostname = myhostname
        self.smtp_bind_address = smtp_bind_address
        self.main_cf_overrides = dict(main_cf_overrides or {})
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.requested_dir = config_dir
        self.config_dir: Path | None = None
        self._started = False

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _dir(self) -> Path:
        if self.config_dir is None:
            raise RuntimeError("PostfixRelay is not started")
        return self.config_dir

    @property
    def queue_dir(self) -> Path:
        return self._dir() / "queue"

    @property
    def log_file(self) -> Path:
        return self._dir() / "maillog"

    def main_cf(self) -> str:
        directory = self._dir()
        settings = {
            "compatibility_level": "3.6",
            "config_directory": str(directory),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(directory / "data"),
            "maillog_file": str(self.log_file),
            # postlogd only writes under these prefixes.
            "maillog_file_prefixes": str(directory),
            "myhostname": self.myhostname,
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery disabled",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relayhost": self.relayhost,
            # Loopback only: no DNS at all (the relayhost is a bracketed IP).
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": str(64 * 1024 * 1024),
        }
        if self.smtp_bind_address:
            settings["smtp_bind_address"] = self.smtp_bind_address
        settings.update(self.main_cf_overrides)
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    def master_cf(self) -> str:
        # Only the given address:port: the instance must not take port 25 on every address.
        return f"{self.listen} inet n - n - - smtpd\n{_MASTER_SERVICES}"

    def _postfix(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [POSTFIX, "-c", str(self._dir()), *command],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostfixUnavailable(
                f"postfix {' '.join(command)} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""
        return "\n--- maillog (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _master_alive(self) -> bool:
        pid = self.master_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> Self:
        if not os.access(POSTFIX, os.X_OK):
            raise PostfixUnavailable(f"{POSTFIX} not found: apt-get install postfix")
        if os.geteuid() != 0:
            raise PostfixUnavailable("a private Postfix instance must be started as root")
        if self.requested_dir is not None:
            self.requested_dir.mkdir(parents=True, exist_ok=True)
            self.config_dir = self.requested_dir.resolve()
        else:
            self.config_dir = Path(tempfile.mkdtemp(prefix="postroom-postfix-"))
        try:
            self.config_dir.chmod(0o755)
            _check_traversable(self.config_dir)
            if self.port == 0:
                self.port = _free_port(self.host)
            # The queue root belongs to root (Postfix's layout); data to postfix.
            self.queue_dir.mkdir(mode=0o755, exist_ok=True)
            data_dir = self.config_dir / "data"
            data_dir.mkdir(mode=0o700, exist_ok=True)
            postfix_user = pwd.getpwnam("postfix")
            os.chown(data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
            (self.config_dir / "main.cf").write_text(self.main_cf())
            (self.config_dir / "master.cf").write_text(self.master_cf())
            # `check` runs post-install create-missing: the queue and data
            # directories appear with Postfix's own owners and modes.
            self._postfix("check")
            self._postfix("start")
            self._started = True
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(_POLL_INTERVAL_S)
        raise PostfixUnavailable(
            f"private postfix not listening on {self.listen} after "
            f"{self.start_timeout_s} s{self.log_tail()}"
        )

    def queued_message_count(self) -> int:
        """Messages still in this instance's queue (incoming, active, deferred, hold)."""
        return sum(
            1
            for name in ("incoming", "active", "deferred", "hold", "maildrop")
            for path in (self.queue_dir / name).rglob("*")
            if path.is_file()
        )

    def flush(self) -> None:
        """Retry deferred mail now (postqueue -f against this instance)."""
        self._postfix("flush")

    def stop(self) -> None:
        if self.config_dir is None:
            return
        try:
            if self._started:
                self._postfix("stop", check=False)
                deadline = time.monotonic() + self.stop_timeout_s
                while self._master_alive() and time.monotonic() < deadline:
                    time.sleep(_POLL_INTERVAL_S)
                if self._master_alive():
                    self._postfix("abort", check=False)
                    deadline = time.monotonic() + 5.0
                    while self._master_alive() and time.monotonic() < deadline:
                        time.sleep(_POLL_INTERVAL_S)
                self._started = False
        finally:
            if self.requested_dir is None:
                shutil.rmtree(self.config_dir, ignore_errors=True)
            self.config_dir = None
