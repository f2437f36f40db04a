"""A scriptable aiosmtpd sink, run as its own process by `tests.peers.sinks.AiosmtpdSink`.

Usage: python aiosmtpd_sink.py --host 127.0.0.10 --port 0 --directory DIR
       [--script FILE] [--hostname NAME] [--tls-cert PEM --tls-key PEM]
       [--parent-pid PID]

Contract:
- Listens on host:port (port 0 → a free one) and writes "HOST PORT\\n" to
  DIR/ready once accepting (written atomically: the parent polls for it).
- Every DATA transaction is written Maildir-style: DIR/tmp/NAME.eml and
  DIR/tmp/NAME.json, then renamed into DIR/new/ (.eml first, so a .json in new/
  always has its .eml). The JSON sidecar holds peer_ip, peer_port, helo,
  mail_from, mail_options, rcpt_tos, rcpt_options, tls, reply [code, text],
  received_at, and eml (the file name). Rejected DATA transactions are written
  too, with their reply, so tests can see what was refused.
- Replies are scripted by the JSON file --script, re-read at every command so a
  test may rewrite it at any time (write a temp file, then rename):
    {"mail": {"ADDR": [CODE, "TEXT"]},       per-sender MAIL replies
     "rcpt": {"ADDR": [CODE, "TEXT"]},       per-recipient RCPT replies
     "data": [[CODE, "TEXT"], ...],          DATA replies, consumed in order, then 250
     "data_delay_s": SECONDS}                wait before answering DATA
  Addresses match case-insensitively. The "data" sequence restarts whenever the
  script's content changes.
- Exits on SIGTERM/SIGINT, or within a second once --parent-pid is gone, so a
  crashed test run leaves no listener behind.

Self-contained on purpose (stdlib + aiosmtpd): it runs under sys.executable
without `tests` being importable. Untrusted input: whatever SMTP clients send;
it is stored, never interpreted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_DATA_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def _reply(code_and_text: Any) -> str:
    code, text = code_and_text
    return f"{int(code)} {text}".rstrip()


class ScriptedHandler:
    """aiosmtpd handler: scripted replies, every transaction stored on disk."""

    def __init__(self, directory: Path, script_path: Path | None) -> None:
        self.directory = directory
        self.script_path = script_path
        self._script_text = ""
        self._script: dict[str, Any] = {}
        self._data_replies_used = 0
        self._sequence = 0
        for sub in ("tmp", "new"):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    def script(self) -> dict[str, Any]:
        if self.script_path is None:
            return {}
        try:
            text = self.script_path.read_text()
        except FileNotFoundError:
            text = ""
        if text != self._script_text:
            self._script_text = text
            self._script = json.loads(text) if text.strip() else {}
            self._data_replies_used = 0
        return self._script

    @staticmethod
    def _lookup(table: dict[str, Any], address: str) -> Any:
        lowered = {key.lower(): value for key, value in table.items()}
        return lowered.get(address.lower())

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        scripted = self._lookup(self.script().get("mail", {}), address)
        if scripted is not None and int(scripted[0]) >= 400:
            return _reply(scripted)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return _reply(scripted) if scripted is not None else "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        scripted = self._lookup(self.script().get("rcpt", {}), address)
        if scripted is not None and int(scripted[0]) >= 400:
            return _reply(scripted)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return _reply(scripted) if scripted is not None else "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        script = self.script()
        delay_s = float(script.get("data_delay_s", 0))
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        sequence = script.get("data", [])
        if self._data_replies_used < len(sequence):
            reply = list(sequence[self._data_replies_used])
            self._data_replies_used += 1
        else:
            reply = [250, "2.0.0 OK queued"]
        self._store(session, envelope, reply)
        return _reply(reply)

    def _store(self, session: Session, envelope: Envelope, reply: list[Any]) -> None:
        self._sequence += 1
        name = f"{time.time_ns()}.{self._sequence:06d}.{os.getpid()}"
        peer = session.peer if isinstance(session.peer, tuple) else (str(session.peer), None)
        content = envelope.original_content or b""
        record = {
            "peer_ip": peer[0],
            "peer_port": peer[1],
            "helo": session.host_name,
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "tls": session.ssl is not None,
            "reply": [int(reply[0]), str(reply[1])],
            "received_at": time.time(),
            "eml": f"{name}.eml",
        }
        tmp, new = self.directory / "tmp", self.directory / "new"
        (tmp / f"{name}.eml").write_bytes(content)
        (tmp / f"{name}.json").write_text(json.dumps(record))
        os.replace(tmp / f"{name}.eml", new / f"{name}.eml")
        os.replace(tmp / f"{name}.json", new / f"{name}.json")


def _write_ready(directory: Path, host: str, port: int) -> None:
    partial = directory / "ready.tmp"
    partial.write_text(f"{host} {port}\n")
    os.replace(partial, directory / "ready")


async def serve(arguments: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    directory = Path(arguments.directory)
    handler = ScriptedHandler(directory, Path(arguments.script) if arguments.script else None)
    tls_context: ssl.SSLContext | None = None
    if arguments.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(arguments.tls_cert, arguments.tls_key)

    def new_session() -> SMTP:
        return SMTP(
            handler,
            hostname=arguments.hostname,
            ident="postroom test sink",
            tls_context=tls_context,
            require_starttls=False,
            data_size_limit=_DATA_SIZE_LIMIT_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    server = await loop.create_server(
        new_session, host=arguments.host, port=arguments.port, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = server.sockets[0].getsockname()[1]
    _write_ready(directory, arguments.host, port)
    async with server:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if arguments.parent_pid and os.getppid() != arguments.parent_pid:
                break  # our parent died: do not outlive the test run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.10")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--script")
    parser.add_argument("--hostname", default="aiosmtpd-sink.test")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--parent-pid", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
