"""The address validator scored on the shared corpora (shared/corpora/addresses/*.jsonl).

Each case is run through `Validator.check_syntax` (no DNS) with the policy of a
production campaign: no reserved TLD accepted (the default policy accepts
.test and .example for tests; email-validator's corpus expects them refused),
quoted local parts refused unless the case names email-validator's
`allow_quoted_local=True` option. Expected campaign verdict: `expected_valid`
true → valid or risky; false → invalid; `campaign_ambiguous` true (RFC-valid
forms a campaign list refuses: quoted local parts, IP literals, dotless or
numeric TLDs) → invalid. For accepted cases with a `normalized` form, our
`address` must equal it.

The cases whose verdict depends on DNS (email-validator's mocked-DNS cases
and its "example.com is not deliverable" cases) run in the second test,
through the DNS step, against a fake resolver loaded from the corpus's own
mocked answers (raw/email-validator-2.4.0/mocked-dns-answers.json); no real
DNS is queried.

Deliberate disagreements, each asserted to be exactly that:

1. Placeholder TLDs: `.tld`, `.a`, `.co-uk`, `.thisisminekthx`, `.x2`, the
   2007 ICANN test TLD `.xn--jxalpdlp`, ... are valid to the corpora (which
   test syntax only); our verdict is invalid because the TLD does not exist
   (`unknown_tld`, or `syntax` where email-validator already refuses a TLD
   that ends in a digit). A list address at a TLD that does not exist cannot
   receive mail.
2. Junk around the address: leading/trailing spaces, CR/LF, a trailing dot,
   angle brackets and display names are invalid input to the corpora; we trim
   them and report `junk_trimmed` / `display_name`, since a list importer
   should take `"Ann" <ann@example.com>` as ann@example.com. The trimmed
   address must itself be accepted without any junk reason.
3. `test@xn--example.com` (isemail, valid with a DNS warning): "xn--example"
   is not a valid A-label, so IDNA 2008 and email-validator refuse it.
4. `user@nellis.af.mil` (mocked DNS): no MX, a global A record, SPF "-all".
   email-validator refuses it as "does not send email"; RFC 5321 section 5.1
   says the A record stands in for the MX, and SPF is about sending, so we say
   valid (with the note `implicit_mx`).

Figures at the time of writing (pytest -s prints them): without DNS,
email_validator_tests 122/144 agree (22 deliberate), isemail_tests 134/164
(30 deliberate), isemail_tests_original 272/279 (7 deliberate); 0 unexplained.
With mocked DNS, email-validator's 11 DNS cases: 10/11 (1 deliberate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from publicsuffixlist import PublicSuffixList

from postroom.campaign.addresses import ValidationPolicy, Validator

CORPUS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "corpora" / "addresses"
MOCKED_DNS = CORPUS_DIR / "raw" / "email-validator-2.4.0" / "mocked-dns-answers.json"
PRODUCTION = ValidationPolicy(dns=False, accepted_reserved_tlds=frozenset())
PRODUCTION_QUOTED = ValidationPolicy(
    dns=False, accepted_reserved_tlds=frozenset(), allow_quoted=True
)
DNS_CATEGORIES = frozenset({"reserved_example_domain_not_deliverable"})
ACCEPTED = frozenset({"valid", "risky"})
JUNK_REASONS = frozenset({"junk_trimmed", "display_name"})
EXPLAINED_BY_ID = {
    "isemail-tests-original-279": "xn--example is not a valid IDNA A-label",
}
EXPLAINED_DNS_BY_ADDRESS = {
    "user@nellis.af.mil": "no MX + global A is deliverable (RFC 5321 5.1); SPF -all ignored",
}
# Agreement floors: just under the figures in the module docstring.
FLOORS = {
    "email_validator_tests.jsonl": 0.84,
    "isemail_tests.jsonl": 0.81,
    "isemail_tests_original.jsonl": 0.97,
}


@dataclass(frozen=True, slots=True)
class Score:
    agree: int
    deliberate: int
    unexplained: tuple[str, ...]
    total: int


def corpus_files() -> list[Path]:
    if not CORPUS_DIR.is_dir():
        pytest.fail(f"address corpora missing: expected *.jsonl files in {CORPUS_DIR}")
    files = sorted(CORPUS_DIR.glob("*.jsonl"))
    if not files:
        pytest.fail(f"address corpora missing: no *.jsonl file in {CORPUS_DIR}")
    return files


def load_cases(path: Path) -> list[dict[str, Any]]:
    # Split on newlines only: some addresses hold U+2028, which splitlines() would cut at.
    lines = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line.strip()]


def needs_dns(case: dict[str, Any]) -> bool:
    return "dns_fixture" in case or case.get("category") in DNS_CATEGORIES


def expected_accept(case: dict[str, Any]) -> bool:
    return bool(case["expected_valid"]) and not case.get("campaign_ambiguous")


def top_level_label(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".").rsplit(".", 1)[-1].lower()


@pytest.fixture(scope="module")
def validators() -> dict[bool, Validator]:
    return {False: Validator(PRODUCTION), True: Validator(PRODUCTION_QUOTED)}


@pytest.fixture(scope="module")
def suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def score_file(
    cases: list[dict[str, Any]], validators: dict[bool, Validator], suffixes: PublicSuffixList
) -> Score:
    agree = deliberate = 0
    unexplained: list[str] = []
    for case in cases:
        allow_quoted = "allow_quoted_local=True" in case.get("upstream_options", [])
        validator = validators[allow_quoted]
        result = validator.check_syntax(case["address"])
        accepted = result.verdict in ACCEPTED
        if accepted and expected_accept(case):
            if case.get("normalized") and result.address != case["normalized"]:
                unexplained.append(
                    f"{case['id']}: address {result.address!r} != normalized {case['normalized']!r}"
                )
                continue
            agree += 1
        elif not accepted and not expected_accept(case):
            agree += 1
        elif not accepted and case["id"] in EXPLAINED_BY_ID:
            deliberate += 1
        elif not accepted and not suffixes.is_public(top_level_label(case["address"])):
            assert set(result.reasons) & {"unknown_tld", "syntax"}, result
            deliberate += 1  # disagreement 1: the TLD does not exist
        elif accepted and set(result.reasons) & JUNK_REASONS:
            trimmed = validator.check_syntax(result.address or "")
            assert trimmed.verdict in ACCEPTED and not set(trimmed.reasons) & JUNK_REASONS, (
                case["id"],
                trimmed,
            )
            deliberate += 1  # disagreement 2: junk trimmed
        else:
            unexplained.append(
                f"{case['id']}: {case['address']!r} expected "
                f"{'accept' if expected_accept(case) else 'invalid'}, got {result.verdict} "
                f"{result.reasons}"
            )
    return Score(agree, deliberate, tuple(unexplained), len(cases))


def test_corpora_without_dns(validators: dict[bool, Validator], suffixes: PublicSuffixList) -> None:
    failures: list[str] = []
    for path in corpus_files():
        cases = [case for case in load_cases(path) if not needs_dns(case)]
        assert cases, f"{path.name}: no case"
        score = score_file(cases, validators, suffixes)
        ratio = score.agree / score.total
        print(
            f"\n{path.name}: {score.agree}/{score.total} agree ({ratio:.1%}), "
            f"{score.deliberate} deliberate disagreements, {len(score.unexplained)} unexplained"
        )
        failures.extend(score.unexplained)
        floor = FLOORS.get(path.name, 0.0)
        if ratio < floor:
            failures.append(f"{path.name}: agreement {ratio:.1%} below floor {floor:.0%}")
    assert not failures, "\n".join(failures)


def mocked_resolver(make_resolver: type) -> object:
    if not MOCKED_DNS.is_file():
        pytest.fail(f"mocked DNS answers missing: {MOCKED_DNS}")
    mx: dict[str, list[tuple[int, str]]] = {}
    hosts: dict[str, list[str]] = {}
    for entry in json.loads(MOCKED_DNS.read_text(encoding="utf-8")):
        name, rdtype = entry["query"]["name"], entry["query"]["type"]
        if rdtype == "MX" and entry["answer"]:
            for record in entry["answer"]:
                preference, exchange = record.split()
                mx.setdefault(name, []).append((int(preference), exchange.rstrip(".") or "."))
        elif rdtype in ("MX", "A", "AAAA"):
            # An empty MX answer means the name exists without MX (NODATA).
            hosts.setdefault(name, []).extend(entry["answer"] if rdtype != "MX" else [])
        # ANY with no answer: the name does not exist, so it is in neither map.
    return make_resolver(mx=mx, hosts=hosts)


async def test_email_validator_dns_cases_with_mocked_answers(make_resolver: type) -> None:
    path = CORPUS_DIR / "email_validator_tests.jsonl"
    if not path.is_file():
        pytest.fail(f"address corpus missing: {path}")
    cases = [case for case in load_cases(path) if needs_dns(case)]
    assert len(cases) >= 8, "the corpus's DNS cases went missing"
    validator = Validator(
        ValidationPolicy(accepted_reserved_tlds=frozenset()),
        resolver=mocked_resolver(make_resolver),
    )
    results = await validator.validate([case["address"] for case in cases])
    agree = deliberate = 0
    unexplained = []
    for case, result in zip(cases, results, strict=True):
        accepted = result.verdict in ACCEPTED
        if accepted == expected_accept(case):
            agree += 1
        elif case["address"] in EXPLAINED_DNS_BY_ADDRESS:
            assert result.reasons == ("implicit_mx",), result
            deliberate += 1
        else:
            unexplained.append(f"{case['id']}: {case['address']} got {result}")
    print(f"\nemail-validator DNS cases: {agree}/{len(cases)} agree, {deliberate} deliberate")
    assert not unexplained, "\n".join(unexplained)
    assert agree >= len(cases) - len(EXPLAINED_DNS_BY_ADDRESS)
