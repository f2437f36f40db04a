"""A real authoritative DNS server for flow tests: NSD on loopback.

`NsdServer(zones)` writes each zone (BIND-format text) to a private directory,
checks it with `named-checkzone`, writes an NSD config that binds only the
given loopback address and a free port, and runs `nsd -d` (foreground) as a
child process in its own process group. `__enter__` returns once every zone
answers a SOA query (bounded wait); `__exit__` stops it. A missing `nsd` or
`named-checkzone`, a bad zone or a server that does not come up raises
`NsdError`: flow tests fail, never skip.

The server runs as the current user without chroot (`username: ""`), with the
zone database disabled (`database: ""`, NSD 4.6) and every state file (pid,
xfrd state, zone list, log) inside the private directory. No network beyond
the chosen loopback address is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
from tests.peers.lifecycle import Peer, stop_process

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PROBE_TIMEOUT_S = 0.3

# NSD's main process can exit before its server child, which is then
# re-parented to PID 1; in a container whose init does not reap, that child
# stays a zombie forever. This wrapper becomes a child subreaper
# (PR_SET_CHILD_SUBREAPER), runs nsd, forwards TERM/HUP/INT to it, and after it
# exits reaps whatever it left behind (bounded), then exits with nsd's status.
_REAPER = """
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
child = subprocess.Popen(sys.argv[1:])
for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(signum, lambda number, frame: child.send_signal(number))
status = child.wait()
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        time.sleep(0.02)
sys.exit(status if status >= 0 else 128 - status)
"""


class NsdError(RuntimeError):
    """NSD or named-checkzone is missing, a zone is invalid, or the server did not start."""


def make_zone(origin: str, records: list[str], ttl: int = 60, *, serial: int = 1) -> str:
    """Zone text for `origin`: SOA (negative TTL = `ttl`), NS ns.<origin> with an
    A record on 127.0.0.1, then `records` (lines relative to the origin)."""
    origin = origin.rstrip(".") + "."
    head = [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ IN SOA ns.{origin} hostmaster.{origin} {serial} 3600 600 86400 {ttl}",
        f"@ IN NS ns.{origin}",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join([*head, *records, ""])


def free_port(address: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port free for both UDP and TCP on `address` (probed, then released)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise NsdError(f"no port free for both UDP and TCP on {address} after {attempts} tries")


def _zone_serial(origin: str, text: str) -> int:
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    soa = zone.find_rdataset(origin, "SOA")
    return int(soa[0].serial)


class NsdServer(Peer):
    """NSD serving `zones` (zone name → zone text) on `address`:`port` (see module docstring)."""

    def __init__(
        self, zones: dict[str, str], address: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.zones = {name.rstrip(".").lower(): text for name, text in zones.items()}
        self.address = address
        self.port = port if port is not None else free_port(address)
        self._nsd = shutil.which("nsd") or _sbin("nsd")
        self._checkzone = shutil.which("named-checkzone") or _sbin("named-checkzone")
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def nameserver(self) -> str:
        """The server as a `[dns] nameservers` entry: "ADDR:PORT"."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def directory(self) -> Path:
        if self._workdir is None:
            raise NsdError("NSD is not running")
        return Path(self._workdir.name)

    def start(self) -> NsdServer:
        if self._nsd is None:
            raise NsdError("nsd not found: install the Debian package 'nsd'")
        if self._checkzone is None:
            raise NsdError("named-checkzone not found: install the Debian package 'bind9-utils'")
        self._workdir = tempfile.TemporaryDirectory(prefix="postroom-nsd-")
        try:
            self._write_zones(self.zones)
            self._write_config()
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def stop(self) -> None:
        self._stop()

    def reload(self, zones: dict[str, str]) -> None:
        """Serve new zone texts. Same zone names: rewrite the files and SIGHUP,
        then wait until each zone serves its new SOA serial (so bump serials).
        Different names: restart NSD on the same port."""
        zones = {name.rstrip(".").lower(): text for name, text in zones.items()}
        if set(zones) != set(self.zones):
            self._stop_process()
            self.zones = zones
            self._write_zones(zones)
            self._write_config()
            self._start()
            return
        self.zones = zones
        self._write_zones(zones)
        process = self._require_process()
        process.send_signal(signal.SIGHUP)
        self._wait_ready({name: _zone_serial(name + ".", text) for name, text in zones.items()})

    def log(self) -> str:
        """NSD's log so far (for failure messages)."""
        path = self.directory / "nsd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_zones(self, zones: dict[str, str]) -> None:
        for name, text in zones.items():
            path = self.directory / f"{name}.zone"
            path.write_text(text)
            # NSD reloads a zone only when its file's mtime changed; a rewrite
            # within the same clock tick must still count as a change.
            stamp = time.time_ns() + 1_000_000_000
            os.utime(path, ns=(stamp, stamp))
            check = subprocess.run(
                [str(self._checkzone), name, str(path)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if check.returncode != 0:
                raise NsdError(
                    f"named-checkzone refused zone {name}:\n{check.stdout}{check.stderr}\n{text}"
                )

    def _write_config(self) -> None:
        directory = self.directory
        (directory / "xfr").mkdir(exist_ok=True)
        lines = [
            "server:",
            f"    ip-address: {self.address}@{self.port}",
            f"    port: {self.port}",
            f"    do-ip4: {'no' if ':' in self.address else 'yes'}",
            f"    do-ip6: {'yes' if ':' in self.address else 'no'}",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{directory}"',
            '    database: ""',
            f'    pidfile: "{directory}/nsd.pid"',
            f'    xfrdfile: "{directory}/xfrd.state"',
            f'    zonelistfile: "{directory}/zone.list"',
            f'    xfrdir: "{directory}/xfr"',
            f'    logfile: "{directory}/nsd.log"',
            "    server-count: 1",
            "    verbosity: 1",
            "    hide-version: yes",
            "    reuseport: no",
            "remote-control:",
            "    control-enable: no",
        ]
        for name in sorted(self.zones):
            lines += ["zone:", f'    name: "{name}"', f'    zonefile: "{name}.zone"']
        (directory / "nsd.conf").write_text("\n".join(lines) + "\n")

    def _start(self) -> None:
        directory = self.directory
        with (directory / "nsd.stdout").open("wb") as output:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _REAPER,
                    str(self._nsd),
                    "-d",
                    "-c",
                    f"{directory}/nsd.conf",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
                # Own process group: NSD forks xfrd and server children, and
                # stopping must reach all of them.
                start_new_session=True,
            )
        self._wait_ready({name: None for name in self.zones})

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise NsdError("NSD is not running")
        return self._process

    def _wait_ready(self, serials: dict[str, int | None]) -> None:
        process = self._require_process()
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = dict(serials)
        while pending:
            if process.poll() is not None:
                raise NsdError(f"nsd exited with {process.returncode}:\n{self._output()}")
            if time.monotonic() >= deadline:
                raise NsdError(
                    f"nsd did not serve {sorted(pending)} within {START_TIMEOUT_S}s:\n"
                    f"{self._output()}"
                )
            for name, serial in list(pending.items()):
                if self._serves(name, serial):
                    del pending[name]
            if pending:
                time.sleep(0.05)

    def _serves(self, zone: str, serial: int | None) -> bool:
        query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        try:
            response = dns.query.udp(query, self.address, timeout=_PROBE_TIMEOUT_S, port=self.port)
        except (OSError, dns.exception.DNSException):
            return False
        if response.rcode() != dns.rcode.NOERROR or not response.answer:
            return False
        return serial is None or int(response.answer[0][0].serial) == serial

    def _output(self) -> str:
        path = self.directory / "nsd.stdout"
        stdout = path.read_text(errors="replace") if path.exists() else ""
        return f"{stdout}\n{self.log()}"

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # SIGTERM to the reaper only: it forwards to nsd, which stops its xfrd
        # and server children; the reaper collects any that outlive nsd.
        stop_process(process, STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left behind

    def _stop(self) -> None:
        try:
            self._stop_process()
        finally:
            if self._workdir is not None:
                self._workdir.cleanup()
                self._workdir = None


def _sbin(program: str) -> str | None:
    # Debian puts nsd in /usr/sbin, which a non-root PATH may lack.
    path = Path("/usr/sbin") / program
    return str(path) if path.exists() else None
