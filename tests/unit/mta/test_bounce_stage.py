"""The SMTP stage a bounce names, and how it corrects the classifier's reason (bounce/stage.py)."""

from __future__ import annotations

import pytest

from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.stage import failed_stage, refine


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("550 5.1.1 User unknown (in reply to RCPT TO command)", "rcpt to"),
        ("550 Unknown user (in reply to end of DATA command)", "data"),
        ("SMTP error from remote mail server after MAIL FROM:<a@b.example> SIZE=10:", "mail from"),
        ("SMTP error from remote mail server after RCPT TO:<a@b.example>:", "rcpt to"),
        ("192.0.2.1 does not like recipient.\nRemote host said: 550 no", "rcpt to"),
        ("Connected to 192.0.2.1 but sender was rejected.", "mail from"),
        ("Connected to 192.0.2.1 but my name was rejected.", "helo"),
        ("192.0.2.1 failed after I sent the message.", "data"),
        ("host mx.example[192.0.2.1] refused to talk to me: 554 go away", "connect"),
        ("... while talking to mx.example.:\n  >>> DATA\n  <<< 550 Unknown user", "data"),
        ("... while talking to mx.example.:\n>>>> RCPT To:<a@b.example>\n<<< 550 no", "rcpt to"),
        ("550 5.1.1 User unknown", None),
    ],
)
def test_failed_stage_reads_the_usual_phrasings(text: str, stage: str | None) -> None:
    assert failed_stage(text) == stage


def test_unknown_user_after_data_or_with_a_mailbox_status_is_a_filter() -> None:
    assert refine(
        Reason.USERUNKNOWN, "5.0.0", "failed", "550 x (in reply to end of DATA command)"
    ) is (Reason.FILTERED)
    assert (
        refine(Reason.USERUNKNOWN, "5.2.1", "failed", "550 5.2.1 User Unknown") is Reason.FILTERED
    )
    # At RCPT the address itself is judged: an unknown user whatever the status.
    assert (
        refine(Reason.USERUNKNOWN, "5.2.1", "failed", "550 5.2.1 (in reply to RCPT TO command)")
        is Reason.USERUNKNOWN
    )
    assert refine(Reason.USERUNKNOWN, "5.1.1", "failed", "after end of data") is Reason.USERUNKNOWN


def test_refusals_before_any_address_are_about_the_host_or_the_sender() -> None:
    assert refine(Reason.UNDEFINED, "5.0.0", "failed", "after MAIL FROM:<a@b.example>") is (
        Reason.REJECTED
    )
    assert refine(Reason.EXPIRED, "5.0.0", "failed", "but my name was rejected") is Reason.BLOCKED
    # A specific reason survives the stage.
    assert refine(Reason.TOOMANYCONN, "4.0.0", "failed", "refused to talk to me") is (
        Reason.TOOMANYCONN
    )


def test_network_failures_split_into_dns_trouble_and_expiry() -> None:
    assert refine(Reason.HOSTUNKNOWN, "4.0.0", "failed", "DNS Error: NXDOMAIN") is (
        Reason.NETWORKERROR
    )
    assert refine(Reason.HOSTUNKNOWN, "5.1.2", "failed", "Host not found") is Reason.HOSTUNKNOWN
    never = "connect to mx.example[192.0.2.1]:25: Connection timed out"
    assert refine(Reason.NETWORKERROR, "4.4.1", "failed", never) is Reason.EXPIRED
    assert refine(Reason.NETWORKERROR, "4.4.1", "delayed", never) is Reason.NETWORKERROR
    lost = "lost connection with mx.example[192.0.2.1] while performing the HELO handshake"
    assert refine(Reason.NETWORKERROR, "4.4.2", "failed", lost) is Reason.NETWORKERROR


def test_a_failure_with_nothing_to_judge_by_is_on_hold() -> None:
    assert refine(Reason.UNDEFINED, "5.0.0", "failed", "") is Reason.ONHOLD
