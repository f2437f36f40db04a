"""A submission listener on port 0 over a real SQLite queue, for the handler's unit tests.

`submission_rig(directory, ...)` builds what `serve` builds for 587, without TLS (AUTH is
allowed in clear here, as on 465 where the whole connection is TLS): a migrated SQLite
database with project acme (its message limit), the verified domain shop.test, the approved
mailbox app@shop.test, a `QueueStore` whose group commit can be held (`gate`), a `Router`
whose delivery engine is a list of the jobs it was handed (`handed`), and a
`SubmissionHandler` with the given rate limits (a frozen clock) and AUTH throttle. `Client`
speaks SMTP to it line by line. What the tests observe is the real books: `used()`
(`ProjectUsage`), the deliveries' rows, the jobs that reached "delivery".
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from postroom.config.schema import Config
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import deliveries
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.directory import Directory
from postroom.mailbox.local import LocalMail
from postroom.mailbox.passwords import hash_password
from postroom.mailbox.smtp_access import SmtpAccess
from postroom.mailbox.usage import ProjectUsage
from postroom.mta.inbound.handler import InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.inbound.ratelimit import RateLimiter
from postroom.mta.inbound.session import ConnectionLimits, Session
from postroom.mta.inbound.submission import SubmissionHandler
from postroom.mta.inbound.throttle import AuthThrottle, ThrottlePolicy
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.queue.records import Job
from postroom.mta.queue.store import QueueStore
from postroom.mta.router import Router

APP = "app@shop.test"
PASSWORD = "copper-meadow-lantern-61"
WAIT_S = 10.0  # every wait of the rig is bounded by this


@dataclass
class HandedJobs:
    """The delivery engine's `submit`: what reached delivery."""

    jobs: list[Job] = field(default_factory=list)

    def submit(self, jobs: list[Job]) -> None:
        self.jobs.extend(jobs)

    def recipients(self) -> list[str]:
        return [delivery.recipient for job in self.jobs for delivery in job.deliveries]


class Gate:
    """Holds the queue's group commit: a write that waits in the commit thread, so that
    the writes submitted meanwhile are pending (submitted, not committed)."""

    def __init__(self, store: QueueStore) -> None:
        self._store = store
        self._holding = threading.Event()
        self._open = threading.Event()
        self._task: asyncio.Task[Any] | None = None

    async def close(self) -> None:
        self._task = asyncio.create_task(self._store.transact(self._hold, None))
        await poll(self._holding.is_set, "the commit thread to hold")

    async def open(self) -> None:
        self._open.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT_S)

    def _hold(self, conn: Connection, items: list[None]) -> list[None]:
        self._holding.set()
        self._open.wait(WAIT_S)
        return [None] * len(items)


class WatchedStore(QueueStore):
    """The real store; `pending` names the writes submitted so far, for tests that
    must act while a given write is on its way through the group commit."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, node_name="unit")
        self.pending: list[str] = []

    async def transact(self, batch_operation: Any, item: Any) -> Any:
        self.pending.append(batch_operation.__name__)
        return await super().transact(batch_operation, item)

    async def enqueue(self, message: Any) -> list[Job]:
        self.pending.append("enqueue")
        return await super().enqueue(message)


@dataclass
class Rig:
    engine: Engine
    store: WatchedStore
    usage: ProjectUsage
    router: Router
    handed: HandedJobs
    gate: Gate
    port: int
    project_id: int
    sessions: list[Session]

    def used(self) -> int:
        return self.usage.usage(self.project_id)[0]

    def queued(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(deliveries)).scalar_one()

    async def connect(self, source: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(source, 0)
        )
        client = Client(reader, writer)
        assert (await client.reply()).startswith(b"220")
        return client

    async def logged_in(self) -> Client:
        client = await self.connect()
        reply = await client.login()
        assert reply.startswith(b"235"), reply
        return client

    async def hang_up(self, client: Client) -> None:
        """`client` hangs up; returns once the server saw it (the session is cancelled)."""
        client.hang_up()
        await poll(lambda: all(s.transport is None for s in self.sessions), "the hang-up")

    async def settle(self) -> None:
        """Until every session's connection is gone and the work it began has ended."""
        await poll(lambda: all(s.transport is None for s in self.sessions), "sessions to end")
        assert await self.router.shielded.wait(WAIT_S) == 0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> bytes:
        """One whole reply, its lines joined."""
        lines = []
        for _ in range(100):
            line = await asyncio.wait_for(self.reader.readline(), WAIT_S)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)
        raise AssertionError(f"a reply of more than 100 lines: {lines[:3]!r}")

    async def command(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def login(self, user: str = APP, password: str = PASSWORD) -> bytes:
        assert (await self.command("EHLO client.test")).startswith(b"250")
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return await self.command(f"AUTH PLAIN {blob}")

    async def transaction(self, recipients: Sequence[str]) -> list[bytes]:
        """MAIL FROM app@ and RCPT each: the replies."""
        replies = [await self.command(f"MAIL FROM:<{APP}>")]
        for recipient in recipients:
            replies.append(await self.command(f"RCPT TO:<{recipient}>"))
        return replies

    async def data(self, content: bytes) -> bytes:
        assert (await self.command("DATA")).startswith(b"354")
        self.writer.write(content + b".\r\n")
        return await self.reply()

    def hang_up(self) -> None:
        """Half-close, then close: aiosmtpd cancels the session's handler at end of file."""
        self.writer.write_eof()
        self.writer.close()


def message(author: str = f"App <{APP}>", extra: str = "") -> bytes:
    return f"From: {author}\r\n{extra}Subject: receipt\r\n\r\nreceipt\r\n".encode()


async def poll(condition: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"waited {WAIT_S} s for {what}")
        await asyncio.sleep(0.01)


class FrozenClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def submission_rig(
    directory: Path,
    *,
    message_limit: int | None = 1000,
    per_minute: int = 0,
    per_day: int = 0,
    throttle: ThrottlePolicy | None = None,
    password_hash: str | None = None,
) -> AsyncIterator[Rig]:
    engine = make_engine(f"sqlite:///{directory}/db.sqlite")
    upgrade(engine)
    names = Directory(engine)
    project_id = names.add_project("acme", message_limit=message_limit).id
    names.add_domain("shop.test", "acme")
    names.mark_verified("shop.test", [])
    accounts = Accounts(engine, directory / "mail")
    accounts.add_mailbox(APP, password_hash or hash_password(PASSWORD), 0)
    access = SmtpAccess(engine)
    access.request(APP, "receipts", 100)
    access.approve(APP)
    local = LocalMail(accounts, "mx.test")
    local.load_domains()
    store = WatchedStore(engine)
    store.start()
    handed = HandedJobs()
    router = Router(store, handed, local)
    handler = SubmissionHandler(
        InboundPolicy("mx.test", RelayNetworks([]), max_recipients=100, max_hops=30),
        router,
        PoolTable(Config()),
        local,
        access=access,
        usage=ProjectUsage(engine),
        throttle=AuthThrottle(throttle or ThrottlePolicy()),
        rates=RateLimiter(FrozenClock()),
        default_limits=(per_minute, per_day),
    )
    limits = ConnectionLimits(max_total=100, max_per_ip=100)
    sessions: list[Session] = []

    def new_session() -> Session:
        session = Session(
            handler,
            limits=limits,
            max_line_length=998,
            idle_timeout_s=WAIT_S,
            data_timeout_s=WAIT_S,
            hostname="mx.test",
            auth_required=True,
            auth_require_tls=False,
        )
        sessions.append(session)
        return session

    server = await asyncio.get_running_loop().create_server(new_session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Rig(
            engine,
            store,
            ProjectUsage(engine),
            router,
            handed,
            Gate(store),
            port,
            project_id,
            sessions,
        )
    finally:
        server.close()
        await store.close()
        engine.dispose()
