"""The validator's knowledge as data: providers, TLD typos, keyboards, roles, lookalikes.

Purpose: load `providers.toml`, `roles.toml` and `lookalikes.toml` (shipped
beside this module, see each file's header) into one frozen `Catalog`, checked
at load: an unknown key, a wrong type or a domain listed twice raises
`CatalogError` naming the file and the entry. The rules live in the files
(STYLE.md #10) so that an operator can read and extend them.

Inputs: the shipped files (`Catalog.load()`), or TOML text for tests
(`Catalog.from_texts`). Outputs: immutable lookups used by typos.py, roles.py,
scripts.py and dedupe.py. Reads no configuration; the disposable-domain list
comes from the `disposable_email_domains` package and the operator's policy.
No untrusted input: the files ship with postroom.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = ["Catalog", "CatalogError", "Provider", "RoleLists"]

_PROVIDER_KEYS = frozenset({"name", "domains", "canonical", "ignore_dots", "tag_separators"})
_ROLE_KEYS = frozenset({"non_human", "non_human_prefixes", "shared"})
_ROLE_SEPARATORS = MappingProxyType(str.maketrans("", "", ".-_"))


class CatalogError(ValueError):
    """A data file is malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A mailbox provider: its domains and how its local parts compare."""

    name: str
    domains: tuple[str, ...]
    canonical: str | None
    ignore_dots: bool
    tag_separators: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoleLists:
    """Role local parts, written without separators (see roles.toml)."""

    non_human: frozenset[str]
    non_human_prefixes: tuple[str, ...]
    shared: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything the validator knows by name (see module docstring)."""

    providers: tuple[Provider, ...]
    provider_by_domain: Mapping[str, Provider]
    tld_typos: Mapping[str, str]
    keyboard_neighbours: frozenset[tuple[str, str]]
    roles: RoleLists
    lookalikes: Mapping[str, str]

    @classmethod
    def load(cls) -> Catalog:
        """The catalog from the files shipped with postroom."""
        folder = resources.files(__package__)
        return cls.from_texts(
            (folder / "providers.toml").read_text(encoding="utf-8"),
            (folder / "roles.toml").read_text(encoding="utf-8"),
            (folder / "lookalikes.toml").read_text(encoding="utf-8"),
        )

    @classmethod
    def from_texts(cls, providers_text: str, roles_text: str, lookalikes_text: str) -> Catalog:
        providers_data = _parse(providers_text, "providers.toml")
        _check_keys(providers_data, {"provider", "tld_typos", "keyboard"}, "providers.toml")
        entries = providers_data.get("provider", [])
        providers = tuple(_provider(entry, index) for index, entry in enumerate(entries))
        by_domain: dict[str, Provider] = {}
        for provider in providers:
            for domain in provider.domains:
                if domain in by_domain:
                    raise CatalogError(f"providers.toml: {domain} is listed twice")
                by_domain[domain] = provider
        tld_typos = _string_map(providers_data.get("tld_typos", {}), "providers.toml tld_typos")
        layouts = providers_data.get("keyboard", {}).get("layouts", [])
        return cls(
            providers=providers,
            provider_by_domain=MappingProxyType(by_domain),
            tld_typos=MappingProxyType(dict(tld_typos)),
            keyboard_neighbours=_neighbours(layouts),
            roles=_roles(_parse(roles_text, "roles.toml")),
            lookalikes=MappingProxyType(
                _string_map(
                    _parse(lookalikes_text, "lookalikes.toml").get("latin", {}),
                    "lookalikes.toml latin",
                )
            ),
        )


def role_key(local_part: str) -> str:
    """A local part as role lists are written: lower case, no tag, no separators."""
    return local_part.split("+", 1)[0].lower().translate(_ROLE_SEPARATORS)


def _parse(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"{name}: {error}") from None


def _check_keys(table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CatalogError(f"{where}: expected a list of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise CatalogError(f"{where}: expected a table of strings")
    return {key.lower(): item.lower() for key, item in value.items()}


def _provider(entry: Any, index: int) -> Provider:
    where = f"providers.toml provider[{index}]"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a table")
    _check_keys(entry, _PROVIDER_KEYS, where)
    domains = tuple(domain.lower() for domain in _strings(entry.get("domains"), where + ".domains"))
    if not domains:
        raise CatalogError(f"{where}.domains: empty")
    canonical = entry.get("canonical")
    if canonical is not None and canonical not in domains:
        raise CatalogError(f"{where}.canonical: {canonical!r} is not one of its domains")
    ignore_dots = entry.get("ignore_dots", False)
    if not isinstance(ignore_dots, bool):
        raise CatalogError(f"{where}.ignore_dots: expected true or false")
    return Provider(
        name=str(entry.get("name", domains[0])),
        domains=domains,
        canonical=canonical,
        ignore_dots=ignore_dots,
        tag_separators=_strings(entry.get("tag_separators", []), where + ".tag_separators"),
    )


def _roles(data: dict[str, Any]) -> RoleLists:
    _check_keys(data, _ROLE_KEYS, "roles.toml")

    def keys(name: str) -> tuple[str, ...]:
        return tuple(role_key(item) for item in _strings(data.get(name, []), "roles.toml " + name))

    return RoleLists(
        non_human=frozenset(keys("non_human")),
        non_human_prefixes=keys("non_human_prefixes"),
        shared=frozenset(keys("shared")),
    )


def _neighbours(layouts: Any) -> frozenset[tuple[str, str]]:
    """Pairs of neighbouring keys, both orders, merged over all layouts."""
    pairs: set[tuple[str, str]] = set()
    for layout in layouts:
        rows = _strings(layout, "providers.toml keyboard.layouts")
        for row_index, row in enumerate(rows):
            for position, key in enumerate(row):
                around = [row[position + 1]] if position + 1 < len(row) else []
                if row_index + 1 < len(rows):
                    below = rows[row_index + 1]
                    around += [below[i] for i in (position - 1, position) if 0 <= i < len(below)]
                for other in around:
                    pairs.add((key, other))
                    pairs.add((other, key))
    return frozenset(pairs)
