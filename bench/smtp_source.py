"""Postfix's `smtp-source` as the relay bench's load generator (the issue's workload).

`SmtpSource(...).start()` (after a no-op `prepare()`) runs

    /usr/sbin/smtp-source -c -s CLIENTS -m MESSAGES -l SIZE [-d] -f SENDER -t RECIPIENT
                          -M client.bench.test HOST:PORT

`-s` parallel sessions, `-m` messages in all, `-l` payload bytes (80-byte lines
of X after smtp-source's own From, To, Date and Message-Id header lines: the
message is about 140 bytes longer), `-d` keeps each session's connection for
the next message (without it every message has its own connection: connect,
banner, HELO, MAIL, RCPT, DATA, QUIT), `-M` the HELO name and Message-Id
domain. No `-N`: every recipient is RECIPIENT. smtp-source speaks HELO, no
pipelining, no TLS and no AUTH (bench/submission.py keeps relay.py's Python
load generator for those).

Completion: with `-c` smtp-source writes a running count of completed DATA
commands to stdout ("1\\r2\\r...N\\r", then "\\n" at the end); a reader thread
records the count and when it last grew (the last 250 to DATA). Without `-A`,
any unexpected reply is fatal: smtp-source exits non-zero with its reason on
stderr. `poll()` reaps it with wait4, so its CPU (rusage) is known.
`report()` returns the fields relay.py's `_loadgen` reports: start,
last_accept, accepted, errors, first_errors, cpu_s. Every wait is bounded
(`wait(timeout_s)`); the process is killed if the caller gives up.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

SMTP_SOURCE = "/usr/sbin/smtp-source"
HELO_NAME = "client.bench.test"
MAX_ERROR_CHARS = 2000


class SmtpSource:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        messages: int,
        clients: int,
        size: int,
        new_connections: bool,
        sender: str,
        recipient: str,
    ) -> None:
        self.command = [
            SMTP_SOURCE, "-c", "-s", str(clients), "-m", str(messages), "-l", str(size),
            *([] if new_connections else ["-d"]),
            "-f", sender, "-t", recipient, "-M", HELO_NAME, f"{host}:{port}",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.start_time = 0.0
        self.accepted = 0
        self.last_accept = 0.0
        self.cpu_s = 0.0
        self._reader: threading.Thread | None = None

    def prepare(self) -> None:
        """Nothing before the clock: smtp-source connects in the timed part, as in the issue."""

    def start(self) -> float:
        """Start it; the monotonic time of the start (the first injection follows)."""
        if not os.access(SMTP_SOURCE, os.X_OK):
            raise RuntimeError(f"{SMTP_SOURCE} not found: apt-get install postfix")
        self.start_time = self.last_accept = time.monotonic()
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._reader = threading.Thread(target=self._count, name="smtp-source counter")
        self._reader.start()
        return self.start_time

    def _count(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        pending = b""
        while chunk := os.read(self.process.stdout.fileno(), 4096):
            now = time.monotonic()
            *counts, pending = (pending + chunk).replace(b"\n", b"\r").split(b"\r")
            numbers = [int(count) for count in counts if count.strip().isdigit()]
            if numbers and numbers[-1] > self.accepted:
                self.accepted, self.last_accept = numbers[-1], now

    def poll(self) -> int | None:
        """Its exit status once it has exited (reaped here, with its CPU), else None."""
        assert self.process is not None
        if self.process.returncode is not None:
            return self.process.returncode
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode

    def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (status := self.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"smtp-source still running after {timeout_s} s")
            time.sleep(0.01)
        return status

    def report(self) -> dict[str, Any]:
        """After it exited: the load generator's report (see the module docstring)."""
        assert self.process is not None and self.process.stderr is not None
        assert self.process.returncode is not None and self._reader is not None
        self._reader.join(5)
        stderr = self.process.stderr.read().decode(errors="replace").strip()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        failed = self.process.returncode != 0
        detail = f"smtp-source exit {self.process.returncode}: {stderr[-MAX_ERROR_CHARS:]}"
        return {
            "start": self.start_time,
            "last_accept": self.last_accept,
            "accepted": self.accepted,
            "errors": 1 if failed else 0,
            "first_errors": [detail] if failed else [],
            "cpu_s": self.cpu_s,
        }

    def kill(self) -> None:
        if self.process is not None and self.poll() is None:
            self.process.kill()
            self.wait(5)
        if self._reader is not None:
            self._reader.join(5)
