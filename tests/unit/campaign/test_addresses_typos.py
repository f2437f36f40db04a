"""Misspelled provider domains and TLDs: the verdict and the suggested address."""

from __future__ import annotations

import pytest

from postroom.campaign.addresses import Validator
from postroom.campaign.addresses.catalog import Catalog
from postroom.campaign.addresses.typos import TypoFinder, typing_distance


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ann@gmial.com", "ann@gmail.com"),  # swapped letters
        ("ann@gmai.com", "ann@gmail.com"),  # missing letter
        ("ann@gnail.com", "ann@gmail.com"),  # neighbouring key
        ("ann@gmaill.com", "ann@gmail.com"),  # doubled letter
        ("Ann.Lee@hotmial.com", "Ann.Lee@hotmail.com"),
        ("ann@yaho.com", "ann@yahoo.com"),
        ("ann@outlok.com", "ann@outlook.com"),
        ("ann@mail.ry", "ann@mail.ru"),
        ("ann@yandex.ri", "ann@yandex.ru"),
        ("ann@gmail.con", "ann@gmail.com"),
        ("ann@gmail.cmo", "ann@gmail.com"),
        ("ann@gmial.con", "ann@gmail.com"),  # both at once
        ("ann@hotmail.co.ul", "ann@hotmail.co.uk"),
        ("ann@company.con", "ann@company.com"),  # a TLD typo on any domain
        ("ann@company.cmo", "ann@company.com"),
        ("ann@company.rn", "ann@company.ru"),
    ],
)
def test_sure_typos_are_invalid_with_the_corrected_address(
    syntax_validator: Validator, typed: str, meant: str
) -> None:
    result = syntax_validator.check_syntax(typed)
    assert result.verdict == "invalid", result
    assert "typo_domain" in result.reasons
    assert result.suggestion == meant
    assert result.address == typed  # the address as typed; the fix is only suggested


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ann@gmail.co", "ann@gmail.com"),  # .co exists: the provider might own it
        ("ann@hotmail.cm", "ann@hotmail.com"),
        ("ann@gmeil.com", "ann@gmail.com"),  # far keys: likely, not sure
        ("ann@yandex.uz", "ann@yandex.ua"),
    ],
)
def test_unsure_typos_are_risky(syntax_validator: Validator, typed: str, meant: str) -> None:
    result = syntax_validator.check_syntax(typed)
    assert result.verdict == "risky", result
    assert result.reasons == ("typo_domain_suspected",)
    assert result.suggestion == meant


@pytest.mark.parametrize(
    "address",
    [
        "ann@gmail.com",
        "ann@googlemail.com",
        "ann@ymail.com",
        "ann@email.com",
        "ann@mail.ru",
        "ann@gmx.de",
        "ann@aol.com",
        "ann@qq.com",
        "ann@163.com",
        "ann@example.com",
        "ann@mailbox.org",
        "ann@gmx.at",
        "ann@acme-industries.com",
    ],
)
def test_real_domains_are_not_typos(syntax_validator: Validator, address: str) -> None:
    result = syntax_validator.check_syntax(address)
    assert result.verdict == "valid", result
    assert result.suggestion is None


def test_a_disposable_domain_is_no_suspected_typo(syntax_validator: Validator) -> None:
    # yopmail.com is two slips from hotmail.com, but it exists (and is disposable).
    result = syntax_validator.check_syntax("ann@yopmail.com")
    assert (result.reasons, result.suggestion) == (("disposable",), None)
    sure = syntax_validator.check_syntax("ann@hotmial.com")  # listed, yet surely a typo
    assert (sure.reasons, sure.suggestion) == (("typo_domain", "disposable"), "ann@hotmail.com")


def test_short_provider_names_are_not_suspected() -> None:
    # aol, gmx, qq: too many real domains sit one letter away.
    finder = TypoFinder(Catalog.load(), lambda tld: tld in {"com", "de", "net"})
    assert finder.find("aok.com") is None
    assert finder.find("gmc.de") is None


def test_distance_weights_follow_typing_slips() -> None:
    neighbours = Catalog.load().keyboard_neighbours
    assert typing_distance("gmial", "gmail", neighbours) == 0.5  # transposition
    assert typing_distance("gnail", "gmail", neighbours) == 0.5  # m and n are neighbours
    assert typing_distance("gmaill", "gmail", neighbours) == 0.5  # doubled
    assert typing_distance("gmai", "gmail", neighbours) == 0.9  # missing
    assert typing_distance("email", "gmail", neighbours) == 1.0  # far substitution
    assert typing_distance("gmail", "gmail", neighbours) == 0.0
