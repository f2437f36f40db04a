"""The plain-address path of `syntax.parse_address` agrees with email-validator.

`_plain_address` parses the common address without email-validator (syntax.py's
docstring says why). For every input below — generated around the plain shape and
its limits (64/63/253/254 octets, hyphens at label edges, `--`, numeric, reserved
and special-use TLDs, upper case, characters outside the plain set), plus every
address of the shared corpora — `parse_address` must return exactly what it returns
with that path switched off, under both reserved-TLD policies. The test also checks
the path is taken often enough to be tested at all."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from tests.unit.campaign.test_addresses_corpus import corpus_files, load_cases

from postroom.campaign.addresses import syntax
from postroom.campaign.addresses.syntax import SyntaxResult, parse_address

ATOM_CHARS = "abcxyz0189_+-"
LABEL_CHARS = "abcxyz0189-"
TLDS = ("com", "de", "io", "museum", "test", "example", "local", "onion", "arpa", "c0m", "x")
ODD = ("A", "Z", ".", "..", "-", "--", "@", '"', " ", "é", "ß", "xn--", "_", "=", "[", "1")
POLICIES = (frozenset(), frozenset({"test", "example"}))
GENERATED = 6000


def run_of(rng: random.Random, chars: str, length: int) -> str:
    return "".join(rng.choice(chars) for _ in range(length))


def generated(rng: random.Random) -> Iterator[str]:
    for _ in range(GENERATED):
        atoms = [run_of(rng, ATOM_CHARS, rng.randint(1, 12)) for _ in range(rng.randint(1, 6))]
        local = ".".join(atoms)[: rng.choice((8, 63, 64, 65, 80))]
        longest = rng.choice((8, 62, 63, 64))
        labels = [
            run_of(rng, LABEL_CHARS, rng.randint(1, longest)) for _ in range(rng.randint(1, 4))
        ]
        if rng.random() < 0.7:  # mostly letters and digits at the edges, as hosts are
            labels = [f"a{label}9" if len(label) < longest - 1 else label for label in labels]
        address = f"{local}@{'.'.join(labels)}.{rng.choice(TLDS)}"
        if rng.random() < 0.2:  # near the domain and address limits
            filler = ".".join(["a" * 62] * 4)
            address = f"{local[: rng.randint(1, 12)]}@{filler[: rng.randint(230, 250)]}.com"
        if rng.random() < 0.3:
            position = rng.randrange(len(address) + 1)
            address = address[:position] + rng.choice(ODD) + address[position:]
        yield address


def corpus_addresses() -> list[str]:
    return [case["address"] for path in corpus_files() for case in load_cases(path)]


def parsed(text: str, accepted: frozenset[str]) -> SyntaxResult:
    return parse_address(
        text, allow_quoted=False, allow_ip_literal=False, accepted_reserved_tlds=accepted
    )


def test_the_plain_path_agrees_with_email_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = [*generated(random.Random(15)), *corpus_addresses()]
    plain = syntax._plain_address
    taken = 0
    fast: list[SyntaxResult] = []
    for text in inputs:
        for accepted in POLICIES:
            taken += plain(text, accepted) is not None
            fast.append(parsed(text, accepted))
    monkeypatch.setattr(syntax, "_plain_address", lambda text, accepted: None)
    slow = [parsed(text, accepted) for text in inputs for accepted in POLICIES]
    disagreements = [
        (text, accepted, mine, theirs)
        for (text, accepted), mine, theirs in zip(
            [(text, accepted) for text in inputs for accepted in POLICIES], fast, slow, strict=True
        )
        if mine != theirs
    ]
    assert disagreements == []
    # Both paths well exercised: many plain addresses, many that are not addresses at all.
    assert taken > len(fast) // 3
    assert sum(result.parsed is None for result in slow) > len(slow) // 5


def test_plain_addresses_take_the_plain_path() -> None:
    result = syntax._plain_address("ann.lee+news@mail.shop.de", frozenset())
    assert result is not None and result.parsed is not None
    assert (result.parsed.address, result.parsed.ascii_domain, result.reasons) == (
        "ann.lee+news@mail.shop.de", "mail.shop.de", (),
    )  # fmt: skip
    reserved = syntax._plain_address("ann@shop.test", frozenset())
    assert reserved is not None and reserved.reasons == ("reserved_tld",)
    for other in ("Ann@shop.de", "ann@xn--bcher-kva.de", "ann@shop.c0m", "ann@-shop.de"):
        assert syntax._plain_address(other, frozenset()) is None, other
