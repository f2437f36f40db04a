"""`policy.decide`: the `[checks]` table turning authentication verdicts into a reply.

Verdicts are built directly from the check dataclasses, so every rule of the
module docstring is exercised in isolation and in its order of precedence:
the From count, DMARC fail by applied disposition, DNS trouble that could have
produced the aligned pass (defer or accept), DMARC temperror, SPF fail without
a DMARC policy, and accept otherwise — with each configurable action for each
key, and the exact SMTP replies. `ChecksConfig.validate` refuses bad values
naming the key path, directly and through the config loader.
"""

from __future__ import annotations

import dataclasses

import pytest

from postroom.config import ConfigError, parse_config
from postroom.config.schema import ChecksConfig
from postroom.core.reply import Reply
from postroom.mta.checks.arc import ArcResult, ArcVerdict
from postroom.mta.checks.dkim import DkimResult, DkimVerdict
from postroom.mta.checks.dmarc import DmarcPolicy, DmarcResult, DmarcVerdict
from postroom.mta.checks.pipeline import AuthVerdicts
from postroom.mta.checks.policy import ACCEPT, Action, Decision, decide
from postroom.mta.checks.spf import SpfResult, SpfVerdict, SpfVerdicts

AUTHOR = "author.test"
SENDER_DOMAIN = "sender.test"
ACTIONS = ("accept", "quarantine", "reject")
DEFER_TEXT = "Temporary authentication failure (DNS), try again later"
ONE_FROM_REPLY = Reply(550, "5.7.1", "Message must have exactly one From address (RFC 5322 3.6.2)")
DMARC_REPLY = Reply(550, "5.7.1", f"Rejected by the DMARC policy of {AUTHOR}")


# -- builders -------------------------------------------------------------------------


def spf_verdict(
    result: SpfResult = SpfResult.PASS,
    *,
    domain: str = SENDER_DOMAIN,
    identity: str = "mailfrom",
    explanation: str = "",
) -> SpfVerdict:
    return SpfVerdict(result, identity, domain, f"bounces@{domain}", explanation)


def dkim_verdict(result: DkimResult, domain: str = AUTHOR) -> DkimVerdict:
    return DkimVerdict(result, domain, "sel", "rsa-sha256", "AbCdEfGh", f"dkim {result}")


def dmarc_verdict(
    result: DmarcResult = DmarcResult.PASS,
    *,
    policy: DmarcPolicy | None = DmarcPolicy.REJECT,
    disposition: DmarcPolicy = DmarcPolicy.NONE,
    from_domain: str = AUTHOR,
) -> DmarcVerdict:
    return DmarcVerdict(
        result=result,
        from_domain=from_domain,
        policy_domain=from_domain if policy is not None else "",
        policy=policy,
        disposition=disposition,
        spf_aligned=result is DmarcResult.PASS,
        dkim_aligned=False,
        reason=f"dmarc {result}",
    )


def dmarc_fail(disposition: DmarcPolicy, policy: DmarcPolicy | None = None) -> DmarcVerdict:
    return dmarc_verdict(
        DmarcResult.FAIL,
        policy=policy if policy is not None else disposition,
        disposition=disposition,
    )


NO_DMARC = dmarc_verdict(DmarcResult.NONE, policy=None)


def verdicts(
    *,
    spf: SpfVerdict | None = None,
    dkim: tuple[DkimVerdict, ...] = (),
    dmarc: DmarcVerdict | None = None,
    from_fields: int = 1,
) -> AuthVerdicts:
    mail_from = spf if spf is not None else spf_verdict()
    helo = SpfVerdict(SpfResult.NONE, "helo", "", "postmaster@mx.sender.test", "")
    return AuthVerdicts(
        spf=SpfVerdicts(helo=helo, mail_from=mail_from),
        dkim=dkim,
        dmarc=dmarc if dmarc is not None else dmarc_verdict(),
        arc=ArcVerdict(ArcResult.NONE, 0, "", "no ARC sets"),
        from_fields=from_fields,
    )


def config(**values: str) -> ChecksConfig:
    checks = ChecksConfig(**values)  # type: ignore[arg-type]
    checks.validate("checks")
    return checks


def assert_action(decision: Decision, action: str, reply: Reply) -> None:
    """The decision a configured `action` value leads to, with `reply` for reject."""
    assert decision.action is Action(action)
    if action == "reject":
        assert decision.reply == reply
    else:
        assert decision.reply is None
    if action == "accept":
        assert decision.reason.endswith("(accepted by [checks])")


# -- rule 1: exactly one From -----------------------------------------------------------


@pytest.mark.parametrize("fields", [0, 2, 3])
def test_not_one_from_field_is_rejected_by_default(fields: int) -> None:
    decision = decide(verdicts(from_fields=fields), config())
    assert decision == Decision(Action.REJECT, "no single From address", ONE_FROM_REPLY)


def test_one_from_field_without_a_single_author_domain_counts_as_several() -> None:
    # The pipeline's verdict for "From: a@one.test, b@two.test": DMARC permerror, no domain.
    no_author = dmarc_verdict(DmarcResult.PERMERROR, policy=None, from_domain="")
    decision = decide(verdicts(dmarc=no_author), config())
    assert decision.action is Action.REJECT
    assert decision.reply == ONE_FROM_REPLY


def test_permerror_of_a_known_author_domain_is_not_a_from_problem() -> None:
    # An invalid DMARC record at the From domain: DMARC cannot say anything, nothing else fails.
    broken_record = dmarc_verdict(DmarcResult.PERMERROR, policy=None)
    assert decide(verdicts(dmarc=broken_record), config()) == ACCEPT


@pytest.mark.parametrize("action", ACTIONS)
def test_several_from_fields_follow_dmarc_reject(action: str) -> None:
    decision = decide(verdicts(from_fields=2), config(dmarc_reject=action))
    assert_action(decision, action, ONE_FROM_REPLY)


@pytest.mark.parametrize("action", ACTIONS)
def test_several_from_fields_ignore_the_other_keys(action: str) -> None:
    others = config(dmarc_quarantine=action, spf_fail=action)
    assert decide(verdicts(from_fields=2), others).action is Action.REJECT


def test_several_from_fields_win_over_a_dmarc_pass_and_dns_trouble() -> None:
    passing = verdicts(
        from_fields=2,
        spf=spf_verdict(SpfResult.TEMPERROR),
        dmarc=dmarc_verdict(DmarcResult.TEMPERROR, policy=None),
    )
    assert decide(passing, config()).action is Action.REJECT


# -- rule 2: DMARC fail ---------------------------------------------------------------


def test_dmarc_fail_under_reject_is_refused_with_5_7_1() -> None:
    decision = decide(verdicts(dmarc=dmarc_fail(DmarcPolicy.REJECT)), config())
    assert decision == Decision(
        Action.REJECT, f"DMARC fail for {AUTHOR} (disposition reject)", DMARC_REPLY
    )


def test_dmarc_fail_under_quarantine_goes_to_junk_by_default() -> None:
    decision = decide(verdicts(dmarc=dmarc_fail(DmarcPolicy.QUARANTINE)), config())
    assert decision == Decision(
        Action.QUARANTINE, f"DMARC fail for {AUTHOR} (disposition quarantine)"
    )


@pytest.mark.parametrize("action", ACTIONS)
def test_dmarc_fail_under_reject_follows_dmarc_reject(action: str) -> None:
    checks = config(dmarc_reject=action, dmarc_quarantine="accept")
    decision = decide(verdicts(dmarc=dmarc_fail(DmarcPolicy.REJECT)), checks)
    assert_action(decision, action, DMARC_REPLY)


@pytest.mark.parametrize("action", ACTIONS)
def test_dmarc_fail_under_quarantine_follows_dmarc_quarantine(action: str) -> None:
    checks = config(dmarc_quarantine=action, dmarc_reject="accept")
    decision = decide(verdicts(dmarc=dmarc_fail(DmarcPolicy.QUARANTINE)), checks)
    assert_action(decision, action, DMARC_REPLY)


def test_the_applied_disposition_decides_not_the_published_policy() -> None:
    # p=reject, but the message fell outside pct=: the disposition is quarantine.
    unsampled = dmarc_fail(DmarcPolicy.QUARANTINE, policy=DmarcPolicy.REJECT)
    checks = config(dmarc_reject="reject", dmarc_quarantine="quarantine")
    assert decide(verdicts(dmarc=unsampled), checks).action is Action.QUARANTINE


@pytest.mark.parametrize("policy", list(DmarcPolicy))
def test_dmarc_fail_with_disposition_none_is_accepted(policy: DmarcPolicy) -> None:
    # p=none, or p=quarantine outside pct=: monitoring only.
    failing = dmarc_fail(DmarcPolicy.NONE, policy=policy)
    strict = config(dmarc_reject="reject", dmarc_quarantine="reject", spf_fail="reject")
    assert decide(verdicts(dmarc=failing), strict) == ACCEPT


def test_dmarc_fail_with_disposition_none_ignores_dns_trouble() -> None:
    failing = dmarc_fail(DmarcPolicy.NONE, policy=DmarcPolicy.NONE)
    unsure = verdicts(spf=spf_verdict(SpfResult.TEMPERROR), dmarc=failing)
    assert decide(unsure, config()) == ACCEPT


def test_dmarc_fail_with_disposition_none_is_not_an_spf_fail_without_policy() -> None:
    failing = dmarc_fail(DmarcPolicy.NONE, policy=DmarcPolicy.NONE)
    spf_failed = verdicts(spf=spf_verdict(SpfResult.FAIL), dmarc=failing)
    assert decide(spf_failed, config(spf_fail="reject")) == ACCEPT


# -- rule 2: DMARC fail with DNS trouble that could have passed ---------------------------


@pytest.mark.parametrize("disposition", [DmarcPolicy.REJECT, DmarcPolicy.QUARANTINE])
def test_dmarc_fail_with_spf_temperror_is_deferred_with_4_7_24(disposition: DmarcPolicy) -> None:
    # The envelope domain is the author domain: its SPF pass would have aligned.
    unsure = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR, domain=AUTHOR), dmarc=dmarc_fail(disposition)
    )
    decision = decide(unsure, config())
    assert decision == Decision(
        Action.DEFER,
        f"DMARC fail for {AUTHOR} with DNS trouble",
        Reply(451, "4.7.24", DEFER_TEXT),
    )


@pytest.mark.parametrize("disposition", [DmarcPolicy.REJECT, DmarcPolicy.QUARANTINE])
def test_dmarc_fail_with_dkim_temperror_is_deferred_with_4_7_0(disposition: DmarcPolicy) -> None:
    unsure = verdicts(
        spf=spf_verdict(SpfResult.FAIL, domain=AUTHOR),
        dkim=(dkim_verdict(DkimResult.FAIL), dkim_verdict(DkimResult.TEMPERROR)),
        dmarc=dmarc_fail(disposition),
    )
    decision = decide(unsure, config())
    assert decision.action is Action.DEFER
    assert decision.reply == Reply(451, "4.7.0", DEFER_TEXT)


def test_spf_temperror_is_named_the_cause_even_with_a_dkim_temperror() -> None:
    unsure = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR, domain=AUTHOR),
        dkim=(dkim_verdict(DkimResult.TEMPERROR),),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    decision = decide(unsure, config())
    assert decision.reply is not None and decision.reply.enhanced == "4.7.24"


def test_aligned_subdomain_temperror_defers_too() -> None:
    # Relaxed alignment: mail.author.test would have aligned with author.test.
    unsure = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR, domain=f"mail.{AUTHOR}"),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    assert decide(unsure, config()).action is Action.DEFER


@pytest.mark.parametrize("source", ["spf", "dkim"])
def test_dns_trouble_is_accepted_when_temperror_is_accept(source: str) -> None:
    unsure = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR if source == "spf" else SpfResult.FAIL, domain=AUTHOR),
        dkim=(dkim_verdict(DkimResult.TEMPERROR),) if source == "dkim" else (),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    decision = decide(unsure, config(temperror="accept"))
    assert decision == Decision(
        Action.ACCEPT,
        f"DMARC fail for {AUTHOR} with DNS trouble (accepted by [checks] temperror)",
    )


@pytest.mark.parametrize("result", [DkimResult.FAIL, DkimResult.PERMERROR, DkimResult.POLICY])
def test_other_dkim_failures_leave_nothing_open(result: DkimResult) -> None:
    failing = verdicts(
        spf=spf_verdict(SpfResult.SOFTFAIL, domain=AUTHOR),
        dkim=(dkim_verdict(result),),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    assert decide(failing, config()).action is Action.REJECT


def test_unaligned_spf_temperror_does_not_rescue_a_dmarc_reject() -> None:
    # MAIL FROM in a domain the sender controls, made to SERVFAIL; From: author.test, p=reject.
    # Even an SPF pass of elsewhere.test could not have aligned with author.test.
    spoofed = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR, domain="elsewhere.test"),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    decision = decide(spoofed, config(temperror="accept"))
    assert decision.action is Action.REJECT


def test_unaligned_dkim_temperror_does_not_rescue_a_dmarc_reject() -> None:
    # A DKIM-Signature with d= of a domain whose key lookup SERVFAILs, From: author.test.
    spoofed = verdicts(
        spf=spf_verdict(SpfResult.FAIL, domain="elsewhere.test"),
        dkim=(dkim_verdict(DkimResult.TEMPERROR, domain="elsewhere.test"),),
        dmarc=dmarc_fail(DmarcPolicy.REJECT),
    )
    decision = decide(spoofed, config(temperror="accept"))
    assert decision.action is Action.REJECT


# -- rule 3: DMARC temperror ----------------------------------------------------------


def test_dmarc_temperror_is_deferred_with_4_7_0() -> None:
    unsure = verdicts(dmarc=dmarc_verdict(DmarcResult.TEMPERROR, policy=None))
    decision = decide(unsure, config())
    assert decision == Decision(
        Action.DEFER,
        f"DMARC record of {AUTHOR} unavailable",
        Reply(451, "4.7.0", DEFER_TEXT),
    )


def test_dmarc_temperror_with_spf_temperror_names_spf() -> None:
    unsure = verdicts(
        spf=spf_verdict(SpfResult.TEMPERROR),
        dmarc=dmarc_verdict(DmarcResult.TEMPERROR, policy=None),
    )
    decision = decide(unsure, config())
    assert decision.reply == Reply(451, "4.7.24", DEFER_TEXT)


def test_dmarc_temperror_wins_over_an_spf_fail() -> None:
    unsure = verdicts(
        spf=spf_verdict(SpfResult.FAIL),
        dmarc=dmarc_verdict(DmarcResult.TEMPERROR, policy=None),
    )
    assert decide(unsure, config(spf_fail="reject")).action is Action.DEFER


def test_dmarc_temperror_is_accepted_when_temperror_is_accept() -> None:
    unsure = verdicts(dmarc=dmarc_verdict(DmarcResult.TEMPERROR, policy=None))
    decision = decide(unsure, config(temperror="accept"))
    assert decision == Decision(
        Action.ACCEPT,
        f"DMARC record of {AUTHOR} unavailable (accepted by [checks] temperror)",
    )


# -- rule 4: SPF fail without a DMARC policy ------------------------------------------------


def test_spf_fail_without_dmarc_goes_to_junk_by_default() -> None:
    failing = verdicts(spf=spf_verdict(SpfResult.FAIL), dmarc=NO_DMARC)
    assert decide(failing, config()) == Decision(Action.QUARANTINE, f"SPF fail for {SENDER_DOMAIN}")


def test_spf_fail_reject_is_550_5_7_23_with_the_explanation() -> None:
    failing = verdicts(
        spf=spf_verdict(SpfResult.FAIL, explanation="see https://sender.test/why"),
        dmarc=NO_DMARC,
    )
    decision = decide(failing, config(spf_fail="reject"))
    assert decision == Decision(
        Action.REJECT,
        f"SPF fail for {SENDER_DOMAIN}",
        Reply(550, "5.7.23", f"SPF check failed for {SENDER_DOMAIN}: see https://sender.test/why"),
    )


def test_spf_fail_reply_text_is_bounded() -> None:
    failing = verdicts(spf=spf_verdict(SpfResult.FAIL, explanation="x" * 600), dmarc=NO_DMARC)
    decision = decide(failing, config(spf_fail="reject"))
    assert decision.reply is not None
    assert len(decision.reply.text) == 400
    assert decision.reply.text.startswith(f"SPF check failed for {SENDER_DOMAIN}: xxx")


@pytest.mark.parametrize("action", ACTIONS)
def test_spf_fail_follows_spf_fail(action: str) -> None:
    failing = verdicts(spf=spf_verdict(SpfResult.FAIL, explanation="no"), dmarc=NO_DMARC)
    others = "reject" if action != "reject" else "accept"
    checks = config(spf_fail=action, dmarc_reject=others, dmarc_quarantine=others)
    decision = decide(failing, checks)
    assert_action(
        decision, action, Reply(550, "5.7.23", f"SPF check failed for {SENDER_DOMAIN}: no")
    )


def test_spf_fail_with_an_invalid_dmarc_record_counts_as_no_policy() -> None:
    failing = verdicts(
        spf=spf_verdict(SpfResult.FAIL),
        dmarc=dmarc_verdict(DmarcResult.PERMERROR, policy=None),
    )
    assert decide(failing, config(spf_fail="reject")).action is Action.REJECT


def test_spf_fail_under_a_passing_dmarc_policy_is_accepted() -> None:
    # Forwarded mail: SPF fails, DKIM aligned, DMARC (published) decides.
    forwarded = verdicts(
        spf=spf_verdict(SpfResult.FAIL),
        dkim=(dkim_verdict(DkimResult.PASS),),
        dmarc=dmarc_verdict(DmarcResult.PASS, policy=DmarcPolicy.REJECT),
    )
    assert decide(forwarded, config(spf_fail="reject")) == ACCEPT


@pytest.mark.parametrize(
    "result",
    [
        SpfResult.SOFTFAIL,
        SpfResult.NEUTRAL,
        SpfResult.NONE,
        SpfResult.PERMERROR,
        SpfResult.TEMPERROR,
    ],
)
def test_spf_results_other_than_fail_are_accepted_without_dmarc(result: SpfResult) -> None:
    spf = spf_verdict(result)
    checks = config(spf_fail="reject")
    assert decide(verdicts(spf=spf, dmarc=NO_DMARC), checks) == ACCEPT


# -- rule 5: accept ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "dmarc",
    [
        dmarc_verdict(DmarcResult.PASS),
        NO_DMARC,
        dmarc_verdict(DmarcResult.PERMERROR, policy=None),
    ],
    ids=["pass", "none", "permerror"],
)
def test_everything_else_is_accepted(dmarc: DmarcVerdict) -> None:
    strict = config(dmarc_reject="reject", dmarc_quarantine="reject", spf_fail="reject")
    decision = decide(verdicts(dmarc=dmarc), strict)
    assert decision == ACCEPT
    assert decision.reply is None


def test_the_accept_decision_constant() -> None:
    assert Decision(Action.ACCEPT, "accepted", None) == ACCEPT


# -- ChecksConfig validation ------------------------------------------------------------------


def test_defaults_are_valid_and_documented_values() -> None:
    checks = ChecksConfig()
    checks.validate("checks")
    assert (checks.dmarc_reject, checks.dmarc_quarantine, checks.spf_fail, checks.temperror) == (
        "reject",
        "quarantine",
        "quarantine",
        "defer",
    )


@pytest.mark.parametrize("key", ["dmarc_reject", "dmarc_quarantine", "spf_fail"])
@pytest.mark.parametrize("value", ["defer", "Reject", "bounce", "", " reject"])
def test_validate_refuses_bad_actions_naming_the_key(key: str, value: str) -> None:
    checks = dataclasses.replace(ChecksConfig(), **{key: value})
    with pytest.raises(ConfigError) as caught:
        checks.validate("checks")
    assert caught.value.path == f"checks.{key}"
    assert caught.value.message == "accept, quarantine or reject"


@pytest.mark.parametrize("value", ["reject", "quarantine", "Defer", "", "retry"])
def test_validate_refuses_bad_temperror_values(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ChecksConfig(temperror=value).validate("checks")
    assert caught.value.path == "checks.temperror"
    assert caught.value.message == "defer or accept"


@pytest.mark.parametrize("key", ["dmarc_reject", "dmarc_quarantine", "spf_fail"])
@pytest.mark.parametrize("value", ACTIONS)
def test_validate_accepts_every_action(key: str, value: str) -> None:
    dataclasses.replace(ChecksConfig(), **{key: value}).validate("checks")


MINIMAL = '[server]\nhostname = "mx.example.test"\n'


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ('dmarc_reject = "defer"', "checks.dmarc_reject"),
        ('dmarc_quarantine = "drop"', "checks.dmarc_quarantine"),
        ('spf_fail = "bounce"', "checks.spf_fail"),
        ('temperror = "reject"', "checks.temperror"),
    ],
)
def test_the_loader_refuses_bad_checks_values_with_path_and_line(line: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + "[checks]\n" + line + "\n")
    assert caught.value.path == path
    assert caught.value.line == 4
    assert path in str(caught.value)


def test_the_loader_reads_a_valid_checks_table() -> None:
    loaded = parse_config(
        MINIMAL
        + '[checks]\ndmarc_reject = "quarantine"\ndmarc_quarantine = "accept"\n'
        + 'spf_fail = "reject"\ntemperror = "accept"\n'
    )
    assert loaded.checks == ChecksConfig(
        dmarc_reject="quarantine", dmarc_quarantine="accept", spf_fail="reject", temperror="accept"
    )
