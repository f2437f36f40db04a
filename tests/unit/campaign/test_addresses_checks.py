"""DNS-free checks: syntax policy, TLDs, lookalikes, disposable domains, roles, IDNA, SMTPUTF8."""

from __future__ import annotations

import json

import pytest

from postroom.campaign.addresses import REASONS, AddressVerdict, ValidationPolicy, Validator
from postroom.campaign.addresses.reasons import verdict_for


def test_verdict_json_has_exactly_the_documented_fields(syntax_validator: Validator) -> None:
    data = syntax_validator.check_syntax(" Ann@GMIAL.com ").as_json()
    assert data == {
        "input": " Ann@GMIAL.com ",
        "address": "Ann@gmial.com",
        "verdict": "invalid",
        "reasons": ["junk_trimmed", "typo_domain", "disposable"],
        "suggestion": "Ann@gmail.com",
        "duplicate_of": None,
    }
    json.dumps(data)


def test_values_are_frozen(syntax_validator: Validator) -> None:
    result = syntax_validator.check_syntax("ann@example.com")
    assert isinstance(result, AddressVerdict)
    with pytest.raises(AttributeError):
        result.verdict = "invalid"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ValidationPolicy().dns = False  # type: ignore[misc]


def test_verdict_precedence() -> None:
    assert verdict_for([]) == "valid"
    assert verdict_for(["junk_trimmed", "smtputf8"]) == "valid"
    assert verdict_for(["role_account"]) == "risky"
    assert verdict_for(["role_account", "duplicate"]) == "duplicate"
    assert verdict_for(["duplicate", "disposable", "role_account"]) == "invalid"
    assert all(code == code.lower() and " " not in code for code in REASONS)


@pytest.mark.parametrize(
    ("address", "reasons"),
    [
        ('"ann lee"@example.com', ("quoted_local_part",)),
        ("ann@[192.0.2.1]", ("ip_literal",)),
        ("ann@[IPv6:2001:db8::1]", ("ip_literal",)),
        ("ann@localhost", ("syntax",)),
        ("ann@com", ("syntax",)),
        ("ann(comment)@example.com", ("syntax",)),
        ("ann@example.com(comment)", ("syntax",)),
        ("ann..lee@example.com", ("syntax",)),
        ("a" * 65 + "@example.com", ("syntax",)),  # over 64 octets: strict RFC 5321
        ("ann@example.tld", ("unknown_tld",)),
        ("ann@example.invalid", ("reserved_tld",)),
        ("ann@host.localhost", ("reserved_tld",)),
        ("ann@printer.local", ("reserved_tld",)),
        ("ann@x.onion", ("reserved_tld",)),
    ],
)
def test_forms_a_campaign_refuses(
    syntax_validator: Validator, address: str, reasons: tuple[str, ...]
) -> None:
    result = syntax_validator.check_syntax(address)
    assert result.verdict == "invalid", result
    assert result.reasons == reasons


def test_policy_allows_quoted_and_literal_and_reserved() -> None:
    lenient = Validator(
        ValidationPolicy(
            dns=False,
            allow_quoted=True,
            allow_ip_literal=True,
            accepted_reserved_tlds=frozenset({"localhost", "test"}),
        )
    )
    assert lenient.check_syntax('"ann lee"@example.com').verdict == "valid"
    assert lenient.check_syntax("ann@[192.0.2.1]").verdict == "valid"
    assert lenient.check_syntax("ann@host.localhost").address == "ann@host.localhost"
    assert lenient.check_syntax("ann@host.localhost").verdict == "valid"
    assert lenient.check_syntax("ann@mail.example").reasons == ("reserved_tld",)


def test_default_policy_accepts_test_and_example(syntax_validator: Validator) -> None:
    assert syntax_validator.check_syntax("ann@mail.test").verdict == "valid"
    assert syntax_validator.check_syntax("ann@mail.example").verdict == "valid"
    strict = Validator(ValidationPolicy(dns=False, accepted_reserved_tlds=frozenset()))
    assert strict.check_syntax("ann@mail.test").reasons == ("reserved_tld",)


@pytest.mark.parametrize(
    ("address", "reason", "suggestion"),
    [
        ("ann@gm\u0430il.com", "mixed_script", "ann@gmail.com"),  # Cyrillic a
        ("ann@p\u0430ypal.com", "mixed_script", "ann@paypal.com"),
        ("ann@g\u03bfogle.com", "mixed_script", "ann@google.com"),  # Greek omicron
        ("ann@\u0443\u0430\u04bb\u043e\u043e.com", "confusable", "ann@yahoo.com"),  # all Cyrillic
    ],
)
def test_lookalike_domains_are_invalid(
    syntax_validator: Validator, address: str, reason: str, suggestion: str
) -> None:
    result = syntax_validator.check_syntax(address)
    assert result.verdict == "invalid"
    assert reason in result.reasons
    assert result.suggestion == suggestion


def test_one_script_idn_domains_are_fine(syntax_validator: Validator) -> None:
    for address in ("ann@пример.рф", "ann@bücher.de", "jeff@臺網中心.tw", "ann@παράδειγμα.gr"):
        result = syntax_validator.check_syntax(address)
        assert result.verdict == "valid", result


def test_idna_address_is_normalised_to_unicode(syntax_validator: Validator) -> None:
    result = syntax_validator.check_syntax("Ann@XN--BCHER-KVA.DE")
    assert result.address == "Ann@bücher.de"
    assert result.verdict == "valid"


def test_smtputf8_local_part_is_noted(syntax_validator: Validator) -> None:
    result = syntax_validator.check_syntax("用户@例子.中国")
    assert result.verdict == "valid", result
    assert result.reasons == ("smtputf8",)
    mixed = syntax_validator.check_syntax("j\u043ehn@example.com")  # Cyrillic o in a Latin name
    assert mixed.verdict == "risky"
    assert mixed.reasons == ("smtputf8", "mixed_script_local_part")


@pytest.mark.parametrize(
    "address", ["ann@mailinator.com", "ann@guerrillamail.com", "ann@inbox.mailinator.com"]
)
def test_disposable_domains_are_invalid(syntax_validator: Validator, address: str) -> None:
    result = syntax_validator.check_syntax(address)
    assert result.verdict == "invalid"
    assert result.reasons == ("disposable",)


def test_operator_disposable_and_roles_are_added() -> None:
    validator = Validator(
        ValidationPolicy(
            dns=False,
            extra_disposable=frozenset({"Throwaway.Example"}),
            extra_roles=frozenset({"newsroom"}),
        )
    )
    assert validator.check_syntax("ann@throwaway.example").reasons == ("disposable",)
    assert validator.check_syntax("ann@mx.throwaway.example").reasons == ("disposable",)
    assert validator.check_syntax("News.Room@example.com").reasons == ("role_account",)


@pytest.mark.parametrize(
    "local_part",
    [
        "postmaster",
        "Abuse",
        "noreply",
        "no-reply",
        "No_Reply",
        "do-not-reply",
        "mailer-daemon",
        "MAILER-DAEMON",
        "hostmaster",
        "webmaster",
        "admin",
        "root",
        "noreply-billing",
        "bounce-1234",
        "noreply+tag",
        "spamtrap",
    ],
)
def test_non_human_local_parts_are_risky(syntax_validator: Validator, local_part: str) -> None:
    result = syntax_validator.check_syntax(f"{local_part}@example.com")
    assert result.verdict == "risky", result
    assert result.reasons == ("role_account",)


@pytest.mark.parametrize("local_part", ["info", "sales", "Support", "contact"])
def test_shared_mailboxes_stay_valid_with_a_note(
    syntax_validator: Validator, local_part: str
) -> None:
    result = syntax_validator.check_syntax(f"{local_part}@example.com")
    assert result.verdict == "valid"
    assert result.reasons == ("shared_mailbox",)


@pytest.mark.parametrize("local_part", ["ann", "bouncer", "adminton", "rootsy", "information"])
def test_people_are_not_roles(syntax_validator: Validator, local_part: str) -> None:
    assert syntax_validator.check_syntax(f"{local_part}@example.com").reasons == ()
