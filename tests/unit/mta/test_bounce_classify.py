"""Reason classifier: real MTAs' synchronous replies, rule-file validation, operator rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.mta.bounce.classify import Classifier, PatternError
from postroom.mta.bounce.reasons import Reason, is_hard


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(())


@pytest.mark.parametrize(
    ("reply", "status", "text", "reason"),
    [
        # Postfix
        (
            550,
            "5.1.1",
            "<bob@example.test>: Recipient address rejected: User unknown in virtual mailbox table",
            Reason.USERUNKNOWN,
        ),
        (
            450,
            "4.7.1",
            "Client host rejected: cannot find your reverse hostname, [192.0.2.9]",
            Reason.REQUIREPTR,
        ),
        (
            554,
            "5.7.1",
            "Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org",
            Reason.BLOCKED,
        ),
        (554, "5.7.1", "<bob@example.test>: Relay access denied", Reason.NORELAYING),
        # Gmail
        (
            550,
            "5.1.1",
            "The email account that you tried to reach does not exist. Please try "
            "double-checking the recipient's email address",
            Reason.USERUNKNOWN,
        ),
        (
            452,
            "4.2.2",
            "The email account that you tried to reach is over quota.",
            Reason.MAILBOXFULL,
        ),
        (
            550,
            "5.7.26",
            "This mail has been blocked because the sender is unauthenticated.",
            Reason.AUTHFAILURE,
        ),
        (
            550,
            "5.7.25",
            "The IP address sending this message does not have a PTR record setup",
            Reason.REQUIREPTR,
        ),
        (552, "5.3.4", "Your message exceeded Google's message size limits.", Reason.MESGTOOBIG),
        (
            421,
            "4.7.28",
            "Our system has detected an unusual rate of unsolicited mail",
            Reason.SPEEDING,
        ),
        # Microsoft
        (
            550,
            "5.7.509",
            "Access denied, sending domain example.test does not pass DMARC "
            "verification and has a DMARC policy of reject.",
            Reason.AUTHFAILURE,
        ),
        (550, "5.7.606", "Access denied, banned sending IP [192.0.2.9].", Reason.BLOCKED),
        # Exim, Sendmail, qmail, Yahoo
        (550, None, "No Such User Here", Reason.USERUNKNOWN),
        (552, "5.2.2", "<bob@example.test>... Mailbox full", Reason.MAILBOXFULL),
        (None, None, "Sorry, no mailbox here by that name. (#5.1.1)", Reason.USERUNKNOWN),
        (
            421,
            "4.7.0",
            "[TSS04] Messages from 192.0.2.9 temporarily deferred due to "
            "unexpected volume or user complaints",
            Reason.BLOCKED,
        ),
        (
            421,
            "4.7.0",
            "Too many concurrent SMTP connections from this IP address",
            Reason.TOOMANYCONN,
        ),
        (554, "5.7.1", "Message rejected as spam by Content Filtering.", Reason.SPAMDETECTED),
        (550, "5.1.2", "Host or domain name not found. Name service error", Reason.HOSTUNKNOWN),
        (250, "2.0.0", "Ok: queued as 4Q", Reason.DELIVERED),
    ],
)
def test_real_replies(
    classifier: Classifier, reply: int | None, status: str | None, text: str, reason: Reason
) -> None:
    assert classifier.classify(reply, status, text) is reason


def test_status_alone_and_nothing_at_all(classifier: Classifier) -> None:
    assert classifier.classify(None, "5.1.1", "") is Reason.USERUNKNOWN
    assert classifier.classify(None, "4.4.7", "") is Reason.EXPIRED
    assert classifier.classify(None, "5.1.10", "") is Reason.NOTACCEPT
    assert classifier.classify(None, None, "") is Reason.UNDEFINED


def test_hard_means_the_address_is_bad() -> None:
    assert is_hard(Reason.USERUNKNOWN, "4.1.1")
    assert is_hard(Reason.HOSTUNKNOWN, "5.1.2")
    assert is_hard(Reason.NOTACCEPT, "5.1.10")
    assert not is_hard(Reason.NOTACCEPT, "4.1.10")
    assert not is_hard(Reason.MAILBOXFULL, "5.2.2")
    assert not is_hard(Reason.BLOCKED, "5.7.1")
    assert not is_hard(Reason.UNDEFINED, "5.0.0")


def test_operator_rules_come_first(tmp_path: Path, classifier: Classifier) -> None:
    operator = tmp_path / "local.toml"
    operator.write_text("[[rule]]\nreason = \"suspend\"\ntext = 'user unknown.*example\\.test'\n")
    local = Classifier.load([operator])
    text = "550 5.1.1 <x@example.test>: User unknown at example.test"
    assert classifier.classify(550, "5.1.1", text) is Reason.USERUNKNOWN
    assert local.classify(550, "5.1.1", text) is Reason.SUSPEND
    # Everything else still falls through to the shipped rules.
    assert local.classify(552, "5.2.2", "Mailbox full") is Reason.MAILBOXFULL


@pytest.mark.parametrize(
    ("body", "index", "field"),
    [
        ('[[rule]]\nreason = "nosuchreason"\ntext = "x"\n', 0, "reason"),
        (
            '[[rule]]\nreason = "blocked"\ntext = "x"\n[[rule]]\nreason = "blocked"\ntext = "(("\n',
            1,
            "text",
        ),
        ('[[rule]]\nreason = "blocked"\ntxt = "typo"\n', 0, "txt"),
        ('[[rule]]\nreason = "blocked"\nstatus = ["5.7"]\n', 0, "status"),
        ('[[rule]]\nreason = "blocked"\nreply = ["5500"]\n', 0, "reply"),
        ('[[rule]]\nreason = "blocked"\n', 0, "rule"),
        ('[[rule]]\nreason = "blocked"\ntext = "x"\nunless = "[z"\n', 0, "unless"),
    ],
)
def test_invalid_rule_files_name_file_rule_and_field(
    tmp_path: Path, body: str, index: int, field: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(PatternError) as caught:
        Classifier.load([path])
    assert caught.value.source == str(path)
    assert caught.value.index == index
    assert caught.value.field == field
    assert f"rule {index}" in str(caught.value) and str(path) in str(caught.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PatternError, match=r"missing\.toml"):
        Classifier.load([tmp_path / "missing.toml"])
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]\n")
    with pytest.raises(PatternError, match="toml"):
        Classifier.load([broken])
    stray = tmp_path / "stray.toml"
    stray.write_text('reason = "blocked"\n')
    with pytest.raises(PatternError, match="unknown key"):
        Classifier.load([stray])


def test_shipped_rules_load_and_cover_every_reason_they_name() -> None:
    rules = Classifier.load(()).rules
    assert len(rules) > 40
    assert {rule.reason for rule in rules} >= {Reason.USERUNKNOWN, Reason.EXPIRED, Reason.BLOCKED}
