"""An error inside a hook (the directory database failing at RCPT) reaches the
client as 451 4.3.0 and nothing of the exception: a real session on port 0,
with a LocalMail whose lookup fails."""

from __future__ import annotations

import asyncio

from tests.fakes.smtp_listener import listening

from postroom.config.schema import Config
from postroom.mailbox.accounts import Resolution
from postroom.mta.inbound.handler import InboundHandler, InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.lanes.pools import PoolTable

SECRET = "database password is hunter2"


class BrokenLocalMail:
    def is_local_domain(self, address: str) -> bool:
        return True

    def resolve(self, address: str) -> Resolution:
        raise RuntimeError(SECRET)


async def test_a_failing_lookup_is_a_temporary_failure_that_leaks_nothing() -> None:
    config = Config()
    handler = InboundHandler(
        InboundPolicy("mx.test", RelayNetworks([]), max_recipients=10, max_hops=30),
        router=None,  # type: ignore[arg-type]  # never reached: RCPT fails first
        pools=PoolTable(config),
        local=BrokenLocalMail(),  # type: ignore[arg-type]
    )
    async with listening(handler) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = [await reader.readline()]
        for command in (
            b"HELO client.test",
            b"MAIL FROM:<a@client.test>",
            b"RCPT TO:<b@ours.test>",
        ):
            writer.write(command + b"\r\n")
            replies.append(await asyncio.wait_for(reader.readline(), 5))
        writer.close()
    assert replies[3].startswith(b"451 4.3.0 "), replies
    assert SECRET.encode() not in b"".join(replies)
    assert b"RuntimeError" not in b"".join(replies)
