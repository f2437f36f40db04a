"""Fakes around port 25's bounce inbox: the intake, the inbox and the local mailboxes.

`FakeIntake` knows one valid VERP address, `bounce+good@example.test` (delivery 7),
and refuses any other `bounce+` name; its `FakeInbox` records what it processes and
holds each call until its `release` event is set (a stand-in for slow input);
`FakeLocal` makes every address at example.test the one `bounce` mailbox
(plus-addressing) with a 10-byte quota. `inbound_handler(intake)` is the port 25
handler over them, with a real feedback worker in the intake.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from postroom.config.schema import Config
from postroom.core.reply import Reply
from postroom.mailbox.accounts import NOT_LOCAL, LocalTarget, RecipientKind, Resolution
from postroom.mta.bounce.worker import FeedbackWorker
from postroom.mta.inbound.handler import InboundHandler, InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.lanes.pools import PoolTable

DOMAIN = "example.test"  # linked domain and bounce domain at once
MAILBOX = LocalTarget(f"bounce@{DOMAIN}", Path("/nonexistent"), quota_bytes=10, project_id=1)


class FakeInbox:
    """Records what it processes; holds each call until `release` is set (at most 10 s)."""

    def __init__(self) -> None:
        self.processed: list[bytes] = []
        self.entered = 0
        self.release = threading.Event()
        self.release.set()

    def process(
        self, content: bytes, ids: list[int], *, feedback: bool, deadline: float | None = None
    ) -> list[object]:
        assert deadline is None or time.monotonic() < deadline  # started within its limit
        self.entered += 1
        self.release.wait(10)
        self.processed.append(content)
        return []


class FakeIntake:
    """Delivery 7 is the one valid token; any other bounce+ name is refused."""

    def __init__(self, worker: FeedbackWorker | None = None) -> None:
        self.inbox = FakeInbox()
        self.worker = worker or FeedbackWorker(threads=1, backlog=0, time_limit_s=5)

    def target(self, address: str) -> int | Reply | None:
        if not address.startswith("bounce+"):
            return None
        if address == f"bounce+good@{DOMAIN}":
            return 7
        return Reply(550, "5.1.1", f"<{address}>: not a bounce address of ours")

    def process(self, content: bytes, targets: object, deadline: float | None) -> None:
        self.inbox.process(content, list(targets), feedback=False, deadline=deadline)  # type: ignore[call-overload]


class FakeLocal:
    """Every address at DOMAIN is the one `bounce` mailbox (plus-addressing), quota 10 bytes."""

    def is_local_domain(self, address: str) -> bool:
        return address.endswith(f"@{DOMAIN}")

    def project_of(self, address: str) -> int | None:
        return 1 if self.is_local_domain(address) else None

    def resolve(self, address: str) -> Resolution:
        if not self.is_local_domain(address):
            return NOT_LOCAL
        return Resolution(RecipientKind.LOCAL, (MAILBOX,))

    def quota_refusal(self, targets: object, size_bytes: int = 0) -> Reply | None:
        return Reply(452, "4.2.2", "mailbox full") if size_bytes > 10 else None


def inbound_handler(intake: FakeIntake) -> InboundHandler:
    return InboundHandler(
        InboundPolicy("mx.test", RelayNetworks([]), max_recipients=10, max_hops=30),
        router=None,  # type: ignore[arg-type]  # never reached in these tests
        pools=PoolTable(Config()),
        local=FakeLocal(),  # type: ignore[arg-type]
        bounces=intake,  # type: ignore[arg-type]
    )
