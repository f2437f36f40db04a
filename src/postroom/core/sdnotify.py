"""A dependency-free sd_notify(3) client.

Purpose: tell the service manager about our state (READY=1, RELOADING=1,
STOPPING=1, STATUS=...) when `postroom serve` runs under systemd
with `Type=notify` (or `Type=notify-reload`).

Input: the environment variable `NOTIFY_SOCKET`, either a filesystem path or an
abstract socket name written as "@name". Output: one AF_UNIX SOCK_DGRAM
datagram per call, whose payload is newline-separated KEY=VALUE assignments
(see sd_notify(3)).

Contract: every function returns True when the datagram was sent and False
otherwise. Without `NOTIFY_SOCKET` every call is a no-op returning False, so
the server behaves the same in a terminal, in tests and under systemd. A
missing, refusing or broken socket is logged at debug level and never raises:
failing to report a state must never stop the mail server.

Untrusted input: none. Config keys read: none.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

_SEND_TIMEOUT_S = 1.0


def _socket_address(raw: str) -> str | bytes | None:
    """The address to send to, or None when `raw` is not a usable AF_UNIX address."""
    if raw.startswith("@"):
        # Abstract namespace: the kernel name starts with a NUL byte.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd also defines vsock:CID:PORT; postroom is never run that way.
    return None


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=up") to $NOTIFY_SOCKET; True when sent."""
    env = os.environ if environ is None else environ
    raw = env.get("NOTIFY_SOCKET", "")
    if not raw:
        return False
    address = _socket_address(raw)
    if address is None:
        log.debug("sd_notify: unsupported NOTIFY_SOCKET %r", raw)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # A datagram to a live socket does not block for long; the timeout
            # only guards against a wedged receiver so shutdown cannot hang.
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:
        log.debug("sd_notify: cannot send to %r: %s", raw, error)
        return False
    return True


def ready(status: str = "") -> bool:
    """Startup finished: listeners are bound and workers run."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def reloading() -> bool:
    """A reload (SIGHUP) started; send `ready()` again when it is done.

    MONOTONIC_USEC is required by systemd >= 253 for Type=notify-reload and is
    ignored by older versions, so it is always sent.
    """
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")


def stopping() -> bool:
    """Shutdown started: the server drains and stops."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line, human-readable status shown by `systemctl status`."""
    # A newline would start a new assignment that systemd would interpret.
    return notify("STATUS=" + " ".join(text.splitlines()))
