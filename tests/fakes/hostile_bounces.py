"""Hostile input for the bounce parser: issue 12's attacks, and a seeded mutator of real bounces.

`ATTACKS` maps a name to the bytes of one message that made the parser of
before issue 12 take seconds (or raise), each sized so that the old parser
took several seconds of CPU on an idle machine while the capped one reads it
in a few hundredths of a second. Each comes with the verdict kind the capped
parser gives it ("undefined" when a hard cap stops the parse). `over_smtp(name)`
is one with CRLF line ends, for those whose lines SMTP carries.

`Mutator(corpus)`: `case(seed, index)` derives one message from a corpus file,
deterministically from (seed, index), by one or a few of: byte flips,
truncation, deletion or repetition of a span, a splice of two files, huge
repeats of the tokens the parser's patterns and the MIME parser look for
(encoded words, blanks, "@", boundaries, "<script", brackets, folded lines,
semicolons in Content-Type...), wrapping in nested multiparts or message/rfc822
parts, and header floods. Most cases stay small; a few grow to about a
megabyte, the size where a superlinear cost shows.

`parse_observed(data)` parses one message and reports its CPU and wall time,
its verdict kind, the hard caps it logged, and any failure: an exception out of
`parse_bounce`, or its last-resort handler's "bounce parse failed".

Shared by tests/unit/mta/test_bounce_hostile.py, tests/unit/mta/test_bounce_fuzz.py,
tests/flow/test_bounce_rating.py and bench/fuzz_bounces.py.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postroom.mta.bounce.parse import parse_bounce

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "bounces"
PARSE_LOGGER = "postroom.mta.bounce.parse"

DAEMON = (
    b"From: Mail Delivery System <MAILER-DAEMON@far.test>\r\nTo: <bounce@x.test>\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
)


def _report(parts: list[tuple[bytes, bytes]], report_type: bytes = b"delivery-status") -> bytes:
    """A multipart/report of (Content-Type, body) parts, from the daemon."""
    body = b"".join(b"--B\r\nContent-Type: " + kind + b"\r\n\r\n" + text for kind, text in parts)
    return (
        DAEMON
        + b"Content-Type: multipart/report; report-type="
        + report_type
        + b'; boundary="B"\r\n\r\n'
        + body
        + b"--B--\r\n"
    )


def _plain(text: bytes) -> bytes:
    return DAEMON + b"Content-Type: text/plain\r\n\r\n" + text


def encoded_word_subject() -> bytes:
    """An ARF report whose Subject is 2.5 MB of RFC 2047 encoded words."""
    subject = b"=?utf-8?q?abuse_report?= " * 100_000
    return (
        b"From: fbl@far.test\r\nTo: fbl@x.test\r\nSubject: "
        + subject
        + b"\r\nMIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        + b"--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        + b"--F\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: someone@far.test\r\n--F--\r\n"
    )


def address_then_blanks() -> bytes:
    """An address opening a line, then a long run of spaces that does not end the line."""
    return _plain(b"The following address failed:\r\n\r\nuser@far.test" + b" " * 50_000 + b"x\r\n")


def line_of_blanks() -> bytes:
    """A line of blanks then a word: the returned-copy markers' leading blanks."""
    return _plain(b"Delivery failed.\r\n" + b" \t" * 6_000 + b"x\r\n")


def label_then_blanks() -> bytes:
    """ "to:" followed by thousands of spaces, many times: the labelled-address pattern."""
    return _plain((b"rcpt to:" + b" " * 3_000) * 100 + b"\r\n")


def _parts(kind: bytes, text: bytes, count: int) -> bytes:
    """A multipart/mixed of `count` parts of one type and text."""
    part = b"--B\r\nContent-Type: " + kind + b"\r\n\r\n" + text
    head = DAEMON + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
    return head + part * count + b"--B--\r\n"


def unclosed_scripts() -> bytes:
    """HTML parts of unclosed <style tags: the tag stripper's lazy scan."""
    return _parts(b"text/html", b"<style" * 11_000 + b"\r\n", 5)


def header_blocks() -> bytes:
    """Thousands of header-like blocks after blank lines, no address before them."""
    return _parts(b"text/plain", b"\nFrom: x\nTo: y\nSubject: z\n" * 2_700 + b"a@b.test\n", 4)


def deep_multipart() -> bytes:
    """Multiparts nested 3,000 deep: the MIME parser's recursion."""
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(3_000)
    )
    return DAEMON + nested + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def deep_json() -> bytes:
    """An SES notification nested 100,000 deep: the json module's recursion."""
    return _plain(b'{"notificationType": "Bounce", "bounce": ' + b"[" * 100_000 + b"\r\n")


def many_header_fields() -> bytes:
    """A returned original with 60,000 To fields, each another address."""
    fields = b"".join(b"To: u%d@far.test\r\n" % i for i in range(60_000))
    return _report(
        [(b"text/plain", b"Delivery failed.\r\n"), (b"message/rfc822", fields + b"\r\nhi\r\n")],
    )


def long_content_type() -> bytes:
    """A Content-Type of 100,000 semicolons inside an open quote: email.message's
    parameter parser is quadratic in them."""
    return DAEMON + b'Content-Type: multipart/mixed; x="' + b";" * 100_000 + b"\r\n\r\nhi\r\n"


def many_parts() -> bytes:
    """20 text parts each naming the same recipient a thousand times: their texts add
    up to 20,000 mentions, and each mention was compared with every later one."""
    return _parts(b"text/plain", b"<user@far.test>: 550 5.1.1 unknown\r\n" * 1_000, 20)


def too_many_parts() -> bytes:
    """Parts past the hard cap (not slow before: the walk stopped at 200)."""
    return _parts(b"text/plain", b"x\r\n", 1_500)


@dataclass(frozen=True, slots=True)
class Attack:
    build: Callable[[], bytes]
    kind: str  # the verdict kind the capped parser gives
    cap: str = ""  # the hard cap it passes, when it passes one


ATTACKS: dict[str, Attack] = {
    "encoded_word_subject": Attack(encoded_word_subject, "undefined", "header section"),
    "address_then_blanks": Attack(address_then_blanks, "text"),
    "line_of_blanks": Attack(line_of_blanks, "none"),
    "label_then_blanks": Attack(label_then_blanks, "none"),
    "unclosed_scripts": Attack(unclosed_scripts, "none"),
    "header_blocks": Attack(header_blocks, "none"),
    "deep_multipart": Attack(deep_multipart, "undefined", "MIME depth"),
    "deep_json": Attack(deep_json, "undefined", "JSON depth"),
    "many_header_fields": Attack(many_header_fields, "undefined", "header fields"),
    "long_content_type": Attack(long_content_type, "none"),
    "many_parts": Attack(many_parts, "text"),
    "too_many_parts": Attack(too_many_parts, "undefined", "MIME parts"),
}


def over_smtp(name: str) -> bytes:
    """The attack as port 25 takes it: CRLF line ends (a bare LF is refused)."""
    data = ATTACKS[name].build().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) < 998, f"{name}: lines too long"
    return data


def _sized(rng: random.Random, sizes: tuple[int, ...]) -> int:
    """One of `sizes` (smallest first), each half as likely as the one before: most
    cases stay small and quick, and every run still has its share of huge ones."""
    weights = [2 ** (len(sizes) - index) for index in range(len(sizes))]
    return rng.choices(sizes, weights)[0]


def corpus_files() -> list[Path]:
    """Every message of the shared bounce corpus (bounces, not-bounces, flufl.bounce)."""
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file() and path.suffix in (".eml", ".txt") and "LICENSE" not in path.name
    )


# Tokens whose long runs once cost superlinear time somewhere, or that the patterns seek.
_TOKENS = (
    b"=?utf-8?q?abc?= ",
    b"=?iso-8859-1?b?YWJj?=",
    b" ",
    b"\t",
    b"@",
    b"a@b.test ",
    b"<a@b.test>: ",
    b"a.",
    b"-",
    b">",
    b"\n",
    b"\r\n",
    b"\r\n ",
    b"--B\r\n",
    b"<script",
    b"<",
    b"&#1",
    b"[",
    b"{",
    b'"',
    b";",
    b"to: ",
    b"rcpt to:",
    b"for ",
    b"host x [1.2.3.4]: ",
    b"550 5.1.1 ",
    b"5.1.1.",
    b"Final-Recipient: rfc822; ",
    b"\r\nFrom: x\r\nTo: y\r\nSubject: z\r\n",
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
)


class Mutator:
    """Seeded mutations of corpus messages (module docstring)."""

    def __init__(self, files: list[Path], max_bytes: int = 1_200_000) -> None:
        self.messages = [path.read_bytes() for path in files]
        self.names = [str(path.relative_to(CORPUS)) for path in files]
        self.max_bytes = max_bytes
        self._operations: list[Callable[[random.Random, bytes], bytes]] = [
            self._flip,
            self._truncate,
            self._delete,
            self._repeat_span,
            self._splice,
            self._token_run,
            self._token_run,
            self._nest,
            self._header_flood,
            self._long_header,
            self._mime_parameters,
        ]

    def case(self, seed: int, index: int) -> tuple[str, bytes]:
        """(what was done, the message) for case `index` of run `seed`."""
        rng = random.Random(seed * 1_000_003 + index)
        which = rng.randrange(len(self.messages))
        data = self.messages[which]
        done = [self.names[which]]
        for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
            operation = rng.choice(self._operations)
            data = operation(rng, data)[: self.max_bytes]
            done.append(operation.__name__.lstrip("_"))
        return " ".join(done), data

    def _flip(self, rng: random.Random, data: bytes) -> bytes:
        if not data:
            return data
        buffer = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            position = rng.randrange(len(buffer))
            buffer[position] = rng.choice((buffer[position] ^ (1 << rng.randrange(8)), 0, 0xFF))
        return bytes(buffer)

    def _truncate(self, rng: random.Random, data: bytes) -> bytes:
        return data[: rng.randint(0, len(data))]

    def _delete(self, rng: random.Random, data: bytes) -> bytes:
        start = rng.randint(0, len(data))
        return data[:start] + data[start + rng.randint(1, 2_000) :]

    def _repeat_span(self, rng: random.Random, data: bytes) -> bytes:
        start = rng.randint(0, len(data))
        span = data[start : start + rng.choice((1, 2, 8, 64, 512))]
        times = _sized(rng, (2, 10, 100, 1_000, 10_000))
        return data[:start] + span * times + data[start:]

    def _splice(self, rng: random.Random, data: bytes) -> bytes:
        other = rng.choice(self.messages)
        return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]

    def _token_run(self, rng: random.Random, data: bytes) -> bytes:
        token = rng.choice(_TOKENS)
        size = _sized(rng, (100, 1_000, 10_000, 100_000, 600_000))
        position = rng.randint(0, len(data))
        return data[:position] + token * max(1, size // len(token)) + data[position:]

    def _nest(self, rng: random.Random, data: bytes) -> bytes:
        depth = _sized(rng, (5, 20, 100, 2_000))
        if rng.random() < 0.5:
            wrapper = b"".join(
                b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
                for i in range(depth)
            )
        else:
            wrapper = b"Content-Type: message/rfc822\r\n\r\n" * depth
        return DAEMON + wrapper + data

    def _header_flood(self, rng: random.Random, data: bytes) -> bytes:
        name = rng.choice((b"Received", b"To", b"X-Junk", b"Subject", b"From"))
        count = _sized(rng, (10, 500, 5_000, 50_000))
        return b"".join(b"%s: v%d@far.test\r\n" % (name, i) for i in range(count)) + data

    def _long_header(self, rng: random.Random, data: bytes) -> bytes:
        name = rng.choice((b"Subject", b"From", b"To", b"Auto-Submitted", b"X-Long"))
        value = rng.choice(_TOKENS) * _sized(rng, (1_000, 20_000, 200_000))
        return name + b": " + value + b"\r\n" + data

    def _mime_parameters(self, rng: random.Random, data: bytes) -> bytes:
        parameters = rng.choice((b";", b'x=";', b"a=b;", b"name*0*=utf-8''%41;"))
        value = b"multipart/mixed; " + parameters * _sized(rng, (10, 1_000, 50_000))
        name = rng.choice((b"Content-Type", b"Content-Disposition"))
        return name + b": " + value + b"\r\n" + data


@dataclass(frozen=True, slots=True)
class Observation:
    """One parse watched: its CPU and wall time, verdict kind, and any failure."""

    cpu_s: float
    wall_s: float
    kind: str
    caps: tuple[str, ...]  # the hard caps the parse logged as passed
    failure: str  # "" when none: the exception raised, or the last resort's log line


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({record.exc_info[0].__name__}: {record.exc_info[1]})"  # type: ignore[union-attr]
        self.messages.append(text)


def parse_observed(data: bytes) -> Observation:
    """`parse_bounce(data)`, watched: its parse-log warnings caught, never raises."""
    logger = logging.getLogger(PARSE_LOGGER)
    records = _Records()
    logger.addHandler(records)
    propagate, logger.propagate = logger.propagate, False
    failure, kind = "", "raised"
    started_cpu, started_wall = time.thread_time(), time.perf_counter()
    try:
        kind = parse_bounce(data).kind
    except BaseException as error:
        failure = f"{type(error).__name__}: {error}"[:300]
    finally:
        cpu_s, wall_s = time.thread_time() - started_cpu, time.perf_counter() - started_wall
        logger.removeHandler(records)
        logger.propagate = propagate
    caps = tuple(
        message.partition("verdict undefined: ")[2].partition(":")[0]
        for message in records.messages
        if "verdict undefined: " in message
    )
    failure = failure or next((m for m in records.messages if "parse failed" in m), "")
    return Observation(cpu_s, wall_s, kind, caps, failure)
