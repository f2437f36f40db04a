"""The listening sockets of `serve`, bound once and shared by every worker process.

`bind_listeners(config, workers)` binds `[smtp.inbound] listen`, `[smtp.submission]
listen` and `tls_listen` before any worker starts (an address in use, or a privileged
port without the capability, is a `StartupError` naming the key and its index; what
was bound is closed again) and returns one `Listening` per worker. In a single-process
`serve` the node serves its one set itself. With `[server] workers` > 1 each port 25
address gets one socket per worker, all bound with SO_REUSEPORT, so that the kernel
spreads new connections over the workers by their addresses and ports (one socket
shared by all, the worker that wakes first takes every connection waiting: 20 clients
connecting at once all went to one worker). Submission is worker 0's alone: one
socket each. The supervisor keeps every socket open, so connections the kernel gives
to a worker that just died wait in its socket's queue for its successor, which
inherits the same socket: `Listening.inherit_env()` gives the file descriptors to
keep open in the child and an environment value naming them, which
`Listening.from_env(value)` turns back into sockets in the worker.
Untrusted input: none (config values were validated when loaded; the environment
value is written by our own supervisor). Config keys: the three listen lists above.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

from postroom.config import Config
from postroom.config.schema import parse_listen
from postroom.core.errors import StartupError

# Connections the kernel queues while every worker is busy (Postfix's default is 100;
# a burst of campaign replies or MX retries after an outage is larger).
BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class Listening:
    """Bound, listening sockets, by the config key that names their addresses."""

    inbound: tuple[socket.socket, ...] = ()
    submission: tuple[socket.socket, ...] = ()
    submission_tls: tuple[socket.socket, ...] = ()
    names: dict[int, str] = field(default_factory=dict)  # fileno → "ADDR:PORT" for logs

    def all(self) -> tuple[socket.socket, ...]:
        return self.inbound + self.submission + self.submission_tls

    def close(self) -> None:
        for sock in self.all():
            sock.close()

    def inherit_env(self) -> tuple[str, list[int]]:
        """(environment value, file descriptors the child must inherit)."""
        value = {
            "inbound": [s.fileno() for s in self.inbound],
            "submission": [s.fileno() for s in self.submission],
            "submission_tls": [s.fileno() for s in self.submission_tls],
            "names": {str(fd): name for fd, name in self.names.items()},
        }
        return json.dumps(value), [s.fileno() for s in self.all()]

    @classmethod
    def from_env(cls, value: str) -> Listening:
        described = json.loads(value)

        def adopt(kind: str) -> tuple[socket.socket, ...]:
            return tuple(socket.socket(fileno=fd) for fd in described[kind])

        return cls(
            inbound=adopt("inbound"),
            submission=adopt("submission"),
            submission_tls=adopt("submission_tls"),
            names={int(fd): name for fd, name in described["names"].items()},
        )


def bind_listeners(config: Config, workers: int = 1) -> list[Listening]:
    """One `Listening` per worker (see the module docstring)."""
    submission = config.smtp.submission
    bound: list[socket.socket] = []
    names: dict[int, str] = {}
    try:
        inbound = [
            _bind_each(config.smtp.inbound.listen, "smtp.inbound.listen", bound, names, workers > 1)
            for _ in range(workers)
        ]
        starttls = _bind_each(submission.listen, "smtp.submission.listen", bound, names)
        implicit = _bind_each(submission.tls_listen, "smtp.submission.tls_listen", bound, names)
    except StartupError:
        for sock in bound:
            sock.close()
        raise
    return [
        Listening(mine, starttls, implicit, names) if index == 0 else Listening(mine, names=names)
        for index, mine in enumerate(inbound)
    ]


def _bind_each(
    listens: tuple[str, ...],
    key: str,
    bound: list[socket.socket],
    names: dict[int, str],
    reuse_port: bool = False,
) -> tuple[socket.socket, ...]:
    mine: list[socket.socket] = []
    for index, listen in enumerate(listens):
        host, port = parse_listen(listen, f"{key}[{index}]")
        try:
            # "localhost" may name both 127.0.0.1 and ::1: one socket each, as asyncio does.
            addresses = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, address in dict.fromkeys(addresses):
                sock = socket.socket(family, kind, proto)
                bound.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(BACKLOG)
                sock.setblocking(False)
                names[sock.fileno()] = f"{listen} ({key})"
                mine.append(sock)
        except OSError as error:
            raise StartupError(
                f"cannot listen on {listen} ({key}[{index}]): {error.strerror}"
            ) from None
    return tuple(mine)
