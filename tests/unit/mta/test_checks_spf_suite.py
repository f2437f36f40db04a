"""The openspf RFC 7208 test suite and pyspf's extra cases, run through `check_host`.

Each YAML test is one case: a fake `DnsLookup` serves the scenario's
`zonedata`, `check_host(lookup, host, mailfrom, helo)` must give one of the
expected results and, when the test names one, the expected explanation.
The fake follows the conventions of the suite's drivers (pyspf's own
test/testspf.py), which the data relies on:
- a name with SPF records and no TXT entry also gets them as TXT records (the
  suite's header: "auto-magic duplication of SPF to TXT records"); `TXT: NONE`
  says the name has no TXT records and stops the copying;
- a bare `TIMEOUT` entry makes a query time out unless a record of the asked
  type comes before it in the list;
- a CNAME answers every type (the fake does not follow it: pyspf does, with its
  own loop detection, which the `ptr-cname-loop` case needs).
`explanation: DEFAULT` means "not the exp= text": the implementation's own
text, which for us is pyspf's comment on the result. `header` and `receiver`
test pyspf's Received-SPF field, which postroom does not use: ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SPF
import dns.rdtypes.ANY.TXT
import pytest
import yaml

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mta.checks.lookup import DnsLookup
from postroom.mta.checks.spf import SpfResult, check_host

SUITE_DIR = Path(__file__).parents[3].parent / "shared" / "corpora" / "spf_dmarc" / "spf"
SUITE_FILES = ("rfc7208-tests.yml", "pyspf-extra-tests.yml")
TIMEOUT = "TIMEOUT"
# A DNS character-string holds at most 255 octets (RFC 1035 3.3).
MAX_STRING = 255

# Cases written for pyspf's non-RFC modes (`strict: 0` lax, `strict: 2` harsh);
# check_host always evaluates as RFC 7208 says, where `default=` is an unknown
# modifier and is ignored (RFC 7208 6): `v=spf1 default=-` is neutral.
RFC_MODE_RESULTS = {
    "corner-cases/default-modifier": ["neutral"],
    "corner-cases/default-modifier-harsh": ["neutral"],
}

Record = dns.rdata.Rdata | str  # a record, or TIMEOUT
Zone = dict[str, list[Record]]


@dataclass(frozen=True, slots=True)
class SuiteCase:
    zonedata: dict[str, Any]
    test: dict[str, Any]


def suite_cases() -> list[Any]:
    missing = [name for name in SUITE_FILES if not (SUITE_DIR / name).is_file()]
    if missing:
        # A test of its own that fails, so the rest of the run still happens.
        return [pytest.param(None, id=f"missing-{name}") for name in missing]
    cases = []
    for file_name in SUITE_FILES:
        with (SUITE_DIR / file_name).open("rb") as stream:
            scenarios = list(yaml.safe_load_all(stream))
        for index, scenario in enumerate(scenarios, 1):
            title = scenario.get("description") or scenario.get("comment") or ""
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            scenario_id = slug or f"{Path(file_name).stem}-{index}"
            for test_name, test in scenario["tests"].items():
                case = SuiteCase(scenario["zonedata"], test)
                cases.append(pytest.param(case, id=f"{scenario_id}/{test_name}"))
    return cases


@pytest.mark.parametrize("case", suite_cases())
def test_suite_case(case: SuiteCase | None, request: pytest.FixtureRequest) -> None:
    if case is None:
        pytest.fail(
            f"SPF test suite missing in {SUITE_DIR} (the shared/ directory must sit "
            "beside the checkout, as in CI)"
        )
    test = case.test
    verdict = check_host(zone_lookup(case.zonedata), test["host"], test["mailfrom"], test["helo"])

    case_id = request.node.callspec.id
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    expected = RFC_MODE_RESULTS.get(case_id, expected)
    assert verdict.result in {SpfResult(result) for result in expected}, verdict
    explanation = test.get("explanation")
    if explanation == "DEFAULT":
        host = test["host"]
        assert verdict.explanation == (
            f"domain of {verdict.domain} does not designate {host} as permitted sender"
        )
    elif explanation is not None:
        assert verdict.explanation == explanation


def zone_lookup(zonedata: dict[str, Any]) -> DnsLookup:
    """A `DnsLookup` answering from a scenario's `zonedata` (see the module docstring)."""
    zone: Zone = {name.lower(): list(zone_records(entries)) for name, entries in zonedata.items()}

    def lookup(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        entries = zone.get(name.lower().removesuffix("."))
        if entries is None:
            raise DnsNotFound(name, rdtype, "no such domain (NXDOMAIN)")
        found: list[dns.rdata.Rdata] = []
        for entry in entries:
            if isinstance(entry, str):
                if not found:
                    raise DnsTemporaryError(name, rdtype, "timed out")
                break
            if dns.rdatatype.to_text(entry.rdtype) in (rdtype, "CNAME"):
                found.append(entry)
        if not found:
            raise DnsNoData(name, rdtype, "no records of this type")
        return found

    return lookup


def zone_records(entries: list[Any]) -> Iterator[Record]:
    """The records of one name, in order, SPF copied to TXT as the suite expects."""
    spf_values = []
    has_txt = False
    for entry in entries:
        if entry == TIMEOUT:
            yield TIMEOUT
            continue
        ((rdtype, value),) = entry.items()
        has_txt = has_txt or rdtype == "TXT"
        if value == "NONE":
            continue
        if rdtype in ("TXT", "SPF"):
            if rdtype == "SPF":
                spf_values.append(value)
            yield from text_record(rdtype, value)
        else:
            yield other_record(rdtype, value)
    if not has_txt:
        for value in spf_values:
            yield from text_record("TXT", value)


def text_record(rdtype: str, value: str | list[str]) -> Iterator[dns.rdata.Rdata]:
    """A TXT or SPF record built from its strings, not from zone-file text.

    The values hold quotes, backslashes and non-ASCII (the suite's drivers hand
    them to pyspf UTF-8 encoded); longer ones are split at 255 octets as a zone
    file would, and pyspf joins them again.
    """
    strings = [value] if isinstance(value, str) else value
    chunks = []
    for text in strings:
        data = str(text).encode("utf-8")
        chunks.extend(data[start : start + MAX_STRING] for start in range(0, len(data), MAX_STRING))
        if not data:
            chunks.append(b"")
    if not chunks:
        # A TXT record with no string at all (the suite's `null` case): illegal,
        # and dnspython refuses to build one, so the name just lacks it.
        return
    kind = dns.rdtypes.ANY.TXT.TXT if rdtype == "TXT" else dns.rdtypes.ANY.SPF.SPF
    yield kind(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), chunks)


def other_record(rdtype: str, value: Any) -> dns.rdata.Rdata:
    """An A, AAAA, MX, PTR or CNAME record from its zone-file text."""
    if rdtype == "MX":
        preference, exchange = value
        text = f"{preference} {exchange or '.'}"
    else:
        # An empty target (the `null-cname` case) is the root name.
        text = str(value) or "."
    # Absolute names, as a resolver returns them (relativize would strip the origin).
    return dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
        text,
        origin=dns.name.root,
        relativize=False,
    )
