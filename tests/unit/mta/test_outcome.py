"""Delivery outcome classification: scope, verdict, status and diagnostic of each case."""

from __future__ import annotations

import pytest

from postroom.core.reply import Reply
from postroom.mta.delivery.mx import DestinationTemporaryError, NoSuchDomain, NullMx
from postroom.mta.delivery.outcome import (
    Outcome,
    Scope,
    Stage,
    Verdict,
    delivered,
    from_destination_error,
    from_error,
    from_reply,
    reaches_recipient,
    try_next_mx,
)

MX = "mx.example.test[127.0.0.5]"


@pytest.mark.parametrize(
    ("stage", "scope"),
    [
        (Stage.GREETING, Scope.CONNECTION),
        (Stage.EHLO, Scope.CONNECTION),
        (Stage.STARTTLS, Scope.CONNECTION),
        (Stage.MAIL, Scope.MESSAGE),
        (Stage.RCPT, Scope.RECIPIENT),
        (Stage.DATA, Scope.MESSAGE),
    ],
)
def test_the_stage_of_a_reply_decides_its_scope(stage: Stage, scope: Scope) -> None:
    assert from_reply(stage, 554, "5.7.1 go away", MX).scope is scope


@pytest.mark.parametrize(
    ("code", "verdict"),
    [(250, Verdict.DELIVERED), (450, Verdict.DEFERRED), (550, Verdict.FAILED)],
)
def test_the_reply_class_decides_the_verdict(code: int, verdict: Verdict) -> None:
    outcome = from_reply(Stage.RCPT, code, "mailbox says so")
    assert outcome.verdict is verdict
    assert outcome.is_temporary is (verdict is Verdict.DEFERRED)
    assert outcome.is_permanent is (verdict is Verdict.FAILED)


@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
def test_a_421_closes_the_connection_whatever_the_stage(stage: Stage) -> None:
    outcome = from_reply(stage, 421, "4.7.0 Too many connections, closing", MX)
    assert outcome.scope is Scope.CONNECTION
    assert outcome.verdict is Verdict.DEFERRED
    assert outcome.status == "4.7.0"
    assert try_next_mx(outcome)


def test_a_remote_enhanced_code_is_kept_with_the_verbatim_text() -> None:
    outcome = from_reply(Stage.RCPT, 550, "5.1.1 <bob@example.test>: user unknown", MX)
    assert outcome.status == "5.1.1"
    assert outcome.reply == Reply(550, "5.1.1", "<bob@example.test>: user unknown")
    assert outcome.detail == "<bob@example.test>: user unknown"
    assert outcome.diagnostic == "smtp; 550 5.1.1 <bob@example.test>: user unknown"
    assert outcome.remote_host == MX


def test_a_reply_without_enhanced_code_records_the_class_default() -> None:
    outcome = from_reply(Stage.RCPT, 550, "Requested action not taken: mailbox unavailable")
    assert outcome.status == "5.0.0"
    # The diagnostic is what the remote said, without a code it never sent.
    assert outcome.diagnostic == "smtp; 550 Requested action not taken: mailbox unavailable"


def test_an_explicit_x00_code_from_the_remote_stays_in_the_diagnostic() -> None:
    outcome = from_reply(Stage.DATA, 451, "4.0.0 try later")
    assert outcome.status == "4.0.0"
    assert outcome.diagnostic == "smtp; 451 4.0.0 try later"


def test_a_multi_line_reply_becomes_one_diagnostic_line() -> None:
    message = "5.1.1 The email account does not exist.\n5.1.1 https://support.example/x"
    outcome = from_reply(Stage.RCPT, 550, message, MX)
    assert outcome.status == "5.1.1"
    assert outcome.diagnostic == (
        "smtp; 550 5.1.1 The email account does not exist. 5.1.1 https://support.example/x"
    )


def test_control_characters_in_a_remote_reply_cannot_reach_the_diagnostic() -> None:
    outcome = from_reply(Stage.RCPT, 550, "5.1.1 nope\r\nStatus: 2.0.0\x00")
    assert "\r" not in outcome.diagnostic
    assert "\n" not in outcome.diagnostic
    assert "\x00" not in outcome.diagnostic
    assert outcome.diagnostic == "smtp; 550 5.1.1 nope Status: 2.0.0"


def test_a_3xx_where_a_final_reply_was_due_is_a_temporary_protocol_error() -> None:
    outcome = from_reply(Stage.RCPT, 354, "go ahead", MX)
    assert outcome.verdict is Verdict.DEFERRED
    assert outcome.status == "4.5.0"
    assert outcome.scope is Scope.RECIPIENT
    assert outcome.diagnostic == "smtp; 354 go ahead"


def test_a_code_out_of_range_is_a_temporary_protocol_error_kept_in_the_detail() -> None:
    outcome = from_reply(Stage.DATA, 999, "what", MX)
    assert outcome.verdict is Verdict.DEFERRED
    assert outcome.status == "4.5.0"
    assert outcome.reply is None
    assert outcome.diagnostic == "X-Postroom; unexpected reply: 999 what"


def test_a_5xx_greeting_fails_the_site_and_sends_the_caller_to_the_next_mx() -> None:
    outcome = from_reply(Stage.GREETING, 554, "5.7.1 no mail from you", MX)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.scope is Scope.CONNECTION
    assert try_next_mx(outcome)
    assert not reaches_recipient(outcome)


@pytest.mark.parametrize(
    ("stage", "status"),
    [
        (Stage.DNS, "4.4.3"),
        (Stage.CONNECT, "4.4.1"),
        (Stage.GREETING, "4.4.2"),
        (Stage.STARTTLS, "4.7.5"),
        (Stage.RCPT, "4.4.2"),
        (Stage.DATA, "4.4.2"),
    ],
)
def test_local_errors_derive_their_status_from_the_stage(stage: Stage, status: str) -> None:
    outcome = from_error(stage, "something broke", remote_host=MX)
    assert outcome.status == status
    assert outcome.verdict is Verdict.DEFERRED
    assert outcome.reply is None


def test_a_refused_connection_is_a_temporary_connection_failure() -> None:
    outcome = from_error(Stage.CONNECT, "connect to 127.0.0.5:25: Connection refused")
    assert outcome.scope is Scope.CONNECTION
    assert outcome.status == "4.4.1"
    assert outcome.diagnostic == "X-Postroom; connect to 127.0.0.5:25: Connection refused"
    assert try_next_mx(outcome)


def test_a_connection_lost_during_rcpt_does_not_blame_the_recipient() -> None:
    outcome = from_error(Stage.RCPT, "lost connection with mx.example.test while sending RCPT")
    assert outcome.scope is Scope.CONNECTION
    assert outcome.stage is Stage.RCPT
    assert not reaches_recipient(outcome)


def test_a_permanent_dns_error_without_a_status_is_unroutable() -> None:
    outcome = from_error(Stage.DNS, "no address records for mx.example.test", permanent=True)
    assert outcome.verdict is Verdict.FAILED
    assert outcome.status == "5.4.4"


def test_a_local_decision_may_name_its_status_and_scope() -> None:
    outcome = from_error(
        Stage.MAIL,
        "message size 30000000 exceeds the remote limit 20000000",
        permanent=True,
        status="5.3.4",
        scope=Scope.MESSAGE,
    )
    assert outcome.verdict is Verdict.FAILED
    assert outcome.status == "5.3.4"
    assert outcome.scope is Scope.MESSAGE
    assert not try_next_mx(outcome)


@pytest.mark.parametrize(
    ("permanent", "status"), [(False, "5.3.4"), (True, "4.4.1"), (False, "4.4"), (True, "x")]
)
def test_a_status_that_contradicts_the_error_is_refused(permanent: bool, status: str) -> None:
    with pytest.raises(ValueError):
        from_error(Stage.DATA, "x", permanent=permanent, status=status)


def test_an_unknown_domain_is_a_bad_address() -> None:
    outcome = from_destination_error(NoSuchDomain("nowhere.test", "no such domain (NXDOMAIN)"))
    assert (outcome.verdict, outcome.scope, outcome.stage) == (
        Verdict.FAILED,
        Scope.RECIPIENT,
        Stage.DNS,
    )
    assert outcome.status == "5.1.2"
    assert "nowhere.test" in outcome.diagnostic
    assert reaches_recipient(outcome)


def test_a_null_mx_domain_accepts_no_mail() -> None:
    outcome = from_destination_error(NullMx("nomail.test", "domain accepts no mail (null MX)"))
    assert outcome.status == "5.1.10"
    assert outcome.scope is Scope.RECIPIENT
    assert outcome.verdict is Verdict.FAILED
    assert outcome.diagnostic.startswith("X-Postroom; ")
    assert "nomail.test" in outcome.diagnostic


def test_dns_trouble_is_temporary_and_not_about_the_address() -> None:
    outcome = from_destination_error(DestinationTemporaryError("slow.test", "MX lookup: timed out"))
    assert (outcome.verdict, outcome.scope, outcome.status) == (
        Verdict.DEFERRED,
        Scope.CONNECTION,
        "4.4.3",
    )
    assert not reaches_recipient(outcome)
    assert "timed out" in outcome.diagnostic


def test_delivered_keeps_the_final_reply() -> None:
    outcome = delivered(MX, Reply.parse(250, "2.0.0 Ok: queued as 4XyZ"))
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.stage is Stage.DATA
    assert outcome.status == "2.0.0"
    assert outcome.diagnostic == "smtp; 250 2.0.0 Ok: queued as 4XyZ"
    assert not try_next_mx(outcome)
    assert not reaches_recipient(outcome)


def test_delivered_refuses_a_failure_reply() -> None:
    with pytest.raises(ValueError):
        delivered(MX, Reply(550, "5.1.1", "user unknown"))


def test_only_a_recipient_scoped_failure_reaches_the_recipient() -> None:
    assert reaches_recipient(from_reply(Stage.RCPT, 550, "5.1.1 user unknown"))
    assert reaches_recipient(from_reply(Stage.RCPT, 452, "4.2.2 mailbox full"))
    assert not reaches_recipient(from_reply(Stage.MAIL, 550, "5.7.1 sender refused"))
    assert not reaches_recipient(from_reply(Stage.DATA, 554, "5.7.1 spam"))


def test_message_and_recipient_failures_stay_on_this_mx() -> None:
    assert not try_next_mx(from_reply(Stage.MAIL, 550, "5.7.1 sender refused"))
    assert not try_next_mx(from_reply(Stage.RCPT, 550, "5.1.1 user unknown"))
    assert not try_next_mx(from_reply(Stage.DATA, 552, "5.3.4 too big"))


def test_an_outcome_whose_status_contradicts_its_verdict_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        Outcome(Verdict.DELIVERED, Scope.MESSAGE, Stage.DATA, Reply(550, "5.0.0", "no"), "no")
    with pytest.raises(ValueError):
        Outcome(Verdict.DEFERRED, Scope.CONNECTION, Stage.CONNECT, None, "refused")


@pytest.mark.parametrize(
    ("remote_host", "name"),
    [(MX, "mx.example.test"), ("[127.0.0.5]", "127.0.0.5"), ("mx.example.test", "mx.example.test")],
)
def test_remote_mta_is_the_host_name(remote_host: str, name: str) -> None:
    assert from_reply(Stage.RCPT, 550, "no", remote_host).remote_mta == name


def test_a_positive_reply_is_no_reason_to_leave_the_host() -> None:
    greeting = from_reply(Stage.GREETING, 220, "mx.example.test ESMTP", MX)
    assert greeting.scope is Scope.CONNECTION
    assert not try_next_mx(greeting)
