"""Misspelled provider domains and top-level domains, with the likely correction.

Purpose: `TypoFinder.find(ascii_domain)` says whether a domain looks like a
slip of the fingers on a common provider's domain (gmial.com, hotmial.com,
yaho.com, mail.ry) or on a top-level domain (company.con), and which domain
was meant.

How: the typed domain is compared with every provider domain of providers.toml
within two edits. Candidates come from a deletion index (a domain and every
string made from it by deleting up to two characters, the "symmetric delete"
method: two strings within two edits share such a string), so a lookup costs a
few hundred dictionary probes whatever the catalogue size. Each candidate is
scored by a weighted Damerau-Levenshtein distance (optimal string alignment)
whose weights follow how people mistype:

- swapping two neighbouring letters (gmial), a neighbouring key (gnail),
  doubling or undoubling a letter (gmaill, yaho for yahoo): 0.5;
- dropping or adding any other letter (gmai, gmaile): 0.9;
- any other substitution (email for gmail): 1.0.

A TLD listed in `tld_typos` (con, cmo, rn, ...) is replaced first.

Decision, with `name` the provider domain's first label:

- the typed TLD does not exist and a correction is found (cost <= 1.0, or a
  `tld_typos` fix): sure;
- otherwise sure when the cost is <= 0.9, `name` has at least 5 letters, the
  best candidate is unique, and the typed name differs from `name` (gmail.co,
  yandex.uz only change a real TLD: a provider may own that domain, so these
  are only suspected);
- suspected when the cost is within a limit that grows with `name`'s length
  (<= 0.5 for 4 letters, 1.0 for 5, 1.5 for 6 or more); names of 3 letters or
  fewer (aol, gmx, qq) have too many real neighbours to suspect anything.

Inputs: lower-case ASCII domains (IDNA form). Outputs: `TypoFinding` or None.
Pure after construction; no I/O. Reads providers.toml through `Catalog`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from postroom.campaign.addresses.catalog import Catalog

__all__ = ["TypoFinder", "TypoFinding", "typing_distance"]

CHEAP_SLIP_COST = 0.5
MISSING_OR_EXTRA_COST = 0.9
SUBSTITUTION_COST = 1.0
MAX_INDEX_DELETIONS = 2
SURE_MAX_COST = 0.9
SURE_MIN_NAME_LENGTH = 5
UNKNOWN_TLD_MAX_COST = 1.0
# (shortest provider name length, largest cost still suspected), longest first.
SUSPECT_LIMITS = ((6, 1.5), (5, 1.0), (4, 0.5))


@dataclass(frozen=True, slots=True)
class TypoFinding:
    """The domain probably meant, and whether the typo is sure (else suspected)."""

    domain: str
    sure: bool


def typing_distance(typed: str, meant: str, neighbours: frozenset[tuple[str, str]]) -> float:
    """Weighted optimal-string-alignment distance from `typed` to `meant` (see module doc)."""
    rows, columns = len(typed) + 1, len(meant) + 1
    table = [[0.0] * columns for _ in range(rows)]
    for i in range(1, rows):
        table[i][0] = table[i - 1][0] + _extra_cost(typed, i - 1)
    for j in range(1, columns):
        table[0][j] = table[0][j - 1] + _extra_cost(meant, j - 1)
    for i in range(1, rows):
        typed_char = typed[i - 1]
        for j in range(1, columns):
            meant_char = meant[j - 1]
            if typed_char == meant_char:
                substitution = table[i - 1][j - 1]
            elif (typed_char, meant_char) in neighbours:
                substitution = table[i - 1][j - 1] + CHEAP_SLIP_COST
            else:
                substitution = table[i - 1][j - 1] + SUBSTITUTION_COST
            best = min(
                substitution,
                table[i - 1][j] + _extra_cost(typed, i - 1),
                table[i][j - 1] + _extra_cost(meant, j - 1),
            )
            if (
                i > 1
                and j > 1
                and typed_char == meant[j - 2]
                and typed[i - 2] == meant_char
                and typed_char != meant_char
            ):
                best = min(best, table[i - 2][j - 2] + CHEAP_SLIP_COST)
            table[i][j] = best
    return table[-1][-1]


def _extra_cost(text: str, index: int) -> float:
    """Cost of a letter typed in excess (or missing): cheap when it doubles its neighbour."""
    if index > 0 and text[index] == text[index - 1]:
        return CHEAP_SLIP_COST
    return MISSING_OR_EXTRA_COST


def _deletions(text: str, depth: int) -> set[str]:
    """`text` and every string made from it by deleting up to `depth` characters."""
    found = {text}
    level = {text}
    for _ in range(depth):
        level = {word[:i] + word[i + 1 :] for word in level for i in range(len(word))}
        found |= level
    return found


class TypoFinder:
    """Finds the provider domain or TLD a typed domain was meant to be."""

    def __init__(self, catalog: Catalog, tld_exists: Callable[[str], bool]) -> None:
        self._known = catalog.provider_by_domain
        self._tld_typos = catalog.tld_typos
        self._neighbours = catalog.keyboard_neighbours
        self._tld_exists = tld_exists
        self._order = {domain: rank for rank, domain in enumerate(self._known)}
        self._index = self._build_index(self._known)
        self._longest = max((len(domain) for domain in self._known), default=0)

    @staticmethod
    def _build_index(domains: Iterable[str]) -> Mapping[str, tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for domain in domains:
            for variant in _deletions(domain, MAX_INDEX_DELETIONS):
                index.setdefault(variant, []).append(domain)
        return MappingProxyType({key: tuple(value) for key, value in index.items()})

    def find(self, ascii_domain: str) -> TypoFinding | None:
        """The likely meant domain for `ascii_domain`, or None when it looks right."""
        domain = ascii_domain.lower()
        if domain in self._known or "." not in domain:
            return None
        name, _, tld = domain.rpartition(".")
        fixed = name + "." + self._tld_typos[tld] if tld in self._tld_typos else domain
        if fixed in self._known:
            return TypoFinding(fixed, sure=True)
        tld_unknown = not self._tld_exists(tld)
        nearest = self._nearest(fixed)
        if nearest is not None:
            cost, meant, unique = nearest
            meant_name = meant.split(".", 1)[0]
            if tld_unknown and cost <= UNKNOWN_TLD_MAX_COST:
                return TypoFinding(meant, sure=True)
            same_name = fixed.split(".", 1)[0] == meant_name
            if (
                cost <= SURE_MAX_COST
                and len(meant_name) >= SURE_MIN_NAME_LENGTH
                and unique
                and not same_name
            ):
                return TypoFinding(meant, sure=True)
            for min_length, max_cost in SUSPECT_LIMITS:
                if len(meant_name) >= min_length:
                    if cost <= max_cost:
                        return TypoFinding(meant, sure=False)
                    break
        if fixed != domain:
            return TypoFinding(fixed, sure=True)
        return None

    def _nearest(self, domain: str) -> tuple[float, str, bool] | None:
        """(cost, provider domain, whether no other one ties) of the closest provider."""
        if len(domain) > self._longest + MAX_INDEX_DELETIONS:
            return None  # more than two edits away from every provider domain
        candidates: set[str] = set()
        for variant in _deletions(domain, MAX_INDEX_DELETIONS):
            candidates.update(self._index.get(variant, ()))
        scored = sorted(
            (
                typing_distance(domain, candidate, self._neighbours),
                self._order[candidate],
                candidate,
            )
            for candidate in candidates
        )
        if not scored:
            return None
        cost, _, meant = scored[0]
        unique = len(scored) == 1 or scored[1][0] > cost
        return cost, meant, unique
