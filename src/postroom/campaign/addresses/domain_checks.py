"""Checks on the domain of an address that need no DNS.

Purpose: `DomainInspector.inspect(domain, ascii_domain)` gives, for one
domain, every reason of this list that applies and the domain to suggest:

- `unknown_tld`: the TLD is not in the public suffix list (which carries every
  TLD of the root zone); reserved TLDs are syntax.py's business;
- `typo_domain` / `typo_domain_suspected`: typos.py, with the meant domain
  (a disposable domain is only ever a sure typo: it exists, so a mere
  resemblance to a provider says nothing);
- `mixed_script`: a label mixes lookalike alphabets (scripts.py), suggesting
  how it reads when that reading is plain ASCII;
- `confusable`: a non-ASCII domain that reads as a provider's domain;
- `disposable`: the domain, or a domain it belongs to, is in the
  `disposable_email_domains` blocklist or the operator's `extra_disposable`.

Results are cached per domain (a bounded map owned by the inspector), since a
list repeats a few domains many times.

Inputs: a domain in Unicode and IDNA form, lower case. Outputs: `DomainFindings`.
Pure apart from the cache; no I/O after construction. Config read:
`ValidationPolicy.extra_disposable` (passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from disposable_email_domains import blocklist as DISPOSABLE_BLOCKLIST

from postroom.campaign.addresses.catalog import Catalog
from postroom.campaign.addresses.scripts import latin_reading, mixes_scripts
from postroom.campaign.addresses.syntax import RESERVED_TLDS
from postroom.campaign.addresses.typos import TypoFinder

__all__ = ["DomainFindings", "DomainInspector"]

DEFAULT_CACHE_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class DomainFindings:
    """Reasons found for a domain, and the domain to suggest instead (or None)."""

    reasons: tuple[str, ...]
    suggestion: str | None


class DomainInspector:
    """DNS-free domain checks with a per-domain cache (see module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        tld_exists: Callable[[str], bool],
        extra_disposable: Iterable[str] = (),
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._catalog = catalog
        self._tld_exists = tld_exists
        self._typos = TypoFinder(catalog, tld_exists)
        self._extra_disposable = frozenset(domain.lower() for domain in extra_disposable)
        self._cache: dict[str, DomainFindings] = {}
        self._cache_entries = max(1, cache_entries)

    def inspect(self, domain: str, ascii_domain: str) -> DomainFindings:
        found = self._cache.get(domain)
        if found is None:
            found = self._inspect(domain, ascii_domain.lower())
            if len(self._cache) >= self._cache_entries:
                self._cache.pop(next(iter(self._cache)))  # oldest first: a plain FIFO bound
            self._cache[domain] = found
        return found

    def is_disposable(self, ascii_domain: str) -> bool:
        """The domain or one of its parent domains (two labels or more) is disposable."""
        labels = ascii_domain.split(".")
        for start in range(len(labels) - 1):
            candidate = ".".join(labels[start:])
            if candidate in DISPOSABLE_BLOCKLIST or candidate in self._extra_disposable:
                return True
        return False

    def _inspect(self, domain: str, ascii_domain: str) -> DomainFindings:
        reasons: list[str] = []
        suggestion: str | None = None
        tld = ascii_domain.rsplit(".", 1)[-1]
        if tld not in RESERVED_TLDS and not self._tld_exists(tld):
            reasons.append("unknown_tld")
        if not domain.isascii():
            reading = latin_reading(domain, self._catalog.lookalikes)
            if any(mixes_scripts(label) for label in domain.split(".")):
                reasons.append("mixed_script")
                if reading.isascii():
                    suggestion = reading
            elif reading.isascii() and reading in self._catalog.provider_by_domain:
                reasons.append("confusable")
                suggestion = reading
        disposable = self.is_disposable(ascii_domain)
        if domain.isascii() and ascii_domain not in self._catalog.provider_by_domain:
            typo = self._typos.find(ascii_domain)
            # A listed disposable domain exists: only a sure typo is worth saying
            # (gmial.com is both), a mere resemblance (yopmail, hotmail) is not.
            if typo is not None and (typo.sure or not disposable):
                reasons.append("typo_domain" if typo.sure else "typo_domain_suspected")
                suggestion = typo.domain
        if disposable:
            reasons.append("disposable")
        return DomainFindings(tuple(reasons), suggestion)
