"""A real, throw-away PostgreSQL server for tests and benchmarks.

Contract: `with PostgresServer() as pg:` creates a temp cluster (initdb, trust
auth, superuser `postgres`), starts it listening only on 127.0.0.1 at a free
port and on a Unix socket inside the temp dir, waits (bounded) until
`pg_isready` answers, creates the database `postroom_test`, and exposes
`pg.url` (SQLAlchemy, psycopg 3 driver) and `pg.libpq_url`; `pg.new_database(prefix)`
makes another, empty one and returns its URL. On exit it stops the
server with `pg_ctl stop -m fast` (then `immediate`) and deletes the cluster.

Privileges: initdb and postgres refuse to run as root. As root, every server
command runs as the system user `postgres` through `runuser` (util-linux,
present on Debian 12) or `setpriv`; as any other user, directly.

Binaries: $POSTROOM_PG_BINDIR, else `pg_config --bindir` when it holds initdb,
else the newest /usr/lib/postgresql/*/bin. None found → `PostgresUnavailable`
(tests fail, never skip: `apt-get install postgresql`).

Untrusted input: none.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.peers.lifecycle import Peer

SERVER_USER = "postgres"
_COMMAND_TIMEOUT_S = 60.0
_START_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries or the `postgres` user are missing, or the server did not start."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl, pg_isready and createdb."""
    override = os.environ.get("POSTROOM_PG_BINDIR")
    if override:
        if (Path(override) / "initdb").exists():
            return Path(override)
        raise PostgresUnavailable(f"POSTROOM_PG_BINDIR={override} has no initdb")
    pg_config = shutil.which("pg_config")
    if pg_config:
        # Debian's pg_config (libpq-dev) may report /usr/bin, which has no initdb.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            reported = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if reported and (Path(reported) / "initdb").exists():
                return Path(reported)
    candidates = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if re.fullmatch(r"\d+", path.parent.parent.name)
    ]
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (no initdb in pg_config --bindir or "
            "/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    return max(candidates, key=lambda bindir: int(bindir.parent.name))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class PostgresServer(Peer):
    """A private PostgreSQL cluster; use as a context manager."""

    def __init__(
        self,
        *,
        database: str = "postroom_test",
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.database = database
        self.host = host
        self.requested_port = port
        self.port = 0
        self.start_timeout_s = start_timeout_s
        self.bindir = find_bindir()
        self.base_dir: Path | None = None
        self._running = False

    # Paths inside the temp dir, valid after __enter__.
    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base()

    @property
    def log_file(self) -> Path:
        return self._base() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL: postgresql+psycopg://postgres@127.0.0.1:PORT/postroom_test."""
        return f"postgresql+psycopg://{SERVER_USER}@{self.host}:{self.port}/{self.database}"

    @property
    def libpq_url(self) -> str:
        """The same server as a libpq URI (psql, psycopg.connect)."""
        return f"postgresql://{SERVER_USER}@{self.host}:{self.port}/{self.database}"

    def new_database(self, prefix: str) -> str:
        """A fresh, empty database `PREFIX_<random>` on this server; its SQLAlchemy URL.
        For a module whose fixtures (a project "acme", a linked domain) must not meet
        another module's in the shared database."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._run(
            "createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", SERVER_USER, name
        )
        return f"postgresql+psycopg://{SERVER_USER}@{self.host}:{self.port}/{name}"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("PostgresServer is not started")
        return self.base_dir

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", SERVER_USER, "--", *argv]
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [
                setpriv,
                f"--reuid={SERVER_USER}",
                f"--regid={SERVER_USER}",
                "--init-groups",
                "--",
                *argv,
            ]
        raise PostgresUnavailable("running as root but neither runuser nor setpriv exists")

    def _run(self, tool: str, *args: str, timeout_s: float = _COMMAND_TIMEOUT_S) -> str:
        argv = self._as_server_user([str(self.bindir / tool), *args])
        # cwd in the temp dir: the server user may not be allowed to enter ours.
        result = subprocess.run(
            argv,
            cwd=self._base(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}"
                f"{self._log_tail()}"
            )
        return result.stdout

    def _log_tail(self) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- postgres.log (tail) ---\n" + "\n".join(text.splitlines()[-30:])

    def start(self) -> PostgresServer:
        self.base_dir = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
        try:
            if os.geteuid() == 0:
                try:
                    server_user = pwd.getpwnam(SERVER_USER)
                except KeyError as error:
                    raise PostgresUnavailable(f"no system user {SERVER_USER!r}") from error
                os.chown(self.base_dir, server_user.pw_uid, server_user.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                SERVER_USER,
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            )
            self._start_server()
            self._run(
                "createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", SERVER_USER,
                self.database,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        # A free port can be taken between probing and binding: retry a few times.
        last_error: PostgresUnavailable | None = None
        for _attempt in range(_START_ATTEMPTS):
            self.port = self.requested_port or _free_port(self.host)
            options = " ".join(
                [
                    f"-c listen_addresses={self.host}",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.socket_dir}",
                    "-c fsync=on",
                ]
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                    "-W", "start",
                )  # fmt: skip
                self._running = True
                self._wait_until_ready()
                return
            except PostgresUnavailable as error:
                last_error = error
                self._stop_server()
                if self.requested_port:
                    break
        assert last_error is not None
        raise last_error

    def _wait_until_ready(self) -> None:
        started_at = time.monotonic()
        deadline = started_at + self.start_timeout_s
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", self.host, "-p", str(self.port),
                 "-U", SERVER_USER, "-t", "2"],
                capture_output=True,
                timeout=10,
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            postmaster_gone = not (self.data_dir / "postmaster.pid").exists()
            if postmaster_gone and time.monotonic() - started_at > 2.0:
                break  # it died (e.g. port taken): do not wait the full timeout
            time.sleep(0.1)
        raise PostgresUnavailable(
            f"PostgreSQL not ready on {self.host}:{self.port} within "
            f"{self.start_timeout_s} s{self._log_tail()}"
        )

    def _stop_server(self) -> None:
        if not self._running:
            return
        for mode in ("fast", "immediate"):
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")
                break
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                continue
        self._running = False

    def stop(self) -> None:
        if self.base_dir is None:
            return
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
