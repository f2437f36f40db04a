"""Port 25 at the edge: no open relay, no smuggling, RFC 5321 limits, enhanced codes.

Clients connect from distinct loopback addresses: 127.0.0.1 is in the relay
network, 127.0.0.20 and 127.0.0.21 are not. Nothing refused may reach a sink.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest
from tests.flow.conftest import World, start_postroom, with_token
from tests.flow.test_relay_flow import message, wait_token
from tests.peers.postroom import PostroomServer

pytestmark = pytest.mark.flow

OUTSIDER = "127.0.0.20"
ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


@pytest.fixture(scope="module")
def edge(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    server = start_postroom(
        tmp_path_factory.mktemp("edge"),
        world,
        relay_networks=("127.0.0.1/32",),
        inbound=(
            'max_recipients = 3\nmax_message_size = 10000\nidle_timeout = "1s"\n'
            'data_timeout = "3s"\nmax_connections_per_ip = 2'
        ),
    )
    yield server
    server.stop()


class RawClient:
    """A byte-exact SMTP client: what smtplib would never send."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self.buffer = b""
        self.greeting = self.reply()

    def reply(self) -> bytes:
        """One (possibly multi-line) reply, CRLF-joined."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b"\r\n".join(lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\r\n".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def outsider(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(OUTSIDER, 0))
    client.ehlo("outsider.test")
    return client


def test_outsider_cannot_relay(edge: PostroomServer) -> None:
    with outsider(edge.smtp_port) as client:
        assert client.mail("someone@outside.test")[0] == 250
        code, reply = client.rcpt("user@dest.test")
    assert code == 554
    assert reply.startswith(b"5.7.1")


@pytest.mark.parametrize(
    ("recipient", "code", "enhanced"),
    [
        ("user%dest.test@relay.postroom.test", 553, b"5.7.1"),  # percent hack
        ("dest.test!user@relay.postroom.test", 553, b"5.7.1"),  # bang path
        ('"user@dest.test"@relay.postroom.test', 553, b"5.7.1"),  # quoted local part
        ("@relay.postroom.test:user@dest.test", 554, b"5.7.1"),  # source route
        ("user@[127.0.0.10]", 554, b"5.7.1"),  # IP literal
        ("user@dest.test.", 553, b"5.1.2"),  # trailing dot: malformed domain
    ],
)
def test_relay_tricks_are_refused(
    edge: PostroomServer, recipient: str, code: int, enhanced: bytes
) -> None:
    client = RawClient(edge.smtp_port, OUTSIDER)
    client.command(b"EHLO outsider.test")
    assert client.command(b"MAIL FROM:<someone@outside.test>").startswith(b"250")
    reply = client.command(f"RCPT TO:<{recipient}>".encode())
    client.close()
    assert reply.startswith(f"{code} ".encode() + enhanced), reply


def test_relay_client_is_refused_the_tricks_too(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    client.command(b"MAIL FROM:<app@src.test>")
    for trick in (
        b"user%dest.test@dest.test",
        b"dest.test!user@dest.test",
        b'"a@b.test"@dest.test',
    ):
        assert client.command(b"RCPT TO:<" + trick + b">").startswith(b"553 5.7.1")
    client.close()


@pytest.mark.parametrize(
    "terminator",
    [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["LF.LF", "CRLF.LF", "LF.CRLF", "CR.CRLF", "CRLF.CR"],
)
def test_smtp_smuggling_is_not_end_of_data(
    edge: PostroomServer, world: World, token: str, terminator: bytes
) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    client.command(b"MAIL FROM:<app@src.test>")
    client.command(b"RCPT TO:<user@dest.test>")
    assert client.command(b"DATA").startswith(b"354")
    smuggled = (
        (
            f"Subject: outer {token}\r\n\r\nhello{{T}}MAIL FROM:<evil@src.test>\r\n"
            f"RCPT TO:<victim@dest.test>\r\nDATA\r\nSubject: smuggled {token}\r\n\r\nx\r\n.\r\n"
        )
        .encode()
        .replace(b"{T}", terminator)
    )
    client.sock.sendall(smuggled)
    final = client.reply()
    # The only end of data is the last CRLF.CRLF; the message had a bare CR/LF: refused.
    assert final.startswith(b"550 5.5.2"), final
    assert client.command(b"NOOP").startswith(b"250")
    client.close()
    time.sleep(1)
    assert with_token(world.dest.messages(), token) == []


def test_size_is_advertised_and_enforced(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    ehlo = client.command(b"EHLO app.src.test")
    assert b"250-SIZE 10000" in ehlo
    assert client.command(b"MAIL FROM:<app@src.test> SIZE=20000").startswith(b"552 5.3.4")
    assert client.command(b"MAIL FROM:<app@src.test> SIZE=2000").startswith(b"250")
    client.command(b"RCPT TO:<user@dest.test>")
    client.command(b"DATA")
    client.sock.sendall(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 150 + b".\r\n")
    assert client.reply().startswith(b"552 5.3.4")
    client.close()


def test_recipient_limit_gives_452(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    client.command(b"MAIL FROM:<app@src.test>")
    for index in range(3):
        assert client.command(f"RCPT TO:<u{index}@dest.test>".encode()).startswith(b"250 2.1.5")
    assert client.command(b"RCPT TO:<u3@dest.test>").startswith(b"452 4.5.3")
    client.close()


def test_long_line_in_data_is_refused(edge: PostroomServer, world: World, token: str) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    client.command(b"MAIL FROM:<app@src.test>")
    client.command(b"RCPT TO:<user@dest.test>")
    client.command(b"DATA")
    client.sock.sendall(f"Subject: {token}\r\n\r\n".encode() + b"y" * 1200 + b"\r\n.\r\n")
    assert client.reply().startswith(b"500 5.5.2")
    client.close()
    time.sleep(0.5)
    assert with_token(world.dest.messages(), token) == []


def test_idle_client_hears_421_and_is_disconnected(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    # The 1 s idle timeout, well within the socket's 10 s (no upper bound of our own:
    # a busy machine only delays the reply).
    assert client.reply().startswith(b"421 4.4.2")
    assert client.sock.recv(10) == b""
    client.close()


def test_slow_data_is_cut_by_the_data_timeout(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    client.command(b"EHLO app.src.test")
    client.command(b"MAIL FROM:<app@src.test>")
    client.command(b"RCPT TO:<user@dest.test>")
    client.command(b"DATA")
    started = time.monotonic()
    reply = b""
    for _ in range(20):  # a line every 0.5 s keeps the idle timer busy, not the DATA one
        try:
            client.sock.sendall(b"slow line\r\n")
        except OSError:
            break
        time.sleep(0.5)
        client.sock.settimeout(0.01)
        with contextlib.suppress(TimeoutError, BlockingIOError):
            reply += client.sock.recv(1024)
        if reply:
            break
    assert reply.startswith(b"421 4.4.2"), reply
    # The 3 s data timeout, not the 1 s idle one (which a slow machine could only make
    # look later, never earlier); the loop above bounds the wait.
    assert time.monotonic() - started > 2.5
    client.close()


def test_connections_per_client_ip_are_capped(edge: PostroomServer) -> None:
    first = RawClient(edge.smtp_port, "127.0.0.21")
    second = RawClient(edge.smtp_port, "127.0.0.21")
    third = RawClient(edge.smtp_port, "127.0.0.21")
    assert first.greeting.startswith(b"220 ")
    assert second.greeting.startswith(b"220 ")
    assert third.greeting.startswith(b"421 4.7.0")
    third.close()
    first.close()
    time.sleep(0.3)
    fourth = RawClient(edge.smtp_port, "127.0.0.21")
    assert fourth.greeting.startswith(b"220 ")
    second.close()
    fourth.close()


def test_every_reply_carries_an_enhanced_status_code(edge: PostroomServer) -> None:
    client = RawClient(edge.smtp_port)
    assert not ENHANCED.match(client.greeting)  # RFC 2034: not in the greeting
    ehlo = client.command(b"EHLO app.src.test")
    assert not ENHANCED.match(ehlo)  # nor in the EHLO reply
    replies = [
        client.command(b"NOOP"),
        client.command(b"RCPT TO:<user@dest.test>"),  # before MAIL
        client.command(b"DATA"),  # before RCPT
        client.command(b"FOO bar"),
        client.command(b"MAIL FROM:<bad address>"),
        client.command(b"MAIL FROM:<app@src.test>"),
        client.command(b"MAIL FROM:<app@src.test>"),  # nested
        client.command(b"RCPT TO:<user@dest.test>"),
        client.command(b"VRFY user"),
        client.command(b"RSET"),
        client.command(b"QUIT"),
    ]
    for reply in replies:
        assert ENHANCED.match(reply), reply
    client.close()


def test_accepted_message_from_relay_client_reaches_the_sink(
    edge: PostroomServer, world: World, token: str
) -> None:
    with smtplib.SMTP("127.0.0.1", edge.smtp_port, timeout=10) as client:
        client.ehlo("app.src.test")
        client.sendmail("app@src.test", ["user@dest.test"], message(token))
    assert len(wait_token(world.dest, token)) == 1


def test_a_mail_loop_is_refused_with_5_4_6(edge: PostroomServer, world: World, token: str) -> None:
    def with_hops(count: int, tag: str) -> bytes:
        hops = "".join(
            f"Received: from hop{i}.test by hop{i + 1}.test; x\r\n" for i in range(count)
        )
        return f"{hops}Subject: loop {tag}\r\n\r\nx\r\n".encode()

    with smtplib.SMTP("127.0.0.1", edge.smtp_port, timeout=10) as client:
        client.ehlo("app.src.test")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("app@src.test", ["user@dest.test"], with_hops(51, f"{token}x"))
        assert refused.value.smtp_code == 554
        assert refused.value.smtp_error.startswith(b"5.4.6")
        client.sendmail("app@src.test", ["user@dest.test"], with_hops(50, f"{token}ok"))
    assert len(wait_token(world.dest, f"{token}ok")) == 1
    assert with_token(world.dest.messages(), f"{token}x") == []
