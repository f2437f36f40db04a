"""SiteConnection against scripted SMTP peers on loopback (port 0).

The peer is a small asyncio server written here rather than aiosmtpd, because
aiosmtpd does not offer PIPELINING and does not show how commands were packed
into packets. It records every packet it reads after connecting, every command
line, and every message still dot-stuffed as it came over the wire; its replies
come from a per-test `Script`. Replies to the commands of one packet go out in
one write, as a pipelining server (Postfix) sends them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postroom.mta.delivery.client import ConnectSettings, SiteConnection
from postroom.mta.delivery.mx import Destination, MxHost
from postroom.mta.delivery.outcome import Outcome, Scope, Stage, Verdict
from postroom.mta.delivery.wire import data_payload
from postroom.mta.lanes.pools import Source
from postroom.mta.queue.records import ClaimedDelivery, Job

LINE = b"x" * 76 + b"\r\n"
BODY = b"From: <app@src.test>\r\nTo: <a@dest.test>\r\nSubject: test\r\n\r\n" + LINE * 24
DEFAULT_SOURCE = Source("default", None, "relay.src.test")


@dataclass
class Script:
    """What the peer offers and answers. Prefixes match the start of a command line."""

    pipelining: bool = True
    size: int | None = None
    eight_bit_mime: bool = False
    smtputf8: bool = False
    starttls: ssl.SSLContext | None = None
    mail: str = "250 2.1.0 Ok"
    rcpt: dict[str, str] = field(default_factory=dict)  # address → reply; default 250
    data: str | None = None  # reply to DATA; default 354, or 554 without valid recipients
    final: list[str] = field(default_factory=list)  # replies to the body, then 250
    hang_up_on: str | None = None  # close without replying ("." = end of the body)
    silent_on: str | None = None  # stop answering
    split_replies: bool = False  # each reply in two packets


@dataclass
class PeerSession:
    peer_ip: str
    helo: str = ""
    tls: bool = False
    packets: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)  # as on the wire, dot-stuffed


class ScriptedPeer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.sessions: list[PeerSession] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def session(self) -> PeerSession:
        assert len(self.sessions) == 1, self.sessions
        return self.sessions[0]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _ehlo(self, session: PeerSession) -> bytes:
        script = self.script
        lines = ["peer.test greets you"]
        if script.pipelining:
            lines.append("PIPELINING")
        if script.size is not None:
            lines.append(f"SIZE {script.size}")
        if script.eight_bit_mime:
            lines.append("8BITMIME")
        if script.smtputf8:
            lines.append("SMTPUTF8")
        if script.starttls is not None and not session.tls:
            lines.append("STARTTLS")
        return "".join(
            f"250{' ' if i == len(lines) - 1 else '-'}{line}\r\n" for i, line in enumerate(lines)
        ).encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.script
        session = PeerSession(peer_ip=writer.get_extra_info("peername")[0])
        self.sessions.append(session)
        writer.write(b"220 peer.test ESMTP\r\n")
        buffer = b""
        in_data = False
        sender_ok = False
        recipients = 0
        try:
            while chunk := await reader.read(65536):
                session.packets.append(chunk)
                buffer += chunk
                replies: list[bytes] = []
                hang_up = silent = start_tls = False
                while True:
                    if in_data:
                        if buffer.startswith(b".\r\n"):
                            raw, buffer = b"", buffer[3:]
                        elif (end := buffer.find(b"\r\n.\r\n")) >= 0:
                            raw, buffer = buffer[: end + 2], buffer[end + 5 :]
                        else:
                            break
                        in_data = False
                        session.messages.append(raw)
                        command = "."
                    else:
                        line, found, rest = buffer.partition(b"\r\n")
                        if not found:
                            break
                        buffer = rest
                        command = line.decode()
                        session.commands.append(command)
                    if script.hang_up_on and command.startswith(script.hang_up_on):
                        hang_up = True
                        break
                    if script.silent_on and command.startswith(script.silent_on):
                        silent = True
                        break
                    verb = command.split(" ", 1)[0].upper()
                    if command == ".":
                        reply = script.final.pop(0) if script.final else "250 2.0.0 Ok: queued"
                        sender_ok, recipients = False, 0
                    elif verb == "EHLO":
                        session.helo = command[5:]
                        replies.append(self._ehlo(session))
                        continue
                    elif verb == "STARTTLS":
                        reply, start_tls = "220 2.0.0 Ready to start TLS", True
                    elif verb == "MAIL":
                        reply = script.mail
                        sender_ok = reply.startswith("2")
                    elif verb == "RCPT":
                        address = command.partition(":")[2].strip("<>")
                        reply = script.rcpt.get(address, "250 2.1.5 Ok")
                        if not sender_ok:
                            reply = "503 5.5.1 Error: need MAIL command"
                        elif reply.startswith("2"):
                            recipients += 1
                    elif verb == "DATA":
                        if script.data is not None:
                            reply = script.data
                        elif sender_ok and recipients:
                            reply = "354 End data with <CR><LF>.<CR><LF>"
                        else:
                            reply = "554 5.5.1 Error: no valid recipients"
                        in_data = reply.startswith("354")
                    elif verb == "RSET":
                        reply, sender_ok, recipients = "250 2.0.0 Ok", False, 0
                    elif verb == "QUIT":
                        reply, hang_up = "221 2.0.0 Bye", True
                    else:
                        reply = "502 5.5.2 Error: command not recognized"
                    replies.append(reply.encode() + b"\r\n")
                    if reply.startswith("421"):
                        hang_up = True
                        break
                await self._write(writer, replies)
                if start_tls:
                    assert script.starttls is not None
                    await writer.start_tls(script.starttls)
                    session.tls = True
                if hang_up:
                    break
                if silent:
                    await asyncio.sleep(3600)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, replies: list[bytes]) -> None:
        if not self.script.split_replies:
            writer.write(b"".join(replies))
            await writer.drain()
            return
        for reply in replies:
            for part in (reply[: len(reply) // 2], reply[len(reply) // 2 :]):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)


@asynccontextmanager
async def scripted_peer(script: Script | None = None) -> AsyncIterator[ScriptedPeer]:
    peer = ScriptedPeer(script or Script())
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


async def connect(
    peer: ScriptedPeer,
    source: Source = DEFAULT_SOURCE,
    *,
    command_timeout_s: float = 5.0,
    starttls: bool = False,
) -> SiteConnection:
    destination = Destination("dest.test", (MxHost("mx.dest.test", 10, ("127.0.0.1",)),), False)
    settings = ConnectSettings(
        port=peer.port,
        connect_timeout_s=5.0,
        command_timeout_s=command_timeout_s,
        starttls=starttls,
    )
    return await SiteConnection.open(destination, source, settings)


def job(*recipients: str, sender: str = "app@src.test") -> Job:
    deliveries = [ClaimedDelivery(n, address, 0) for n, address in enumerate(recipients, 1)]
    return Job("m1", sender, "dest.test", "default", 0.0, len(BODY), deliveries)


def by_recipient(results: list[tuple[ClaimedDelivery, Outcome]]) -> dict[str, Outcome]:
    return {delivery.recipient: outcome for delivery, outcome in results}


def unstuff(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^\.", b"", raw)


def transaction_packets(session: PeerSession) -> list[bytes]:
    """The packets from the first MAIL on (the EHLO before it is aiosmtplib's)."""
    first = next(n for n, packet in enumerate(session.packets) if packet.startswith(b"MAIL"))
    return session.packets[first:]


# -- all accepted, mixed, refused --------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
async def test_all_recipients_accepted_are_delivered(pipelining: bool) -> None:
    async with scripted_peer(Script(pipelining=pipelining)) as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test", "b@dest.test"), BODY)
        await connection.close()
    assert [delivery.recipient for delivery, _ in results] == ["a@dest.test", "b@dest.test"]
    for _, outcome in results:
        assert outcome.verdict is Verdict.DELIVERED
        assert outcome.stage is Stage.DATA
        assert outcome.reply is not None and outcome.reply.code == 250
        assert outcome.remote_host == "mx.dest.test[127.0.0.1]"
    assert peer.session.commands[1:] == [
        "MAIL FROM:<app@src.test>",
        "RCPT TO:<a@dest.test>",
        "RCPT TO:<b@dest.test>",
        "DATA",
        "QUIT",
    ]
    assert [unstuff(raw) for raw in peer.session.messages] == [BODY]
    assert connection.messages_sent == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_one_recipient_refused_one_accepted(pipelining: bool) -> None:
    script = Script(pipelining=pipelining, rcpt={"x@dest.test": "550 5.1.1 No such user"})
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(await connection.send(job("x@dest.test", "a@dest.test"), BODY))
        assert connection.usable
    refused = outcomes["x@dest.test"]
    assert (refused.verdict, refused.scope, refused.stage) == (
        Verdict.FAILED,
        Scope.RECIPIENT,
        Stage.RCPT,
    )
    assert refused.status == "5.1.1"
    assert outcomes["a@dest.test"].verdict is Verdict.DELIVERED
    assert [unstuff(raw) for raw in peer.session.messages] == [BODY]
    assert "RSET" not in peer.session.commands


@pytest.mark.parametrize("pipelining", [True, False])
async def test_refused_sender_defers_the_whole_message_then_rset(pipelining: bool) -> None:
    script = Script(pipelining=pipelining, mail="451 4.3.0 Try again later")
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test", "b@dest.test"), BODY)
        assert connection.usable
        script.mail = "250 2.1.0 Ok"
        again = await connection.send(job("a@dest.test"), BODY)
    assert len(results) == 2
    for _, outcome in results:
        assert (outcome.verdict, outcome.scope, outcome.stage) == (
            Verdict.DEFERRED,
            Scope.MESSAGE,
            Stage.MAIL,
        )
        assert outcome.reply is not None and outcome.reply.code == 451
    assert again[0][1].verdict is Verdict.DELIVERED
    commands = peer.session.commands
    assert commands.index("RSET") < commands.index("MAIL FROM:<app@src.test>", 2)
    assert len(peer.session.messages) == 1  # only the second message's body
    assert connection.messages_sent == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_no_recipient_accepted_sends_no_body_and_resets(pipelining: bool) -> None:
    script = Script(
        pipelining=pipelining,
        rcpt={"x@dest.test": "550 5.1.1 No such user", "y@dest.test": "450 4.2.1 Mailbox busy"},
    )
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(await connection.send(job("x@dest.test", "y@dest.test"), BODY))
        assert connection.usable
        assert connection.messages_sent == 0
        again = await connection.send(job("a@dest.test"), BODY)
    assert outcomes["x@dest.test"].verdict is Verdict.FAILED
    assert outcomes["y@dest.test"].verdict is Verdict.DEFERRED
    assert {o.scope for o in outcomes.values()} == {Scope.RECIPIENT}
    commands = peer.session.commands
    expected = ["MAIL FROM:<app@src.test>", "RCPT TO:<x@dest.test>", "RCPT TO:<y@dest.test>"]
    expected += ["DATA", "RSET"] if pipelining else ["RSET"]
    assert commands[1 : 1 + len(expected)] == expected
    assert again[0][1].verdict is Verdict.DELIVERED
    assert [unstuff(raw) for raw in peer.session.messages] == [BODY]


async def test_354_without_accepted_recipients_ends_an_empty_message() -> None:
    # A pipelining server that says 354 to DATA although it refused every RCPT.
    script = Script(rcpt={"x@dest.test": "550 5.1.1 No such user"}, data="354 go ahead")
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        results = await connection.send(job("x@dest.test"), BODY)
        assert connection.usable
    assert results[0][1].verdict is Verdict.FAILED
    assert peer.session.messages == [b""]
    assert peer.session.commands[-1] == "RSET"


async def test_final_554_fails_the_accepted_recipients() -> None:
    script = Script(
        rcpt={"x@dest.test": "550 5.1.1 No such user"}, final=["554 5.7.1 Rejected as spam"]
    )
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(
            await connection.send(job("a@dest.test", "x@dest.test", "b@dest.test"), BODY)
        )
        assert connection.usable
        assert connection.messages_sent == 1
    for address in ("a@dest.test", "b@dest.test"):
        outcome = outcomes[address]
        assert (outcome.verdict, outcome.scope, outcome.stage) == (
            Verdict.FAILED,
            Scope.MESSAGE,
            Stage.DATA,
        )
        assert outcome.status == "5.7.1"
    assert outcomes["x@dest.test"].stage is Stage.RCPT
    assert "RSET" not in peer.session.commands  # the end of the body ended the transaction


async def test_data_refused_fails_accepted_and_resets() -> None:
    async with scripted_peer(Script(data="554 5.3.0 No DATA today")) as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test"), BODY)
        assert connection.usable
    outcome = results[0][1]
    assert (outcome.verdict, outcome.stage, outcome.status) == (
        Verdict.FAILED,
        Stage.DATA,
        "5.3.0",
    )
    assert peer.session.commands[-1] == "RSET"
    assert peer.session.messages == []


async def test_multiline_and_split_replies_are_read_in_order() -> None:
    script = Script(
        split_replies=True,
        rcpt={"x@dest.test": "550-5.1.1 The mailbox\r\n550-5.1.1 does not\r\n550 5.1.1 exist"},
    )
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(await connection.send(job("x@dest.test", "a@dest.test"), BODY))
    refused = outcomes["x@dest.test"]
    assert refused.reply is not None and refused.reply.code == 550
    assert refused.status == "5.1.1"
    assert "exist" in refused.reply.text
    assert outcomes["a@dest.test"].verdict is Verdict.DELIVERED


# -- broken connections ----------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
async def test_disconnect_during_rcpt_defers_the_unanswered(pipelining: bool) -> None:
    script = Script(
        pipelining=pipelining,
        rcpt={"x@dest.test": "550 5.1.1 No such user"},
        hang_up_on="RCPT TO:<b@",
    )
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(
            await connection.send(job("x@dest.test", "a@dest.test", "b@dest.test"), BODY)
        )
        assert not connection.usable
        assert connection.messages_sent == 0
        await connection.close()
    assert outcomes["x@dest.test"].verdict is Verdict.FAILED  # it had its answer
    for address in ("a@dest.test", "b@dest.test"):
        outcome = outcomes[address]
        assert (outcome.verdict, outcome.scope, outcome.stage) == (
            Verdict.DEFERRED,
            Scope.CONNECTION,
            Stage.RCPT,
        )
        assert outcome.status == "4.4.2"
    assert peer.session.messages == []


async def test_disconnect_after_the_body_defers_the_accepted() -> None:
    async with scripted_peer(Script(hang_up_on=".")) as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test", "b@dest.test"), BODY)
        assert not connection.usable
    for _, outcome in results:
        assert (outcome.verdict, outcome.scope, outcome.stage) == (
            Verdict.DEFERRED,
            Scope.CONNECTION,
            Stage.DATA,
        )


async def test_421_to_rcpt_ends_the_connection() -> None:
    script = Script(rcpt={"b@dest.test": "421 4.3.2 Shutting down"})
    async with scripted_peer(script) as peer:
        connection = await connect(peer)
        outcomes = by_recipient(
            await connection.send(job("a@dest.test", "b@dest.test", "c@dest.test"), BODY)
        )
        assert not connection.usable
    closing = outcomes["b@dest.test"]
    assert closing.reply is not None and closing.reply.code == 421
    assert closing.scope is Scope.CONNECTION
    assert {o.verdict for o in outcomes.values()} == {Verdict.DEFERRED}
    assert outcomes["a@dest.test"].reply is None  # accepted, then no answer to the message


async def test_silent_server_times_out() -> None:
    async with scripted_peer(Script(silent_on=".")) as peer:
        connection = await connect(peer, command_timeout_s=0.3)
        results = await connection.send(job("a@dest.test"), BODY)
        assert not connection.usable
    outcome = results[0][1]
    assert (outcome.verdict, outcome.stage) == (Verdict.DEFERRED, Stage.DATA)
    assert "timed out" in outcome.detail


async def test_a_connection_closed_between_messages_defers_the_next() -> None:
    async with scripted_peer(Script(hang_up_on="RSET")) as peer:
        connection = await connect(peer)
        script = peer.script
        script.mail = "451 4.3.0 later"
        first = await connection.send(job("a@dest.test"), BODY)  # RSET → hang-up
        second = await connection.send(job("a@dest.test"), BODY)
    assert first[0][1].stage is Stage.MAIL
    assert not connection.usable
    assert (second[0][1].verdict, second[0][1].scope) == (Verdict.DEFERRED, Scope.CONNECTION)


# -- what goes over the wire -----------------------------------------------------------


async def test_pipelined_commands_arrive_in_one_packet() -> None:
    async with scripted_peer(Script(pipelining=True)) as peer:
        connection = await connect(peer)
        await connection.send(job("a@dest.test", "b@dest.test"), BODY)
    packets = transaction_packets(peer.session)
    assert packets[0] == (
        b"MAIL FROM:<app@src.test>\r\nRCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n"
    )
    assert b"".join(packets[1:]) == data_payload(BODY)


async def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    async with scripted_peer(Script(pipelining=False)) as peer:
        connection = await connect(peer)
        await connection.send(job("a@dest.test", "b@dest.test"), BODY)
    packets = transaction_packets(peer.session)
    assert packets[:4] == [
        b"MAIL FROM:<app@src.test>\r\n",
        b"RCPT TO:<a@dest.test>\r\n",
        b"RCPT TO:<b@dest.test>\r\n",
        b"DATA\r\n",
    ]


async def test_body_is_dot_stuffed_on_the_wire() -> None:
    body = b"Subject: dots\r\n\r\n.leading\r\n..two\r\nmid.dle\r\n.\r\nend\r\n"
    async with scripted_peer() as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test"), body)
    assert results[0][1].verdict is Verdict.DELIVERED
    (raw,) = peer.session.messages
    assert raw == b"Subject: dots\r\n\r\n..leading\r\n...two\r\nmid.dle\r\n..\r\nend\r\n"
    assert unstuff(raw) == body


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),
        (b".a\n.\n", b"..a\r\n..\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
)
def test_data_payload(body: bytes, payload: bytes) -> None:
    assert data_payload(body) == payload


async def test_message_over_the_size_limit_is_not_offered() -> None:
    async with scripted_peer(Script(size=1000)) as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test", "b@dest.test"), BODY)
        assert connection.usable
    assert len(BODY) > 1000
    for _, outcome in results:
        assert (outcome.verdict, outcome.scope, outcome.stage, outcome.status) == (
            Verdict.FAILED,
            Scope.MESSAGE,
            Stage.MAIL,
            "5.3.4",
        )
    assert not any(c.startswith("MAIL") for c in peer.session.commands)


async def test_size_and_8bitmime_parameters() -> None:
    eight_bit = BODY + "Grüße\r\n".encode()
    async with scripted_peer(Script(size=10_000_000, eight_bit_mime=True)) as peer:
        connection = await connect(peer)
        await connection.send(job("a@dest.test"), BODY)
        await connection.send(job("a@dest.test"), eight_bit)
    mails = [c for c in peer.session.commands if c.startswith("MAIL")]
    assert mails == [
        f"MAIL FROM:<app@src.test> SIZE={len(BODY)}",
        f"MAIL FROM:<app@src.test> SIZE={len(eight_bit)} BODY=8BITMIME",
    ]
    assert [unstuff(raw) for raw in peer.session.messages] == [BODY, eight_bit]


async def test_internationalised_address_needs_smtputf8() -> None:
    async with scripted_peer(Script(smtputf8=True)) as peer:
        connection = await connect(peer)
        [(_, outcome)] = await connection.send(job("jörg@dest.test"), BODY)
    assert outcome.verdict is Verdict.DELIVERED
    assert "MAIL FROM:<app@src.test> SMTPUTF8" in peer.session.commands
    assert "RCPT TO:<jörg@dest.test>" in peer.session.commands
    async with scripted_peer(Script(smtputf8=False)) as peer:
        connection = await connect(peer)
        [(_, outcome)] = await connection.send(job("jörg@dest.test"), BODY)
        assert connection.usable
    assert (outcome.verdict, outcome.status) == (Verdict.FAILED, "5.6.7")
    assert not [c for c in peer.session.commands if c.startswith("MAIL")]


async def test_null_sender() -> None:
    async with scripted_peer() as peer:
        connection = await connect(peer)
        results = await connection.send(job("a@dest.test", sender=""), BODY)
    assert results[0][1].verdict is Verdict.DELIVERED
    assert "MAIL FROM:<>" in peer.session.commands


async def test_address_with_control_characters_is_never_sent() -> None:
    async with scripted_peer() as peer:
        connection = await connect(peer)
        outcomes = by_recipient(
            await connection.send(job("a@dest.test", "b@dest.test\r\nRSET"), BODY)
        )
        assert connection.usable
    bad = outcomes["b@dest.test\r\nRSET"]
    assert (bad.verdict, bad.scope, bad.status) == (Verdict.FAILED, Scope.RECIPIENT, "5.1.3")
    assert outcomes["a@dest.test"].verdict is Verdict.DELIVERED
    assert "RSET" not in peer.session.commands


async def test_several_messages_over_one_connection() -> None:
    async with scripted_peer() as peer:
        connection = await connect(peer)
        for n in range(5):
            results = await connection.send(job(f"u{n}@dest.test"), BODY)
            assert results[0][1].verdict is Verdict.DELIVERED
        assert connection.messages_sent == 5
        assert connection.usable
        await connection.close()
    assert len(peer.session.messages) == 5
    assert peer.session.commands[-1] == "QUIT"


async def test_source_address_and_helo() -> None:
    source = Source("second", "127.0.0.3", "out2.src.test")
    async with scripted_peer() as peer:
        connection = await connect(peer, source)
        await connection.send(job("a@dest.test"), BODY)
    assert peer.session.peer_ip == "127.0.0.3"
    assert peer.session.helo == "out2.src.test"


# -- STARTTLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    # A missing peer tool fails the test (make test installs openssl); it never skips.
    assert openssl is not None, "openssl not found: install the Debian package 'openssl'"
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=mx.dest.test",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def pipelined_over_tls(server_tls: ssl.SSLContext) -> PeerSession:
    async with scripted_peer(Script(starttls=server_tls, size=10_000_000)) as peer:
        connection = await connect(peer, starttls=True)
        for _ in range(2):
            results = await connection.send(job("a@dest.test", "b@dest.test"), BODY)
            assert {o.verdict for _, o in results} == {Verdict.DELIVERED}
        await connection.close()
    return peer.session


async def test_starttls_then_ehlo_then_pipelining(server_tls: ssl.SSLContext) -> None:
    session = await pipelined_over_tls(server_tls)
    assert session.tls
    assert [c for c in session.commands if c.startswith("EHLO")] == ["EHLO relay.src.test"] * 2
    # The post-TLS EHLO's SIZE is known for the first message.
    assert transaction_packets(session)[0].startswith(b"MAIL FROM:<app@src.test> SIZE=")
    assert transaction_packets(session)[0].endswith(b"RCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert [unstuff(raw) for raw in session.messages] == [BODY, BODY]


def test_starttls_and_pipelining_under_uvloop(server_tls: ssl.SSLContext) -> None:
    # Production runs on uvloop; the stream takes over its (TLS) transport.
    import uvloop  # a dependency of postroom: its absence is a failure, not a skip

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        session = runner.run(pipelined_over_tls(server_tls))
    assert session.tls
    assert [unstuff(raw) for raw in session.messages] == [BODY, BODY]
