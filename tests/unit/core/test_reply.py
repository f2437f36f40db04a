"""Reply values: class checks at construction, wire text, parsing remote replies."""

from __future__ import annotations

import dataclasses

import pytest

from postroom.core.reply import Reply


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [
        (250, "2.0.0"),
        (251, "2.1.5"),
        (421, "4.4.2"),
        (451, "4.3.0"),
        (550, "5.1.1"),
        (554, "5.7.1"),
    ],
)
def test_matching_classes_are_accepted(code: int, enhanced: str) -> None:
    reply = Reply(code, enhanced, "text")
    assert (reply.code, reply.enhanced, reply.text) == (code, enhanced, "text")


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [
        (550, "4.1.1"),
        (450, "5.1.1"),
        (250, "5.0.0"),
        (250, "4.0.0"),
        (421, "2.0.0"),
        (552, "2.0.0"),
    ],
)
def test_mismatched_classes_are_refused(code: int, enhanced: str) -> None:
    with pytest.raises(ValueError, match="class mismatch"):
        Reply(code, enhanced, "text")


def test_3xx_replies_take_a_2xx_enhanced_code() -> None:
    assert Reply(354, "2.0.0", "End data with <CR><LF>.<CR><LF>").code == 354
    assert Reply(334, "2.7.0", "").enhanced == "2.7.0"
    for enhanced in ("3.0.0", "4.0.0", "5.0.0"):
        with pytest.raises(ValueError):
            Reply(354, enhanced, "go ahead")


@pytest.mark.parametrize("code", [0, 199, 600, 999, -250])
def test_codes_out_of_range_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Reply(code, "2.0.0", "text")


@pytest.mark.parametrize(
    "enhanced",
    ["", "5", "5.1", "5.1.1.1", "3.1.1", "6.0.0", "5.1000.1", "5.a.1", " 5.1.1", "5.1.1 "],
)
def test_malformed_enhanced_codes_are_refused(enhanced: str) -> None:
    with pytest.raises(ValueError, match="enhanced status code"):
        Reply(550, enhanced, "text")


def test_replies_are_frozen_values() -> None:
    reply = Reply(550, "5.1.1", "No such user")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.code = 250  # type: ignore[misc]
    assert reply == Reply(550, "5.1.1", "No such user")
    assert hash(reply) == hash(Reply(550, "5.1.1", "No such user"))


def test_classification() -> None:
    ok, temporary, permanent = (
        Reply(250, "2.0.0", ""),
        Reply(451, "4.3.0", ""),
        Reply(550, "5.0.0", ""),
    )
    assert (ok.is_success, ok.is_temporary, ok.is_permanent) == (True, False, False)
    assert (temporary.is_success, temporary.is_temporary, temporary.is_permanent) == (
        False,
        True,
        False,
    )
    assert (permanent.is_success, permanent.is_temporary, permanent.is_permanent) == (
        False,
        False,
        True,
    )
    assert Reply(354, "2.0.0", "").is_success


def test_wire_single_line() -> None:
    assert Reply(550, "5.1.1", "<a@b.test>: No such user").wire() == (
        "550 5.1.1 <a@b.test>: No such user"
    )
    assert str(Reply(250, "2.0.0", "Ok")) == "250 2.0.0 Ok"


def test_wire_multi_line_repeats_code_and_enhanced_code_with_dashes() -> None:
    reply = Reply(550, "5.7.1", "Message refused\nSee https://example.test/why\nSorry")
    assert reply.wire() == (
        "550-5.7.1 Message refused\r\n550-5.7.1 See https://example.test/why\r\n550 5.7.1 Sorry"
    )


def test_wire_handles_crlf_text_and_empty_text() -> None:
    assert Reply(451, "4.3.0", "one\r\ntwo").wire() == "451-4.3.0 one\r\n451 4.3.0 two"
    assert Reply(250, "2.0.0", "").wire() == "250 2.0.0 "
    assert "\n" not in Reply(250, "2.0.0", "no newline").wire()


def test_named_constructors() -> None:
    assert Reply.ok() == Reply(250, "2.0.0", "Ok")
    assert Reply.ok("Ok: queued as X").text == "Ok: queued as X"
    assert Reply.temporary_failure().code == 451
    assert Reply.temporary_failure().enhanced == "4.3.0"
    assert Reply.relay_denied() == Reply(554, "5.7.1", "Relay access denied")


@pytest.mark.parametrize(
    ("code", "message", "enhanced", "text"),
    [
        (
            550,
            "5.1.1 <x@y.test>: Recipient address rejected",
            "5.1.1",
            "<x@y.test>: Recipient address rejected",
        ),
        (250, "2.0.0 Ok: queued as 4Zx", "2.0.0", "Ok: queued as 4Zx"),
        (421, "4.7.0 Try again later", "4.7.0", "Try again later"),
        (452, "4.5.3 Too many recipients", "4.5.3", "Too many recipients"),
    ],
)
def test_parse_keeps_the_enhanced_code_given(
    code: int, message: str, enhanced: str, text: str
) -> None:
    assert Reply.parse(code, message) == Reply(code, enhanced, text)


@pytest.mark.parametrize(
    ("code", "message", "enhanced", "text"),
    [
        (550, "No such user here", "5.0.0", "No such user here"),
        (451, "Local error in processing", "4.0.0", "Local error in processing"),
        (250, "Ok", "2.0.0", "Ok"),
        (354, "End data with <CR><LF>.<CR><LF>", "2.0.0", "End data with <CR><LF>.<CR><LF>"),
        (550, "", "5.0.0", ""),
        (550, "5.1 partial code", "5.0.0", "5.1 partial code"),
    ],
)
def test_parse_derives_the_class_code_when_none_is_given(
    code: int, message: str, enhanced: str, text: str
) -> None:
    assert Reply.parse(code, message) == Reply(code, enhanced, text)


def test_parse_replaces_an_enhanced_code_of_the_wrong_class() -> None:
    # Some servers send "550 4.2.2 ..."; the value must stay consistent.
    reply = Reply.parse(550, "4.2.2 Mailbox full")
    assert reply.code == 550
    assert reply.enhanced == "5.0.0"


def test_parse_keeps_multi_line_text_verbatim() -> None:
    reply = Reply.parse(550, "5.7.1 Blocked\n5.7.1 see https://example.test")
    assert reply.enhanced == "5.7.1"
    assert reply.text == "Blocked\n5.7.1 see https://example.test"
