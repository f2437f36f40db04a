"""DKIM keys: generation, record text and parsing, selectors, secret file, rotation plans."""

from __future__ import annotations

import base64
import datetime
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postroom.mailbox.dkim_keys import (
    DkimRecordError,
    GeneratedKey,
    KeyAlgorithm,
    KeyState,
    KeyView,
    Transition,
    dkim_txt_value,
    generate_key,
    next_selector,
    parse_dkim_record,
    plan_transitions,
    public_key_matches,
)

DAY = datetime.date(2025, 3, 14)
GRACE_S = 7 * 86400.0


@pytest.fixture(scope="module")
def rsa_key() -> GeneratedKey:
    return generate_key(KeyAlgorithm.RSA)


@pytest.fixture(scope="module")
def ed_key() -> GeneratedKey:
    return generate_key(KeyAlgorithm.ED25519)


# --- generation ---------------------------------------------------------------------------


def test_rsa_key_pem_and_public_value_belong_together(rsa_key: GeneratedKey) -> None:
    assert rsa_key.algorithm is KeyAlgorithm.RSA
    assert rsa_key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    private = serialization.load_pem_private_key(rsa_key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    public = serialization.load_der_public_key(base64.b64decode(rsa_key.public_b64))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_ed25519_public_value_is_the_raw_32_byte_key(ed_key: GeneratedKey) -> None:
    assert ed_key.algorithm is KeyAlgorithm.ED25519
    private = serialization.load_pem_private_key(ed_key.private_pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    raw = base64.b64decode(ed_key.public_b64)
    assert len(raw) == 32
    expected = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw == expected


def test_generated_keys_differ_and_repr_hides_private_key(ed_key: GeneratedKey) -> None:
    assert generate_key(KeyAlgorithm.ED25519).public_b64 != ed_key.public_b64
    assert "PRIVATE" not in repr(ed_key)


def test_short_rsa_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1024 bits, not 512"):
        generate_key(KeyAlgorithm.RSA, rsa_bits=512)


# --- TXT values and parsing ---------------------------------------------------------------


def test_txt_values() -> None:
    assert dkim_txt_value(KeyAlgorithm.RSA, "QUJD") == "v=DKIM1; k=rsa; p=QUJD"
    assert dkim_txt_value(KeyAlgorithm.ED25519, "QUJD") == "v=DKIM1; k=ed25519; p=QUJD"


def test_txt_value_parses_back(rsa_key: GeneratedKey) -> None:
    tags = parse_dkim_record(dkim_txt_value(rsa_key.algorithm, rsa_key.public_b64))
    assert tags == {"v": "DKIM1", "k": "rsa", "p": rsa_key.public_b64}


def test_parse_removes_folding_in_p_and_keeps_unknown_tags() -> None:
    text = "v=DKIM1 ;\th=sha256; k=ed25519 ; x_new = some value ;p=QUJD\r\n RUZH ;"
    assert parse_dkim_record(text) == {
        "v": "DKIM1",
        "h": "sha256",
        "k": "ed25519",
        "x_new": "some value",
        "p": "QUJDRUZH",
    }


def test_parse_without_v_and_k() -> None:
    assert parse_dkim_record("p=QUJD") == {"p": "QUJD"}


def test_empty_p_is_returned_as_revoked() -> None:
    assert parse_dkim_record("v=DKIM1; p=") == {"v": "DKIM1", "p": ""}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty DKIM record"),
        ("v=DKIM1; k=rsa p=QUJD", "unknown key type k='rsa p=QUJD'"),
        ("v=DKIM1; t=y\x00; p=QUJD", "tag t= has a character outside printable ASCII"),
        ("v=DKIM1; k=rsa; pQUJD", "tag 3 'pQUJD' has no '='"),
        ("v=DKIM1;; p=QUJD", "tag 2 '' has no '='"),
        ("v=DKIM1; 1k=rsa; p=QUJD", "tag 2 has an invalid name '1k'"),
        ("v=DKIM1; p=QUJD; p=RUZH", "duplicate tag p="),
        ("k=rsa; v=DKIM1; p=QUJD", "v= must be the first tag, found as tag 2"),
        ("v=DKIM2; p=QUJD", "v='DKIM2' is not DKIM1"),
        ("v=DKIM1; k=dsa; p=QUJD", r"unknown key type k='dsa' \(expected rsa or ed25519\)"),
        ("v=DKIM1; k=rsa", "missing p= tag"),
        ("v=DKIM1; p=QUJD!", "p= is not base64: 'QUJD!'"),
        ("v=DKIM1; p=QUJ", "p= is not base64: 'QUJ'"),
        ("v=DKIM1; p=QU=D", "p= is not base64"),
        ("v=DKIM1; n=caf\u00e9; p=QUJD", "tag n= has a character outside printable ASCII"),
    ],
)
def test_malformed_records(text: str, message: str) -> None:
    with pytest.raises(DkimRecordError, match=message):
        parse_dkim_record(text)


def test_error_message_shortens_long_values() -> None:
    with pytest.raises(DkimRecordError) as raised:
        parse_dkim_record("v=DKIM1; p=" + "!" * 500)
    assert len(str(raised.value)) < 80


# --- matching -----------------------------------------------------------------------------


def test_matching_compares_key_bytes(rsa_key: GeneratedKey) -> None:
    folded = " ".join(re.findall(".{1,60}", rsa_key.public_b64))
    record = f"v=DKIM1; k=rsa;\r\n p={folded}"
    assert public_key_matches(record, KeyAlgorithm.RSA, rsa_key.public_b64)


def test_matching_rsa_is_the_default_key_type(rsa_key: GeneratedKey) -> None:
    assert public_key_matches(f"p={rsa_key.public_b64}", KeyAlgorithm.RSA, rsa_key.public_b64)


def test_other_key_does_not_match(ed_key: GeneratedKey) -> None:
    other = generate_key(KeyAlgorithm.ED25519)
    record = dkim_txt_value(KeyAlgorithm.ED25519, other.public_b64)
    assert not public_key_matches(record, KeyAlgorithm.ED25519, ed_key.public_b64)


def test_other_algorithm_does_not_match(ed_key: GeneratedKey) -> None:
    record = f"v=DKIM1; p={ed_key.public_b64}"  # no k= means rsa
    assert not public_key_matches(record, KeyAlgorithm.ED25519, ed_key.public_b64)


def test_revoked_record_does_not_match(ed_key: GeneratedKey) -> None:
    assert not public_key_matches("v=DKIM1; k=ed25519; p=", KeyAlgorithm.ED25519, ed_key.public_b64)


def test_malformed_record_raises_for_matching(ed_key: GeneratedKey) -> None:
    record = f"k=ed25519; v=DKIM1; p={ed_key.public_b64}"
    with pytest.raises(DkimRecordError, match="v= must be the first tag"):
        public_key_matches(record, KeyAlgorithm.ED25519, ed_key.public_b64)


# --- selectors ----------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def test_first_selectors_are_dated_per_algorithm() -> None:
    assert next_selector([], KeyAlgorithm.RSA, DAY) == "pr20250314-rsa"
    assert next_selector([], KeyAlgorithm.ED25519, DAY) == "pr20250314-ed"


def test_selectors_are_sequenced_on_collision() -> None:
    existing = ["pr20250314-rsa"]
    second = next_selector(existing, KeyAlgorithm.RSA, DAY)
    assert second == "pr20250314-rsa-2"
    third = next_selector([*existing, second], KeyAlgorithm.RSA, DAY)
    assert third == "pr20250314-rsa-3"
    assert _LABEL.fullmatch(third)


def test_selectors_are_never_reused_case_insensitively() -> None:
    # Retired selectors are part of `existing`; a mixed-case leftover still counts.
    retired = ["PR20250314-ED", "pr20250314-ed-2", "pr20250314-ed-4"]
    assert next_selector(retired, KeyAlgorithm.ED25519, DAY) == "pr20250314-ed-3"


def test_selectors_of_the_other_algorithm_or_day_do_not_collide() -> None:
    existing = ["pr20250314-rsa", "pr20250313-ed"]
    assert next_selector(existing, KeyAlgorithm.ED25519, DAY) == "pr20250314-ed"


def test_many_selectors_stay_valid_dns_labels() -> None:
    existing: list[str] = []
    for _ in range(120):
        existing.append(next_selector(existing, KeyAlgorithm.RSA, DAY))
    assert len(set(existing)) == 120
    assert all(_LABEL.fullmatch(selector) for selector in existing)


# --- rotation -----------------------------------------------------------------------------

NOW = 1_000_000.0


def key(
    selector: str,
    state: KeyState,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
    created_at: float = NOW - 1000,
    state_since: float | None = None,
) -> KeyView:
    since = created_at if state_since is None else state_since
    return KeyView(selector, algorithm, state, created_at, since)


def moves(plan: list[Transition]) -> list[tuple[str, KeyState, KeyState]]:
    return [(step.selector, step.from_state, step.to_state) for step in plan]


def test_unpublished_pending_key_stays_pending() -> None:
    keys = [key("old", KeyState.ACTIVE, created_at=0), key("new", KeyState.PENDING)]
    assert plan_transitions(keys, {"new": False}, NOW, GRACE_S) == []
    assert plan_transitions(keys, {}, NOW, GRACE_S) == []


def test_published_pending_key_activates_and_old_one_retires_first() -> None:
    keys = [key("old", KeyState.ACTIVE, created_at=0), key("new", KeyState.PENDING)]
    plan = plan_transitions(keys, {"new": True, "old": True}, NOW, GRACE_S)
    assert moves(plan) == [
        ("old", KeyState.ACTIVE, KeyState.RETIRING),
        ("new", KeyState.PENDING, KeyState.ACTIVE),
    ]
    assert plan[0].reason == "replaced by new"
    assert plan[1].reason == "record published in DNS"


def test_retiring_key_retires_once_grace_has_passed() -> None:
    keys = [key("old", KeyState.RETIRING, created_at=0, state_since=NOW - GRACE_S)]
    assert moves(plan_transitions(keys, {}, NOW, GRACE_S)) == [
        ("old", KeyState.RETIRING, KeyState.RETIRED)
    ]
    assert plan_transitions(keys, {}, NOW - 1, GRACE_S) == []


def test_retired_and_active_keys_alone_need_nothing() -> None:
    keys = [key("a", KeyState.ACTIVE), key("b", KeyState.RETIRED, created_at=0)]
    assert plan_transitions(keys, {"a": False, "b": False}, NOW, GRACE_S) == []


def test_algorithms_rotate_independently() -> None:
    ed = KeyAlgorithm.ED25519
    keys = [
        key("rsa-old", KeyState.ACTIVE, created_at=0),
        key("rsa-new", KeyState.PENDING),
        key("ed-old", KeyState.ACTIVE, algorithm=ed, created_at=0),
        key("ed-new", KeyState.PENDING, algorithm=ed),
    ]
    plan = plan_transitions(keys, {"rsa-new": True, "ed-new": False}, NOW, GRACE_S)
    assert moves(plan) == [
        ("rsa-old", KeyState.ACTIVE, KeyState.RETIRING),
        ("rsa-new", KeyState.PENDING, KeyState.ACTIVE),
    ]


def test_newest_published_pending_key_wins_and_older_pending_ones_retire() -> None:
    keys = [
        key("active", KeyState.ACTIVE, created_at=0),
        key("first", KeyState.PENDING, created_at=10),
        key("second", KeyState.PENDING, created_at=20),
        key("later", KeyState.PENDING, created_at=30),
    ]
    plan = plan_transitions(keys, {"first": True, "second": True}, NOW, GRACE_S)
    assert moves(plan) == [
        ("active", KeyState.ACTIVE, KeyState.RETIRING),
        ("first", KeyState.PENDING, KeyState.RETIRED),
        ("second", KeyState.PENDING, KeyState.ACTIVE),
    ]
    assert _active_after(keys, plan) == {KeyAlgorithm.RSA: ["second"]}


def test_surplus_active_keys_are_demoted_keeping_the_newest() -> None:
    keys = [key("a", KeyState.ACTIVE, created_at=1), key("b", KeyState.ACTIVE, created_at=2)]
    plan = plan_transitions(keys, {}, NOW, GRACE_S)
    assert moves(plan) == [("a", KeyState.ACTIVE, KeyState.RETIRING)]
    assert _active_after(keys, plan) == {KeyAlgorithm.RSA: ["b"]}


def test_duplicate_selectors_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate selectors"):
        plan_transitions([key("a", KeyState.ACTIVE), key("a", KeyState.PENDING)], {}, NOW, 0)


def _active_after(keys: list[KeyView], plan: list[Transition]) -> dict[KeyAlgorithm, list[str]]:
    state = {view.selector: view.state for view in keys}
    for step in plan:
        assert state[step.selector] is step.from_state
        state[step.selector] = step.to_state
    result: dict[KeyAlgorithm, list[str]] = {}
    for view in keys:
        if state[view.selector] is KeyState.ACTIVE:
            result.setdefault(view.algorithm, []).append(view.selector)
    return result
