"""The SMTP sink peers record what real clients send them, from the client's own IP."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from tests.peers.sinks import AiosmtpdSink, SmtpSink

pytestmark = pytest.mark.flow

SINK_IP = "127.0.0.10"
CLIENT_IP = "127.0.0.3"
MESSAGE = b"Subject: peer test\r\nFrom: a@client.test\r\n\r\nhello\r\n.leading dot\r\n"


def client(port: int) -> smtplib.SMTP:
    return smtplib.SMTP(SINK_IP, port, source_address=(CLIENT_IP, 0), timeout=10)


def test_smtp_sink_records_peer_helo_and_envelope() -> None:
    with SmtpSink(SINK_IP) as sink:
        with client(sink.port) as smtp:
            smtp.ehlo("client.test")
            refused = smtp.sendmail("a@client.test", ["b@remote.test", "c@remote.test"], MESSAGE)
            assert refused == {}
        (message,) = sink.wait_for(1, timeout_s=10)
        assert message.peer_ip == CLIENT_IP
        assert message.helo == "client.test"
        assert message.mail_from == "a@client.test"
        assert message.rcpt_tos == ("b@remote.test", "c@remote.test")
        # smtp-sink stores LF line ends and the dot-unstuffed body.
        assert message.data == MESSAGE.replace(b"\r\n", b"\n")


def test_smtp_sink_hard_rejects_every_rcpt() -> None:
    sink = SmtpSink(SINK_IP, hard_reject=["RCPT"], hard_reply="550 5.1.1 no such user")
    with sink, client(sink.port) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("a@client.test")
        assert smtp.rcpt("b@remote.test") == (550, b"5.1.1 no such user")
        smtp.rset()


def test_smtp_sink_soft_rejects_end_of_data() -> None:
    with SmtpSink(SINK_IP, soft_reject=["."], soft_reply="451 4.3.0 try later") as sink:
        with client(sink.port) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("a@client.test")
            smtp.rcpt("b@remote.test")
            assert smtp.data(MESSAGE) == (451, b"4.3.0 try later")
        # The dump still holds the refused transaction (documented limitation).
        assert len(sink.wait_for(1, timeout_s=10)) == 1


def test_smtp_sink_without_recording() -> None:
    with SmtpSink(SINK_IP, record=False) as sink:
        with client(sink.port) as smtp:
            smtp.sendmail("a@client.test", ["b@remote.test"], MESSAGE)
        assert sink.messages() == []


def test_aiosmtpd_sink_records_peer_and_scripted_rcpt_550() -> None:
    script = {"rcpt": {"bad@remote.test": [550, "5.1.1 no such user"]}}
    with AiosmtpdSink(SINK_IP, script=script) as sink:
        with client(sink.port) as smtp:
            smtp.ehlo("client.test")
            local_port = smtp.sock.getsockname()[1]
            smtp.mail("a@client.test")
            assert smtp.rcpt("bad@remote.test") == (550, b"5.1.1 no such user")
            assert smtp.rcpt("good@remote.test")[0] == 250
            assert smtp.data(MESSAGE)[0] == 250
        (message,) = sink.wait_for(1, timeout_s=10)
        assert message.peer_ip == CLIENT_IP
        assert message.peer_port == local_port
        assert message.helo == "client.test"
        assert message.mail_from == "a@client.test"
        assert message.rcpt_tos == ("good@remote.test",)
        assert message.data == MESSAGE
        assert message.reply == (250, "2.0.0 OK queued")
        assert message.tls is False


def test_aiosmtpd_sink_data_reply_sequence_and_live_script_change() -> None:
    script = {"data": [[451, "4.3.0 try later"], [554, "5.7.1 spam"]]}
    with AiosmtpdSink(SINK_IP, script=script) as sink:
        with client(sink.port) as smtp:
            smtp.ehlo("client.test")
            replies = []
            for _ in range(3):
                smtp.mail("a@client.test")
                smtp.rcpt("b@remote.test")
                replies.append(smtp.data(MESSAGE))
            assert replies == [
                (451, b"4.3.0 try later"),
                (554, b"5.7.1 spam"),
                (250, b"2.0.0 OK queued"),
            ]
            sink.set_script({"mail": {"a@client.test": [421, "4.7.0 go away"]}})
            assert smtp.mail("a@client.test") == (421, b"4.7.0 go away")
        assert len(sink.transactions()) == 3
        assert len(sink.wait_for(1, timeout_s=10)) == 1


def test_aiosmtpd_sink_starttls() -> None:
    with AiosmtpdSink(SINK_IP, starttls=True) as sink:
        assert sink.cert_path is not None
        context = ssl.create_default_context(cafile=str(sink.cert_path))
        with client(sink.port) as smtp:
            smtp.starttls(context=context)
            smtp.ehlo("client.test")
            smtp.sendmail("a@client.test", ["b@remote.test"], MESSAGE)
        (message,) = sink.wait_for(1, timeout_s=10)
        assert message.tls is True
        assert message.peer_ip == CLIENT_IP


def test_aiosmtpd_sink_without_starttls_does_not_offer_it() -> None:
    with AiosmtpdSink(SINK_IP) as sink, client(sink.port) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("starttls")


def test_wait_for_is_bounded() -> None:
    with AiosmtpdSink(SINK_IP) as sink, pytest.raises(TimeoutError):
        sink.wait_for(1, timeout_s=0.3)
