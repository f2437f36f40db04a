"""Port 25's handler behind real SMTP sessions on a loopback socket, in the test's own loop.

`listening(handler)` binds 127.0.0.1 on a free port with one `Session` per
connection (the class `serve` uses, with generous limits: 100 connections, 60 s
timeouts) and yields the port; the server closes when the block ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from postroom.mta.inbound.handler import InboundHandler
from postroom.mta.inbound.session import ConnectionLimits, Session


@asynccontextmanager
async def listening(handler: InboundHandler) -> AsyncIterator[int]:
    limits = ConnectionLimits(max_total=100, max_per_ip=100)
    server = await asyncio.get_running_loop().create_server(
        lambda: Session(
            handler,
            limits=limits,
            max_line_length=998,
            idle_timeout_s=60,
            data_timeout_s=60,
            hostname="mx.test",
        ),
        "127.0.0.1",
        0,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
