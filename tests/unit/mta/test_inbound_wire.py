"""The command phase's syntax: command lines (CRLF only, strict UTF-8, lengths)
and RFC 5321 paths (nothing guessed, nothing repaired)."""

from __future__ import annotations

import time

import pytest

from postroom.core.reply import Reply
from postroom.mta.inbound.wire import (
    BAD_ARGUMENT,
    BAD_SYNTAX,
    BARE_LINE_ENDING,
    LINE_TOO_LONG,
    RECIPIENT_SYNTAX,
    SENDER_SYNTAX,
    Command,
    parse_command,
    parse_path,
)

# -- command lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NOOP\r\n", Command("NOOP", None)),
        (b"noop  \r\n", Command("NOOP", None)),
        (b"mail FROM:<a@b.test> SIZE=10\r\n", Command("MAIL", "FROM:<a@b.test> SIZE=10")),
        (b"EHLO  client.test \r\n", Command("EHLO", "client.test")),
        ("MAIL FROM:<jos\u00e9@b.test>\r\n".encode(), Command("MAIL", "FROM:<jos\u00e9@b.test>")),
    ],
)
def test_command_lines(line: bytes, expected: Command) -> None:
    assert parse_command(line, smtputf8=True) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<a@x.test>\n",  # bare LF: the line goes on until a CRLF
        b"MAIL FROM:<a@x.test>\rRCPT TO:<b@y.test>\r\n",  # bare CR inside
        b"NOOP\r\r\n",
        b"\n",
        b"NOOP\r",  # no LF at all (never read so, but not a line either)
    ],
)
def test_a_bare_cr_or_lf_refuses_the_line(line: bytes) -> None:
    assert parse_command(line, smtputf8=True) is BARE_LINE_ENDING
    assert (BARE_LINE_ENDING.code, BARE_LINE_ENDING.enhanced) == (500, "5.5.2")


@pytest.mark.parametrize("line", [b"\r\n", b"   \r\n", b"N\xc3\xa9OP\r\n"])
def test_empty_lines_and_non_ascii_verbs_are_bad_syntax(line: bytes) -> None:
    assert parse_command(line, smtputf8=True) is BAD_SYNTAX


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        (b"MAIL FROM:<\xc3(@x.test>\r\n", SENDER_SYNTAX),
        (b"RCPT TO:<\xff@x.test>\r\n", RECIPIENT_SYNTAX),
        (b"VRFY \xc3(\r\n", BAD_ARGUMENT),
        (b"EHLO \xed\xa0\x80.test\r\n", BAD_ARGUMENT),  # an encoded surrogate is not UTF-8
        (b"AUTH PLAIN \x80\r\n", BAD_ARGUMENT),
    ],
)
def test_arguments_that_are_not_utf8_are_refused_by_command(line: bytes, refusal: Reply) -> None:
    assert parse_command(line, smtputf8=True) is refusal


def test_without_smtputf8_arguments_are_ascii() -> None:
    assert parse_command("EHLO h\u00e9.test\r\n".encode(), smtputf8=False) is BAD_ARGUMENT
    assert parse_command(b"EHLO h.test\r\n", smtputf8=False) == Command("EHLO", "h.test")


def test_command_line_lengths() -> None:
    # 512 octets (RFC 5321 4.5.3.1.4), MAIL 548 for SIZE and SMTPUTF8; CRLF not counted.
    assert parse_command(b"NOOP " + b"x" * 507 + b"\r\n", smtputf8=True) != LINE_TOO_LONG
    assert parse_command(b"NOOP " + b"x" * 508 + b"\r\n", smtputf8=True) is LINE_TOO_LONG
    mail = b"MAIL FROM:<" + b"a" * 536 + b">\r\n"
    assert len(mail) - 2 == 548
    assert parse_command(mail, smtputf8=True) == Command("MAIL", mail[5:-2].decode())
    assert parse_command(mail[:-3] + b"a>\r\n", smtputf8=True) is LINE_TOO_LONG


# -- paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<a@x.test>", ("a@x.test", "")),
        ("<a.b+tag@x.test> SIZE=100 BODY=8BITMIME", ("a.b+tag@x.test", "SIZE=100 BODY=8BITMIME")),
        ("<bounce+Ab3_x-9@bounces.x.test>", ("bounce+Ab3_x-9@bounces.x.test", "")),
        ("<@relay.test,@hop.test:user@dest.test>", ("user@dest.test", "")),  # route dropped
        ('<"john"@x.test>', ("john@x.test", "")),  # needless quotes go
        ('<"j\\ohn.doe"@x.test>', ("john.doe@x.test", "")),
        ('<"a b"@x.test>', ('"a b"@x.test', "")),  # needed quotes stay (policy decides)
        ('<"user@dest.test"@x.test>', ('"user@dest.test"@x.test', "")),
        ('<"a\\"b"@x.test>', ('"a\\"b"@x.test', "")),
        ("<user@[192.0.2.1]>", ("user@[192.0.2.1]", "")),
        ("<user@[IPv6:2001:db8::1]>", ("user@[IPv6:2001:db8::1]", "")),
        ("<user@dest.test.>", ("user@dest.test.", "")),  # policy: 553 5.1.2
        ("<jos\u00e9@b\u00fccher.test> SMTPUTF8", ("jos\u00e9@b\u00fccher.test", "SMTPUTF8")),
    ],
)
def test_valid_paths(argument: str, expected: tuple[str, str]) -> None:
    assert parse_path(argument, null_allowed=False) == expected


def test_the_null_path_only_where_allowed() -> None:
    assert parse_path("<>", null_allowed=True) == ("<>", "")
    assert parse_path("<> SIZE=10", null_allowed=True) == ("<>", "SIZE=10")
    assert parse_path("<>", null_allowed=False) is None


@pytest.mark.parametrize(
    "argument",
    [
        "<a@x.test",  # unclosed <
        "a@x.test>",  # no <
        "a@x.test",  # no brackets at all (RFC 5321 requires them)
        '<"a@x.test>',  # unbalanced quote
        '<a"@x.test>',
        "<a@x.test>junk",  # text glued after >
        "<a@x.test>>",
        "<<a@x.test>>",
        "<a@>",
        "<@x.test>",
        "<a>",
        "<a b@x.test>",
        "<a..b@x.test>",
        "<.a@x.test>",
        "<a@x.test,b@y.test>",
        "<@relay.test:>",
        "<a@x_y.test>",
        "<a@[]>",
        "<a\x1b[31m@x.test>",  # controls are no atext
        "<a\x00@x.test>",
        "<a\u0085b@x.test>",  # a C1 control, however well encoded
        '<"a\x07"@x.test>',
        "",
        "<",
        ">",
    ],
)
def test_paths_that_are_not_rfc5321_are_refused(argument: str) -> None:
    assert parse_path(argument, null_allowed=True) is None


@pytest.mark.parametrize(
    "argument",
    [
        "<" + "a." * 200_000 + "@x.test>",
        '<"' + "\\a" * 200_000 + "@x.test>",
        "<@" + "a," * 200_000 + "b@x.test>",
        "<" + "a" * 400_000 + "@" + "b" * 400_000,
    ],
)
def test_parsing_stays_linear_on_hostile_input(argument: str) -> None:
    # Far beyond any line the session reads (1001 octets); a backtracking blow-up
    # would take minutes here, a linear scan takes milliseconds.
    started = time.process_time()
    parse_path(argument, null_allowed=True)
    assert time.process_time() - started < 2.0
