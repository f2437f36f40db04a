"""`verify_dkim` and `verify_arc` over a fake DNS: every result their docstrings name.

Messages are signed with our own signer (`postroom.mta.signing.dkim`) or, for
rsa-sha1 and ARC sets, with dkimpy; keys are published in a dict-backed
`DnsLookup`. DKIM: pass (RSA and Ed25519), body or header changed, no key,
DNS trouble, a malformed key record, rsa-sha1, signatures past the limit, and
garbage signatures that must come out as permerror, never as an exception.
ARC: none, a valid one- and two-hop chain, a changed body, DNS trouble on the
seal key, too many sets.
"""

from __future__ import annotations

import base64

import dkim
import dkim.util
import pytest
from tests.fakes.dkim_signers import NOW, FakeDns, Signer, published

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mailbox.dkim_keys import KeyAlgorithm
from postroom.mta.checks.arc import MAX_INSTANCES, ArcResult, verify_arc
from postroom.mta.checks.dkim import MAX_SIGNATURES, DkimResult, DkimVerdict, verify_dkim
from postroom.mta.signing.dkim import parse_message

DOMAIN = "author.test"
FORWARDER = "forwarder.test"

MESSAGE = (
    b"From: Alice <alice@author.test>\r\n"
    b"To: bob@appliance.test\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"Message-ID: <1@author.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the numbers are in.\r\n"
)


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return Signer(KeyAlgorithm.RSA, DOMAIN, "rsa1")


@pytest.fixture(scope="module")
def ed_signer() -> Signer:
    return Signer(KeyAlgorithm.ED25519, DOMAIN, "ed1")


@pytest.fixture(scope="module")
def sealer() -> Signer:
    return Signer(KeyAlgorithm.RSA, FORWARDER, "arc1")


def b_tag(signed: bytes, index: int = 0) -> str:
    headers, _ = parse_message(signed)
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    tag = dkim.util.parse_tag_value(values[index])[b"b"]
    return b"".join(tag.split()).decode("ascii")


# -- DKIM: pass and fail ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signer_name", "algorithm"),
    [("rsa_signer", "rsa-sha256"), ("ed_signer", "ed25519-sha256")],
)
def test_a_valid_signature_passes(
    signer_name: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    signer: Signer = request.getfixturevalue(signer_name)
    signed = signer.sign(MESSAGE)
    lookup = published(signer)
    assert verify_dkim(lookup, signed) == [
        DkimVerdict(
            DkimResult.PASS,
            DOMAIN,
            signer.key.selector,
            algorithm,
            b_tag(signed)[:8],
            "signature verified",
        )
    ]
    assert lookup.asked == [(signer.name, "TXT")]


def test_header_b_is_the_first_eight_characters_of_b(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE)
    (verdict,) = verify_dkim(published(rsa_signer), signed)
    full = b_tag(signed)
    assert len(full) > 100
    assert verdict.header_b == full[:8]
    base64.b64decode(full, validate=True)  # the prefix of a real b= value


def test_two_signatures_are_reported_top_to_bottom(rsa_signer: Signer, ed_signer: Signer) -> None:
    signed = ed_signer.sign(rsa_signer.sign(MESSAGE))  # the Ed25519 one ends on top
    verdicts = verify_dkim(published(rsa_signer, ed_signer), signed)
    assert [(v.result, v.selector) for v in verdicts] == [
        (DkimResult.PASS, "ed1"),
        (DkimResult.PASS, "rsa1"),
    ]


def test_a_changed_body_fails_with_body_hash_mismatch(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE).replace(b"numbers are in", b"numbers are out")
    (verdict,) = verify_dkim(published(rsa_signer), signed)
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "body hash mismatch")
    assert verdict.domain == DOMAIN


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"Subject: Quarterly report", b"Subject: Quarterly refund"),
        (b"From: Alice <alice@author.test>", b"From: Alice <alice@evil.test>"),
        (b"Message-ID: <1@author.test>", b"Message-ID: <2@author.test>"),
    ],
)
def test_a_changed_signed_header_fails(rsa_signer: Signer, before: bytes, after: bytes) -> None:
    signed = rsa_signer.sign(MESSAGE).replace(before, after)
    (verdict,) = verify_dkim(published(rsa_signer), signed)
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "signature did not verify")


def test_a_second_from_breaks_the_oversigned_signature(ed_signer: Signer) -> None:
    signed = ed_signer.sign(MESSAGE)
    forged = signed.replace(b"\r\n\r\n", b"\r\nFrom: ceo@author.test\r\n\r\n", 1)
    (verdict,) = verify_dkim(published(ed_signer), forged)
    assert verdict.result is DkimResult.FAIL


def test_an_unsigned_header_may_change(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE)
    (verdict,) = verify_dkim(published(rsa_signer), b"X-Added: later\r\n" + signed)
    assert verdict.result is DkimResult.PASS


def test_no_signature_is_no_verdict() -> None:
    lookup = FakeDns({})
    assert verify_dkim(lookup, MESSAGE) == []
    assert lookup.asked == []


# -- DKIM: keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    [DnsNotFound("x", "TXT", "NXDOMAIN"), DnsNoData("x", "TXT", "no TXT")],
)
def test_no_key_record_is_permerror(rsa_signer: Signer, missing: Exception) -> None:
    signed = rsa_signer.sign(MESSAGE)
    (verdict,) = verify_dkim(FakeDns({rsa_signer.name: missing}), signed)
    assert (verdict.result, verdict.reason) == (DkimResult.PERMERROR, "no key for signature")
    assert (verdict.domain, verdict.selector) == (DOMAIN, "rsa1")


def test_dns_trouble_on_the_key_is_temperror(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE)
    lookup = FakeDns({rsa_signer.name: DnsTemporaryError(rsa_signer.name, "TXT", "SERVFAIL")})
    (verdict,) = verify_dkim(lookup, signed)
    assert verdict.result is DkimResult.TEMPERROR
    assert verdict.reason == "key lookup failed: SERVFAIL"


def test_dns_trouble_of_one_signature_does_not_spill_onto_the_next(
    rsa_signer: Signer, ed_signer: Signer
) -> None:
    signed = ed_signer.sign(rsa_signer.sign(MESSAGE))
    lookup = FakeDns(
        {
            ed_signer.name: DnsTemporaryError(ed_signer.name, "TXT", "timed out"),
            rsa_signer.name: rsa_signer.record,
        }
    )
    assert [v.result for v in verify_dkim(lookup, signed)] == [
        DkimResult.TEMPERROR,
        DkimResult.PASS,
    ]


@pytest.mark.parametrize(
    "record",
    [
        "v=DKIM1; k=rsa; p=!!!not-base64!!!",
        "v=DKIM1; k=rsa; p=QUJDREVGRw==",  # base64, but no key
        "v=DKIM1; k=rsa; p=",  # revoked (RFC 6376 3.6.1)
        "this is not a key record",
        "v=DKIM1; k=rsa; h=sha1; p=MIIB",
        "",
    ],
)
def test_a_malformed_key_record_is_permerror(rsa_signer: Signer, record: str) -> None:
    signed = rsa_signer.sign(MESSAGE)
    (verdict,) = verify_dkim(FakeDns({rsa_signer.name: record}), signed)
    assert verdict.result is DkimResult.PERMERROR
    assert verdict.domain == DOMAIN


def test_a_key_of_the_wrong_type_does_not_pass(rsa_signer: Signer, ed_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE)
    (verdict,) = verify_dkim(FakeDns({rsa_signer.name: ed_signer.record}), signed)
    assert verdict.result in (DkimResult.PERMERROR, DkimResult.FAIL)


# -- DKIM: historic algorithms, limits, garbage ---------------------------------------------------


def test_rsa_sha1_is_permerror_without_a_key_lookup(rsa_signer: Signer) -> None:
    signature = dkim.sign(
        MESSAGE, b"rsa1", DOMAIN.encode(), rsa_signer.pkcs1_pem, signature_algorithm=b"rsa-sha1"
    )
    assert b"a=rsa-sha1" in signature
    lookup = published(rsa_signer)
    (verdict,) = verify_dkim(lookup, signature + MESSAGE)
    assert verdict.result is DkimResult.PERMERROR
    assert verdict.reason == "rsa-sha1 is historic (RFC 8301)"
    assert (verdict.domain, verdict.selector, verdict.algorithm) == (DOMAIN, "rsa1", "rsa-sha1")
    assert lookup.asked == []


def test_the_same_key_with_rsa_sha256_through_dkimpy_passes(rsa_signer: Signer) -> None:
    # The control for the test above: the key and dkimpy's signing are fine.
    signature = dkim.sign(MESSAGE, b"rsa1", DOMAIN.encode(), rsa_signer.pkcs1_pem)
    (verdict,) = verify_dkim(published(rsa_signer), signature + MESSAGE)
    assert verdict.result is DkimResult.PASS


def test_signatures_past_the_limit_are_policy_and_never_looked_up(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE, copies=MAX_SIGNATURES + 2)
    lookup = published(rsa_signer)
    verdicts = verify_dkim(lookup, signed)
    assert len(verdicts) == MAX_SIGNATURES + 2
    assert [v.result for v in verdicts[:MAX_SIGNATURES]] == [DkimResult.PASS] * MAX_SIGNATURES
    for extra in verdicts[MAX_SIGNATURES:]:
        assert extra.result is DkimResult.POLICY
        assert extra.reason == "too many signatures, not checked"
        assert (extra.domain, extra.selector) == (DOMAIN, "rsa1")
    assert len(lookup.asked) == MAX_SIGNATURES


GARBAGE = [
    b"garbage",
    b"",
    b";;;",
    b"=;=;=",
    b"v=1",
    b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=###; b=!!!",
    b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAA",
    b"v=2; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-md5; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA; x=notanumber",
    b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA; l=-5",
    b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA; i=@other.test",
    b"v=1; a=rsa-sha256; c=weird/odd; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA",
    b"v=1; v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA",
    "v=1; a=rsa-sha256; d=autho\u0301r.test; s=rsa1; h=from; bh=AAAA; b=AAAA".encode(),
    b"v=1; a=rsa-sha256; d=author.test; s=\xff\xfe; h=from; bh=AAAA; b=AAAA",
]


@pytest.mark.parametrize("value", GARBAGE, ids=range(len(GARBAGE)))
def test_a_garbage_signature_is_permerror_never_an_exception(
    rsa_signer: Signer, value: bytes
) -> None:
    verdicts = verify_dkim(published(rsa_signer), b"DKIM-Signature: " + value + b"\r\n" + MESSAGE)
    assert len(verdicts) == 1
    assert verdicts[0].result is DkimResult.PERMERROR, verdicts[0]
    assert verdicts[0].reason and "\n" not in verdicts[0].reason


def test_a_garbage_signature_beside_a_good_one_does_not_hide_it(rsa_signer: Signer) -> None:
    signed = rsa_signer.sign(MESSAGE)
    verdicts = verify_dkim(published(rsa_signer), b"DKIM-Signature: garbage\r\n" + signed)
    assert [v.result for v in verdicts] == [DkimResult.PERMERROR, DkimResult.PASS]


def test_a_bogus_but_well_formed_signature_fails(rsa_signer: Signer) -> None:
    value = b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=author.test; s=rsa1; h=from; bh=AAAA; b=AAAA"
    (verdict,) = verify_dkim(published(rsa_signer), b"DKIM-Signature: " + value + b"\r\n" + MESSAGE)
    assert verdict.result is DkimResult.FAIL
    assert verdict.header_b == "AAAA"


def test_header_b_is_empty_when_b_is_not_base64(rsa_signer: Signer) -> None:
    value = b"v=1; a=rsa-sha256; d=author.test; s=rsa1; h=from; bh=AAAA; b=!!!notbase64!!!"
    (verdict,) = verify_dkim(published(rsa_signer), b"DKIM-Signature: " + value + b"\r\n" + MESSAGE)
    assert verdict.header_b == ""
    assert (verdict.domain, verdict.selector, verdict.algorithm) == (
        DOMAIN,
        "rsa1",
        "rsa-sha256",
    )


def test_tag_values_are_reported_without_folding_whitespace(rsa_signer: Signer) -> None:
    value = (
        b"v=1; a=rsa-\r\n sha256; d=author\r\n\t.test; s=rsa 1; h=from; bh=AAAA; b=AB\r\n CD EF\tGH"
    )
    (verdict,) = verify_dkim(published(rsa_signer), b"DKIM-Signature: " + value + b"\r\n" + MESSAGE)
    assert (verdict.domain, verdict.selector, verdict.algorithm, verdict.header_b) == (
        DOMAIN,
        "rsa1",
        "rsa-sha256",
        "ABCDEFGH",
    )


@pytest.mark.parametrize(
    "header_section",
    [
        b"DKIM-Signature v=1; d=author.test\r\n",
        b"DKIM-Signature: v=1; d=author.test\r\nno colon on this line\r\n",
    ],
)
def test_an_unparsable_header_section_with_a_signature_is_one_permerror(
    header_section: bytes,
) -> None:
    lookup = FakeDns({})
    verdicts = verify_dkim(lookup, header_section + MESSAGE)
    assert [(v.result, v.domain, v.header_b) for v in verdicts] == [(DkimResult.PERMERROR, "", "")]
    assert lookup.asked == []


def test_an_unparsable_header_section_without_a_signature_is_no_verdict() -> None:
    assert verify_dkim(FakeDns({}), b"no colon on this line\r\n" + MESSAGE) == []


# -- ARC ----------------------------------------------------------------------------------------


def authenticated(message: bytes, authserv_id: str, results: str) -> bytes:
    return f"Authentication-Results: {authserv_id}; {results}\r\n".encode() + message


def seal(
    message: bytes, signer: Signer, *, cv: str = "none", authserv_id: str = FORWARDER
) -> bytes:
    """One ARC hop: `signer`'s A-R stating `cv`, then its ARC set on top."""
    stamped = authenticated(message, authserv_id, f"dkim=pass header.d={DOMAIN}; arc={cv}")
    arc_set = dkim.arc_sign(
        stamped,
        signer.key.selector.encode(),
        signer.key.domain.encode(),
        signer.pkcs1_pem,
        authserv_id.encode(),
        timestamp=NOW,
    )
    assert len(arc_set) == 3
    return b"".join(arc_set) + stamped


def test_no_arc_headers_is_none_without_dns() -> None:
    lookup = FakeDns({})
    verdict = verify_arc(lookup, MESSAGE)
    assert (verdict.result, verdict.instances, verdict.sealer) == (ArcResult.NONE, 0, "")
    assert lookup.asked == []


def test_a_chain_made_by_dkimpy_passes(rsa_signer: Signer, sealer: Signer) -> None:
    sealed = seal(rsa_signer.sign(MESSAGE), sealer)
    lookup = published(sealer)
    verdict = verify_arc(lookup, sealed)
    assert (verdict.result, verdict.instances, verdict.sealer) == (ArcResult.PASS, 1, FORWARDER)
    assert {name for name, _ in lookup.asked} == {sealer.name}


def test_a_two_hop_chain_passes_and_names_the_newest_sealer(sealer: Signer) -> None:
    second = Signer(KeyAlgorithm.RSA, "list.test", "arc2")
    sealed = seal(seal(MESSAGE, sealer), second, cv="pass", authserv_id="list.test")
    verdict = verify_arc(published(sealer, second), sealed)
    assert (verdict.result, verdict.instances, verdict.sealer) == (ArcResult.PASS, 2, "list.test")


def test_a_changed_body_fails_the_chain(sealer: Signer) -> None:
    sealed = seal(MESSAGE, sealer).replace(b"numbers are in", b"numbers are out")
    verdict = verify_arc(published(sealer), sealed)
    assert verdict.result is ArcResult.FAIL
    assert verdict.instances == 1
    assert verdict.reason


def test_a_changed_seal_fails_the_chain(sealer: Signer) -> None:
    sealed = seal(MESSAGE, sealer).replace(b"ARC-Seal: i=1; cv=none", b"ARC-Seal: i=1; cv=pass", 1)
    assert verify_arc(published(sealer), sealed).result is ArcResult.FAIL


def test_dns_trouble_on_the_seal_key_is_temperror(sealer: Signer) -> None:
    sealed = seal(MESSAGE, sealer)
    lookup = FakeDns({sealer.name: DnsTemporaryError(sealer.name, "TXT", "SERVFAIL")})
    verdict = verify_arc(lookup, sealed)
    assert verdict.result is ArcResult.TEMPERROR
    assert verdict.reason.startswith("key lookup failed")


def test_a_missing_seal_key_is_fail_not_temperror(sealer: Signer) -> None:
    verdict = verify_arc(FakeDns({}), seal(MESSAGE, sealer))
    assert verdict.result is ArcResult.FAIL


def test_more_than_max_instances_fails_without_dns(sealer: Signer) -> None:
    sets = b"".join(
        b"ARC-Seal: i=%d; cv=%s; a=rsa-sha256; d=forwarder.test; s=arc1; t=1; b=AAAA\r\n"
        % (instance, b"none" if instance == 1 else b"pass")
        for instance in range(MAX_INSTANCES + 1, 0, -1)
    )
    lookup = published(sealer)
    verdict = verify_arc(lookup, sets + MESSAGE)
    assert (verdict.result, verdict.instances) == (ArcResult.FAIL, MAX_INSTANCES + 1)
    assert verdict.reason == f"more than {MAX_INSTANCES} ARC sets"
    assert lookup.asked == []


def test_a_high_instance_number_alone_counts_as_too_many() -> None:
    seal_field = b"ARC-Seal: i=999; cv=none; a=rsa-sha256; d=x.test; s=s; t=1; b=AAAA\r\n"
    verdict = verify_arc(FakeDns({}), seal_field + MESSAGE)
    assert (verdict.result, verdict.instances) == (ArcResult.FAIL, 999)


@pytest.mark.parametrize(
    "fields",
    [
        b"ARC-Seal: i=1; cv=none; b=!!!\r\n",
        b"ARC-Message-Signature: i=1; a=rsa-sha256; b=AAAA\r\n",
        b"ARC-Authentication-Results: i=1; x.test; dkim=pass\r\n",
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; t=1; b=AAAA\r\n"
        b"ARC-Message-Signature: i=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AAAA; b=AAAA\r\n"
        b"ARC-Authentication-Results: i=1; x.test; dkim=pass\r\n",
    ],
)
def test_broken_arc_sets_fail_never_raise(fields: bytes) -> None:
    verdict = verify_arc(FakeDns({}), fields + MESSAGE)
    assert verdict.result is ArcResult.FAIL


def test_an_unparsable_header_section_fails_arc() -> None:
    verdict = verify_arc(FakeDns({}), b"ARC-Seal i=1\r\n" + MESSAGE)
    assert verdict.result is ArcResult.FAIL
