"""The DMARC vectors of shared/corpora/spf_dmarc (OpenDMARC and dmarc 1.2.1 tests), one case each.

Alignment and organizational-domain vectors use the public suffix list
snapshot they were written for (opendmarc-testfiles/effective_tld_names.dat);
policy vectors get a fake DNS serving the record at _dmarc.<org_domain or
from_domain>. Where a library's answer is its own leniency (or a DMARCbis
feature) and RFC 7489 says otherwise, the case asserts the RFC answer: the
vector ids and the reasons are listed below, and a test checks that each one
still names a real disagreement. implementation_specific rows carry their
RFC 7489 answer in rfc7489_expected_*.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from publicsuffixlist import PublicSuffixList

from postroom.core.dns import DnsNotFound
from postroom.mta.checks.dmarc import (
    AuthenticatedIdentifier,
    DmarcRecord,
    DmarcRecordError,
    aligned,
    evaluate,
    from_domain,
    organizational_domain,
    parse_record,
)

CORPUS = Path(__file__).parents[3].parent / "shared" / "corpora" / "spf_dmarc" / "dmarc"
VECTORS = CORPUS / "dmarc_vectors.jsonl"
OLD_PSL = CORPUS / "opendmarc-testfiles" / "effective_tld_names.dat"
TYPE_COUNTS = {
    "record_parse": 33,
    "alignment": 18,
    "from_header_domain": 13,
    "organizational_domain": 3,
    "policy_evaluation": 8,
}

# Vector id -> (RFC 7489 answer, why the library's answer is not it).
PARSE_RFC: dict[str, tuple[bool, str]] = {
    "dmarc-005": (
        False,
        "p=n: OpenDMARC matches a prefix; 6.4 dmarc-request is exactly none, quarantine or "
        "reject, and without rua= there is no fallback to p=none (6.6.3)",
    ),
    "dmarc-012": (
        True,
        "rf=bob: a syntactically valid format keyword (6.4); 6.3 says a receiver SHOULD ignore "
        "an unregistered format, OpenDMARC takes the MAY and drops the record",
    ),
    "dmarc-019": (
        True,
        "rf=000...: as dmarc-012, a valid keyword (RFC 5321 Ldh-str) that is not registered",
    ),
    "dmarc-058": (
        False,
        "RF = AFRF,IODEF: 6.4 separates formats with ':', so 'AFRF,IODEF' is no keyword list "
        "(dmarc 1.2.1 also splits on ','); the rest of the record is fine",
    ),
}
ALIGNMENT_RFC: dict[str, tuple[bool, str]] = {
    "dmarc-024": (
        False,
        "'.mac.com.': OpenDMARC strips leading dots; a name with an empty label is not the "
        "FQDN mac.com, and strict alignment needs the exact FQDN (3.1)",
    ),
    "dmarc-025": (False, "'....mac.com....': as dmarc-024"),
}
FROM_RFC: dict[str, tuple[str | None, str]] = {
    "dmarc-035": (
        None,
        "'<<<><joe@joe.com>>>' is not an RFC 5322 mailbox list (nested angle brackets); "
        "OpenDMARC digs an address out of it",
    ),
    "dmarc-036": (
        None,
        "two addresses in two domains: 6.6.1 asks to check each one, which the caller "
        "does; OpenDMARC takes the first",
    ),
    "dmarc-037": (None, "as dmarc-036"),
}
POLICY_RFC: dict[str, tuple[tuple[str, str], str]] = {
    "dmarc-075": (
        ("fail", "reject"),
        "t=y is DMARCbis test mode (dmarc 1.2.1 with allow_policy_test_mode); RFC 7489 "
        "ignores the unknown tag, so p=reject applies",
    ),
}
# implementation_specific rows give the RFC result and disposition but not the
# alignment flags; the row notes say SPF aligns in relaxed mode (same
# organizational domain example.com) while adkim=s keeps d=example.com unaligned.
POLICY_RFC_ALIGNMENT: dict[str, tuple[bool, bool]] = {
    "dmarc-073": (True, False),
    "dmarc-074": (True, False),
}


def _all_vectors() -> list[dict[str, Any]]:
    return [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]


def vectors(kind: str) -> list[Any]:
    if not VECTORS.is_file():
        # A case of its own that fails, so the rest of the run still happens.
        return [pytest.param(None, id=f"missing-{VECTORS.name}")]
    return [
        pytest.param(vector, id=vector["id"]) for vector in _all_vectors() if vector["type"] == kind
    ]


def present(vector: dict[str, Any] | None) -> dict[str, Any]:
    if vector is None:
        pytest.fail(
            f"DMARC vectors missing: {VECTORS} (the shared/ directory must sit beside "
            "the checkout, as in CI)"
        )
    return vector


@pytest.fixture(scope="module")
def old_psl() -> PublicSuffixList:
    if not OLD_PSL.is_file():
        pytest.fail(f"public suffix list snapshot missing: {OLD_PSL}")
    with OLD_PSL.open(encoding="utf-8") as source:
        return PublicSuffixList(source)


def test_corpus_holds_the_documented_vectors() -> None:
    if not VECTORS.is_file():
        present(None)
    all_vectors = _all_vectors()
    counts = {kind: 0 for kind in TYPE_COUNTS}
    for vector in all_vectors:
        counts[vector["type"]] += 1
    assert counts == TYPE_COUNTS
    assert len({vector["id"] for vector in all_vectors}) == len(all_vectors)


def test_rfc_answers_name_real_disagreements() -> None:
    if not VECTORS.is_file():
        present(None)
    by_id = {vector["id"]: vector for vector in _all_vectors()}
    for vector_id, (answer, _) in PARSE_RFC.items():
        assert by_id[vector_id]["expected_ok"] is not answer, vector_id
    for vector_id, (answer, _) in ALIGNMENT_RFC.items():
        assert by_id[vector_id]["expected_aligned"] is not answer, vector_id
    for vector_id, (domain, _) in FROM_RFC.items():
        assert by_id[vector_id]["expected_domain"] != domain, vector_id
    for vector_id, (outcome, _) in POLICY_RFC.items():
        row = by_id[vector_id]
        assert (row["expected_result"], row["expected_disposition"]) != outcome, vector_id
    for vector_id in POLICY_RFC_ALIGNMENT:
        assert by_id[vector_id].get("implementation_specific") is True, vector_id


def _parses(record: str) -> DmarcRecord | None:
    try:
        return parse_record(record)
    except DmarcRecordError:
        return None


# expected_fields keys that RFC 7489 defines, with the DmarcRecord attribute;
# "t" is DMARCbis and not compared.
RECORD_FIELDS = {
    "p": "policy",
    "sp": "subdomain_policy",
    "adkim": "adkim",
    "aspf": "aspf",
    "pct": "pct",
    "ri": "ri",
    "rf": "rf",
    "rua": "rua",
    "ruf": "ruf",
    "fo": "fo",
}


@pytest.mark.parametrize("vector", vectors("record_parse"))
def test_record_parse(vector: dict[str, Any] | None) -> None:
    vector = present(vector)
    expected_ok = PARSE_RFC.get(vector["id"], (vector["expected_ok"], ""))[0]
    record = _parses(vector["record"])
    assert (record is not None) is expected_ok, record
    if record is not None:
        for name, value in vector.get("expected_fields", {}).items():
            if name in RECORD_FIELDS:
                got = getattr(record, RECORD_FIELDS[name])
                # dmarc 1.2.1 lower-cases report URIs; we keep them as published.
                got = [str(item).lower() for item in got] if isinstance(got, tuple) else got
                assert got == value, name


@pytest.mark.parametrize("vector", vectors("alignment"))
def test_alignment(vector: dict[str, Any] | None, old_psl: PublicSuffixList) -> None:
    vector = present(vector)
    expected = ALIGNMENT_RFC.get(vector["id"], (vector["expected_aligned"], ""))[0]
    mode = {"relaxed": "r", "strict": "s"}[vector["mode"]]
    assert aligned(vector["from_domain"], vector["auth_domain"], mode, old_psl) is expected


@pytest.mark.parametrize("vector", vectors("from_header_domain"))
def test_from_header_domain(vector: dict[str, Any] | None) -> None:
    vector = present(vector)
    expected = FROM_RFC.get(vector["id"], (vector["expected_domain"], ""))[0]
    assert from_domain(vector["header_value"]) == expected


@pytest.mark.parametrize("vector", vectors("organizational_domain"))
def test_organizational_domain(vector: dict[str, Any] | None, old_psl: PublicSuffixList) -> None:
    vector = present(vector)
    assert vector["psl"] == "opendmarc-testfiles/effective_tld_names.dat"
    assert organizational_domain(vector["domain"], old_psl) == vector["expected_org_domain"]


class OneRecordDns:
    """A `DnsLookup` with one TXT record at one name; every other name does not exist."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        if (name, rdtype) != (self.name, "TXT"):
            raise DnsNotFound(name, rdtype, "not in the fake zone")
        return [dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [self.text.encode()])]


def _identifier(found: dict[str, str] | None) -> AuthenticatedIdentifier | None:
    return AuthenticatedIdentifier(found["domain"], found["result"]) if found else None


@pytest.mark.parametrize("vector", vectors("policy_evaluation"))
def test_policy_evaluation(vector: dict[str, Any] | None, old_psl: PublicSuffixList) -> None:
    vector = present(vector)
    vector_id = vector["id"]
    record_at = vector["org_domain"] or vector["from_domain"]
    dkim = _identifier(vector["dkim"])
    verdict = evaluate(
        OneRecordDns(f"_dmarc.{record_at}", vector["record"]),
        vector["from_domain"],
        _identifier(vector["spf"]),
        [dkim] if dkim else [],
        psl=old_psl,
        sample=lambda: 0.0,  # every vector has pct=100: sampling never decides
    )
    if vector.get("implementation_specific"):
        outcome = (vector["rfc7489_expected_result"], vector["rfc7489_expected_disposition"])
        alignment = POLICY_RFC_ALIGNMENT[vector_id]
    else:
        outcome = (vector["expected_result"], vector["expected_disposition"])
        outcome = POLICY_RFC.get(vector_id, (outcome, ""))[0]
        alignment = (vector["expected_spf_aligned"], vector["expected_dkim_aligned"])
    assert (verdict.result, verdict.disposition) == outcome, verdict
    assert (verdict.spf_aligned, verdict.dkim_aligned) == alignment, verdict
    assert verdict.policy_domain == record_at
