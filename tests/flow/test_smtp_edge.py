"""The SMTP edge: no open relay, no smuggling, RFC 5321 limits and syntax, enhanced
codes, junk and error limits, log lines clients cannot forge, TLS handshakes that
end badly and leave nothing behind.

Port 25 mostly; the same server has submission listeners (587 STARTTLS, 465
implicit TLS, a throwaway CA's certificate) for what concerns every listener.
Clients connect from distinct loopback addresses: 127.0.0.1 is in the relay
network, 127.0.0.20 and up are not. Nothing refused may reach a sink.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from tests.flow.conftest import World, free_tcp_port, start_postroom, with_token
from tests.flow.test_relay_flow import message, wait_token
from tests.peers.postroom import PostroomServer

pytestmark = pytest.mark.flow

OUTSIDER = "127.0.0.20"
ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


IDLE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Edge:
    """A postroom with port 25 (`server.smtp_port`) and submission on 587 and 465."""

    server: PostroomServer
    starttls_port: int
    tls_port: int


def start_edge(directory: Path, world: World, log_format: str) -> Edge:
    certificate = trustme.CA().issue_cert("relay.postroom.test", "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    starttls_port, tls_port = free_tcp_port(), free_tcp_port()
    server = start_postroom(
        directory,
        world,
        relay_networks=("127.0.0.1/32",),
        inbound=(
            f'max_recipients = 3\nmax_message_size = 10000\nidle_timeout = "{IDLE_TIMEOUT_S}s"\n'
            'data_timeout = "3s"\nmax_connections_per_ip = 2\n'
            'junk_command_limit = 30\nerror_sleep = "0.2s"'
        ),
        extra=(
            f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n[smtp.submission]\n'
            f'listen = ["127.0.0.1:{starttls_port}"]\ntls_listen = ["127.0.0.1:{tls_port}"]\n\n'
            f'[logging]\nformat = "{log_format}"\n'
        ),
    )
    deadline = time.monotonic() + 20  # `start` waited for port 25 only
    for port in (starttls_port, tls_port):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise
                time.sleep(0.1)
    return Edge(server, starttls_port, tls_port)


@pytest.fixture(scope="module")
def edge_listeners(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    edge = start_edge(tmp_path_factory.mktemp("edge"), world, "text")
    yield edge
    edge.server.stop()


@pytest.fixture(scope="module")
def edge(edge_listeners: Edge) -> PostroomServer:
    return edge_listeners.server


@pytest.fixture(scope="module")
def json_edge(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    edge = start_edge(tmp_path_factory.mktemp("edge-json"), world, "json")
    yield edge
    edge.server.stop()


class RawClient:
    """A byte-exact SMTP client: what smtplib would never send."""

    def __init__(self, port: int, source: str = "127.0.0.1", *, tls: bool = False) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        if tls:  # implicit TLS (465)
            self.sock = client_context().wrap_socket(self.sock)
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

    def starttls(self) -> None:
        assert self.command(b"STARTTLS").startswith(b"220 ")
        self.sock = client_context().wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


def client_context() -> ssl.SSLContext:
    """These tests judge the server's conduct, not its certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


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


# -- the protocol battery: raw command sequences and what each must hear -----------------

EHLO = b"EHLO app.src.test\r\n"
MAIL = b"MAIL FROM:<app@src.test>\r\n"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        # Paths: nothing guessed (RFC 5321 4.1.2; 501 with RFC 3463 X.1.7 / X.1.3).
        (b"MAIL FROM:<a@x.test\r\n", [b"501 5.1.7"]),  # unclosed <
        (b"MAIL FROM:a@x.test>\r\n", [b"501 5.1.7"]),
        (b"MAIL FROM:a@x.test\r\n", [b"501 5.1.7"]),
        (b'MAIL FROM:<"a@x.test>\r\n', [b"501 5.1.7"]),  # unbalanced quote
        (b"MAIL FROM:<a@x.test>junk\r\n", [b"501 5.1.7"]),
        (b"MAIL FROM:<\xc3(@x.test>\r\n", [b"501 5.1.7"]),  # not UTF-8
        (b"MAIL FROM:<a\x1b[2J@x.test>\r\n", [b"501 5.1.7"]),
        (b"MAIL FROM:<a@x.test> <b@y.test>\r\n", [b"501 5.5.4"]),  # not a parameter
        (b"MAIL FROM:<a@x.test> FOO=1\r\n", [b"555 5.5.4"]),  # an unknown one
        (b'MAIL FROM:<"app"@src.test>\r\n', [b"250 2.1.0"]),  # needless quotes are fine
        (b"MAIL FROM:<app@src..test>\r\n", [b"553 5.1.8"]),  # policy: the sender's domain
        (MAIL + b"RCPT TO:<user@dest.test\r\n", [b"250 2.1.0", b"501 5.1.3"]),
        (MAIL + b"RCPT TO:<>\r\n", [b"250 2.1.0", b"501 5.1.3"]),
        (MAIL + b"RCPT TO:<\xff@dest.test>\r\n", [b"250 2.1.0", b"501 5.1.3"]),
        (MAIL + b"RCPT TO:<@hop.test:user@dest.test>\r\n", [b"250 2.1.0", b"250 2.1.5"]),
        # Lines end with CRLF only (RFC 5321 2.3.8): the whole line is refused, and
        # nothing of it runs (the RCPT after it finds no MAIL).
        (
            b"MAIL FROM:<a@src.test>\nRCPT TO:<user@dest.test>\r\nRCPT TO:<user@dest.test>\r\n",
            [b"500 5.5.2", b"500 5.5.2", b"503 5.5.1"],
        ),
        (
            b"MAIL FROM:<a@src.test>\rRCPT TO:<user@dest.test>\r\nRCPT TO:<user@dest.test>\r\n",
            [b"500 5.5.2", b"503 5.5.1"],
        ),
        (b"NOOP\n", [b"500 5.5.2"]),  # an LF-only client hears why at once
        # Other commands that could echo what they were sent.
        (b"VRFY \xc3(\r\n", [b"501 5.5.4"]),
        (b"VRFY <user@dest.test\r\n", [b"252 2.5.0"]),  # one answer, nothing parsed
        (b"EHLO \xc3(\r\n", [b"501 5.5.4"]),
        (b"HELP \xff\r\n", [b"501 5.5.4"]),
        (b"FOO\x1b[2J bar\r\n", [b"500 5.5.2"]),
        (b"NOOP " + b"x" * 600 + b"\r\n", [b"500 5.5.2"]),
        (b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n", [b"500 5.5.2", b"250 2.0.0"]),
        (b"\r\n", [b"500 5.5.2"]),
        (b"HELP\r\n", [b"250 2.0.0 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP"]),
        # Pipelining still works.
        (
            MAIL + b"RCPT TO:<user@dest.test>\r\nRSET\r\n",
            [b"250 2.1.0", b"250 2.1.5", b"250 2.0.0"],
        ),
    ],
)
def test_protocol_battery(edge: PostroomServer, sent: bytes, expected: list[bytes]) -> None:
    client = RawClient(edge.smtp_port)
    assert client.command(EHLO[:-2]).startswith(b"250")
    client.sock.sendall(sent)
    replies = [client.reply() for _ in expected]
    client.close()
    assert [reply[: len(prefix)] for reply, prefix in zip(replies, expected, strict=True)] == (
        expected
    ), replies


@pytest.mark.parametrize(
    "sent", [b"GET / HTTP/1.1\r\nHost: mx.test\r\n", b"POST / HTTP/1.0\r\n", b"Subject: hi\r\n"]
)
def test_what_is_no_smtp_dialogue_ends_the_session(edge: PostroomServer, sent: bytes) -> None:
    # An HTTP request (a browser made to post to port 25) or a message without a
    # dialogue: nothing after it may run as a command.
    client = RawClient(edge.smtp_port)
    client.sock.sendall(sent + MAIL)
    assert client.reply().startswith(b"421 4.7.0")
    assert client.reply() == b""
    client.close()


def test_junk_commands_then_errors_end_a_session(edge: PostroomServer) -> None:
    # junk_command_limit = 30, soft 10, hard 20 errors: NOOPs 31 to 50 are errors,
    # 41 to 50 wait error_sleep (0.2 s) each, and the 50th is the last.
    client = RawClient(edge.smtp_port)
    started = time.monotonic()
    replies = [client.command(b"NOOP") for _ in range(50)]
    assert all(reply.startswith(b"250 2.0.0") for reply in replies), replies
    assert time.monotonic() - started >= 10 * 0.2
    assert client.reply().startswith(b"421 4.7.0")
    assert client.reply() == b""
    client.close()


def test_submission_counts_errors_too(edge_listeners: Edge) -> None:
    client = RawClient(edge_listeners.starttls_port)
    client.command(EHLO[:-2])
    replies = [client.command(b"MAIL FROM:<app@src.test>") for _ in range(20)]
    assert all(reply.startswith(b"530 5.7.0") for reply in replies), replies
    assert client.reply().startswith(b"421 4.7.0")
    client.close()


# -- log lines clients cannot forge ------------------------------------------------------


def new_log_lines(server: PostroomServer, offset: int, token: str) -> list[str]:
    """The log's lines after `offset` that mention `token`, waiting (bounded) for one."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.log()[offset:].splitlines() if token in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_client_text_cannot_forge_a_log_line(
    request: pytest.FixtureRequest, log_format: str, token: str
) -> None:
    edge: Edge = request.getfixturevalue("edge_listeners" if log_format == "text" else "json_edge")
    server = edge.server
    forged = f"\r\n2024-01-01 00:00:00,000 ERROR postroom: forged {token}"
    offset = len(server.log())

    # Port 25: an EHLO name and a MAIL FROM with terminal escapes and line separators.
    client = RawClient(server.smtp_port)
    assert client.command(f"EHLO helo-{token}\x1b[2J\u2028.test".encode()).startswith(b"250")
    reply = client.command(f"MAIL FROM:<mail-{token}\x1b[31m\x85\u2028@x.test>".encode())
    assert reply.startswith(b"501 5.1.7"), reply
    client.close()
    # Submission: an AUTH PLAIN user name with CR LF.
    client = RawClient(edge.tls_port, tls=True)
    client.command(b"EHLO app.client.test")
    blob = base64.b64encode(f"\0auth-{token}{forged}\0wrong-password".encode())
    assert client.command(b"AUTH PLAIN " + blob).startswith(b"535 5.7.8")
    client.close()

    for kind in ("mail", "auth"):
        lines = new_log_lines(server, offset, f"{kind}-{token}")
        assert len(lines) == 1, lines  # one record, one line
        message = json.loads(lines[0])["message"] if log_format == "json" else lines[0]
        if kind == "mail":
            assert f"helo=<helo-{token}\\x1b[2J\\u2028.test>" in message, message
            assert f"<mail-{token}\\x1b[31m\\x85\\u2028@x.test>" in message, message
        else:
            assert "\\r\\n2024-01-01" in message, message
    # The forged "line" is inside the AUTH line, not a line of its own.
    (forged_line,) = new_log_lines(server, offset, f"forged {token}")
    assert f"auth-{token}" in forged_line


# -- TLS handshakes that end badly leave nothing behind ---------------------------------

CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16


def assert_log_stays_clean(server: PostroomServer, offset: int) -> None:
    """After every idle timer of the sessions above could have fired."""
    time.sleep(IDLE_TIMEOUT_S * 3)
    tail = server.log()[offset:]
    for sign in ("Traceback", " ERROR ", " WARNING ", "AssertionError", "Exception in callback"):
        assert sign not in tail, tail


def test_clients_leaving_during_a_tls_handshake_leave_nothing_behind(edge_listeners: Edge) -> None:
    server = edge_listeners.server
    offset = len(server.log())
    for half_hello in (b"", CLIENT_HELLO_START):
        raw = socket.create_connection(("127.0.0.1", edge_listeners.tls_port), timeout=10)
        raw.sendall(half_hello)
        raw.close()
        client = RawClient(edge_listeners.starttls_port)
        client.command(EHLO[:-2])
        assert client.command(b"STARTTLS").startswith(b"220 ")
        client.sock.sendall(half_hello)
        client.close()
    # And one that leaves in the middle of DATA, over TLS.
    client = RawClient(edge_listeners.tls_port, tls=True)
    client.command(EHLO[:-2])
    client.sock.sendall(MAIL + b"RCPT TO:<user@dest.test>\r\nDATA\r\nSubject: half\r\n")
    client.close()
    assert_log_stays_clean(server, offset)


def test_a_stalled_starttls_handshake_is_cut_and_frees_its_slot(edge_listeners: Edge) -> None:
    # max_connections_per_ip = 2: had the sessions lived on, the third would hear 421.
    source = "127.0.0.22"
    offset = len(edge_listeners.server.log())
    stalled = []
    for _ in range(2):
        client = RawClient(edge_listeners.starttls_port, source)
        client.command(EHLO[:-2])
        assert client.command(b"STARTTLS").startswith(b"220 ")
        stalled.append(client)  # and never a ClientHello
    for client in stalled:
        client.sock.settimeout(IDLE_TIMEOUT_S * 10)
        with contextlib.suppress(ConnectionResetError):
            assert client.sock.recv(100) == b""  # the server ended it
        client.close()
    deadline = time.monotonic() + 10
    while True:
        third = RawClient(edge_listeners.starttls_port, source)
        third.close()
        if third.greeting.startswith(b"220 ") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert third.greeting.startswith(b"220 "), third.greeting
    assert_log_stays_clean(edge_listeners.server, offset)


def test_clients_that_close_before_the_greeting_leave_no_slot_taken(edge: PostroomServer) -> None:
    # max_connections_per_ip = 2. A client that connects and closes at once used to
    # hold its slot until the idle timeout (its session task was cancelled before it
    # first ran): ten of them and this address heard 421 until then.
    source = "127.0.0.23"
    for _ in range(10):
        socket.create_connection(("127.0.0.1", edge.smtp_port), source_address=(source, 0)).close()
    # Until the server has seen the closes (a busy machine is slow to), but well before the
    # idle timer would have freed the slots anyway.
    deadline = time.monotonic() + IDLE_TIMEOUT_S * 0.7
    while True:
        first, second = RawClient(edge.smtp_port, source), RawClient(edge.smtp_port, source)
        first.close()
        second.close()
        admitted = first.greeting.startswith(b"220 ") and second.greeting.startswith(b"220 ")
        if admitted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert admitted, (first.greeting, second.greeting)
