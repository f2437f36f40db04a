"""The validator's data files: well-formed, consistent, and refused when malformed."""

from __future__ import annotations

import pytest
from publicsuffixlist import PublicSuffixList

from postroom.campaign.addresses.catalog import Catalog, CatalogError


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_tld_typos_map_missing_tlds_to_real_ones(catalog: Catalog) -> None:
    suffixes = PublicSuffixList(accept_unknown=False)
    assert {"con", "cmo", "comm", "rn"} <= set(catalog.tld_typos)
    for typo, meant in catalog.tld_typos.items():
        assert not suffixes.is_public(typo), f"{typo} is a real TLD"
        assert suffixes.is_public(meant), f"{meant} is not a TLD"


def test_provider_domains_have_real_tlds(catalog: Catalog) -> None:
    suffixes = PublicSuffixList(accept_unknown=False)
    for domain in catalog.provider_by_domain:
        assert suffixes.is_public(domain.rsplit(".", 1)[-1]), domain
        assert domain == domain.lower() and domain.isascii()


def test_common_providers_are_known(catalog: Catalog) -> None:
    for domain in (
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "mail.ru",
        "yandex.ru",
        "gmx.de",
        "web.de",
        "protonmail.com",
        "zoho.com",
        "qq.com",
        "163.com",
    ):
        assert domain in catalog.provider_by_domain, domain


def test_keyboard_neighbours(catalog: Catalog) -> None:
    assert ("m", "n") in catalog.keyboard_neighbours
    assert ("n", "m") in catalog.keyboard_neighbours
    assert ("a", "s") in catalog.keyboard_neighbours
    assert ("q", "a") in catalog.keyboard_neighbours
    assert ("a", "p") not in catalog.keyboard_neighbours


def test_unknown_keys_and_repeated_domains_are_refused(catalog: Catalog) -> None:
    good_provider = '[[provider]]\nname = "x"\ndomains = ["x.com"]\n'
    with pytest.raises(CatalogError, match="unknown key"):
        Catalog.from_texts(good_provider + "typo = 1\n", "", "")
    with pytest.raises(CatalogError, match=r"provider\[0\].*unknown key"):
        Catalog.from_texts('[[provider]]\ndomains = ["x.com"]\ncanon = "x.com"\n', "", "")
    with pytest.raises(CatalogError, match="listed twice"):
        Catalog.from_texts(good_provider + good_provider, "", "")
    with pytest.raises(CatalogError, match="canonical"):
        Catalog.from_texts('[[provider]]\ndomains = ["x.com"]\ncanonical = "y.com"\n', "", "")
    with pytest.raises(CatalogError, match=r"roles\.toml"):
        Catalog.from_texts(good_provider, "non_humans = []\n", "")
