"""DKIM keys: generation, DNS record text, selectors, encryption at rest, rotation rules.

Pure logic and key cryptography; no database and no DNS I/O (callers fetch TXT records and
store rows). Inputs and outputs:

* `generate_key` makes an RSA (RFC 8301: at least 1024 bits, 2048 by default) or Ed25519
  (RFC 8463) key pair: the private key as unencrypted PKCS#8 PEM, the public key as the DKIM
  ``p=`` value (RSA: base64 of the DER SubjectPublicKeyInfo; Ed25519: base64 of the raw 32-byte
  key). `dkim_txt_value` renders the TXT value published at ``<selector>._domainkey.<domain>``.
* `parse_dkim_record` parses a key record (RFC 6376 3.2 tag-list, 3.6.1 tags) and
  `public_key_matches` tells whether DNS publishes a given public key. **Untrusted input:** the
  record text comes from DNS; it is only matched against strict grammars and base64-decoded,
  and error messages quote it with `repr`, shortened.
* `next_selector` names a new key: ``pr<YYYYMMDD>-rsa`` / ``pr<YYYYMMDD>-ed``, then ``-2``,
  ``-3``... so a selector is never reused, not even a retired one (a verifier holding an old
  signature must never find a different key under its selector).
* `plan_transitions` is the rotation state machine as a pure function (see `KeyState`).

Private keys at rest: they are stored in the database, encrypted with Fernet (AES-128-CBC +
HMAC-SHA256, from `cryptography`) under a key derived with HKDF-SHA256
(info=b"postroom dkim keys") from the appliance's secret key file (config ``[secrets]
key_file``, default ``<state.dir>/secret.key``): 32 random bytes, base64 text on one line,
mode 0600. Why: several nodes share one PostgreSQL database and must all sign with the same
keys, so the keys live in the database; encrypting them under a file that is not in the
database means a dump or backup alone does not reveal them. Every node needs a copy of the
same secret file; a node with a different one gets "wrong secret key" on decryption.
The secret file and the encryption are `postroom.core.secretbox.SecretBox`.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

MIN_RSA_BITS = 1024  # RFC 8301 3.2: signers MUST use at least 1024 bits.

_FWS = " \t\r\n"
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# RFC 6376 3.2 tag-value: runs of VALCHAR (printable ASCII except ";") separated by whitespace.
_TAG_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+(?:[ \t\r\n]+[\x21-\x3a\x3c-\x7e]+)*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FOLDING = re.compile(r"[ \t\r\n]+")


class KeyAlgorithm(StrEnum):
    """DKIM key type, spelled as in the record's ``k=`` tag."""

    RSA = "rsa"
    ED25519 = "ed25519"


class KeyState(StrEnum):
    """Life of a DKIM key; selectors of every state, retired included, are never reused."""

    PENDING = "pending"
    """Created; its record is not yet seen in DNS. Never signs."""
    ACTIVE = "active"
    """Signs. At most one per domain and algorithm."""
    RETIRING = "retiring"
    """Replaced; still published so mail in flight verifies. No longer signs."""
    RETIRED = "retired"
    """Its record can be removed from DNS. Never signs again."""


class DkimRecordError(ValueError):
    """A DKIM key record that does not follow RFC 6376; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A new key pair: unencrypted PKCS#8 PEM private key and the DKIM ``p=`` value."""

    algorithm: KeyAlgorithm
    private_pem: bytes
    public_b64: str

    def __repr__(self) -> str:
        # Keep the private key out of logs and tracebacks.
        return f"GeneratedKey(algorithm={self.algorithm!r}, public_b64={self.public_b64!r})"


def generate_key(algorithm: KeyAlgorithm, rsa_bits: int = 2048) -> GeneratedKey:
    """Generate a key pair; `rsa_bits` applies to RSA only and must be at least 1024."""
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm is KeyAlgorithm.RSA:
        if rsa_bits < MIN_RSA_BITS:
            raise ValueError(f"RSA DKIM keys need at least {MIN_RSA_BITS} bits, not {rsa_bits}")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        private_key = ed25519.Ed25519PrivateKey.generate()
        # RFC 8463 3: the p= value of an Ed25519 key is the bare 32-byte key, not an SPKI.
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return GeneratedKey(algorithm, private_pem, base64.b64encode(public_der).decode("ascii"))


def dkim_txt_value(algorithm: KeyAlgorithm, public_b64: str) -> str:
    """The TXT value to publish for a key, e.g. ``v=DKIM1; k=rsa; p=MIIB...``."""
    return f"v=DKIM1; k={algorithm.value}; p={public_b64}"


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_dkim_record(text: str) -> dict[str, str]:
    """Parse a DKIM key record into its tags, in record order.

    Values are stripped of surrounding whitespace; ``p=`` also loses the folding whitespace
    inside it. Defaults are not filled in (a missing ``k=`` means rsa). Unknown tags are kept
    (RFC 6376 3.2: they are ignored, not errors). An empty ``p=`` is a revoked key and is
    returned as such. Raises `DkimRecordError` for a malformed record.
    """
    if not text.strip(_FWS):
        raise DkimRecordError("empty DKIM record")
    specs = text.split(";")
    if len(specs) > 1 and not specs[-1].strip(_FWS):
        specs.pop()  # the tag-list may end with ";"
    tags: dict[str, str] = {}
    for position, spec in enumerate(specs, start=1):
        raw_name, equals, raw_value = spec.partition("=")
        name, value = raw_name.strip(_FWS), raw_value.strip(_FWS)
        if not equals:
            raise DkimRecordError(f"tag {position} {_shown(spec.strip(_FWS))} has no '='")
        if not _TAG_NAME.fullmatch(name):
            raise DkimRecordError(f"tag {position} has an invalid name {_shown(name)}")
        if value and not _TAG_VALUE.fullmatch(value):
            raise DkimRecordError(
                f"tag {name}= has a character outside printable ASCII: {_shown(value)}"
            )
        if name in tags:
            raise DkimRecordError(f"duplicate tag {name}=")
        if name == "v" and position != 1:
            raise DkimRecordError(f"v= must be the first tag, found as tag {position}")
        tags[name] = value
    if "v" in tags and tags["v"] != "DKIM1":
        raise DkimRecordError(f"v={_shown(tags['v'])} is not DKIM1")
    key_type = tags.get("k", KeyAlgorithm.RSA.value)
    if key_type not in {algorithm.value for algorithm in KeyAlgorithm}:
        raise DkimRecordError(f"unknown key type k={_shown(key_type)} (expected rsa or ed25519)")
    if "p" not in tags:
        raise DkimRecordError("missing p= tag (public key data)")
    public = _FOLDING.sub("", tags["p"])
    if not _BASE64.fullmatch(public):
        raise DkimRecordError(f"p= is not base64: {_shown(public)}")
    tags["p"] = public
    return tags


def public_key_matches(record_text: str, algorithm: KeyAlgorithm, public_b64: str) -> bool:
    """True when the record publishes exactly this key, with this algorithm.

    Compares the decoded key bytes, so base64 spelling and folding do not matter. A revoked
    record (empty ``p=``) or another key type does not match. Raises `DkimRecordError` when
    the record is malformed, so the caller can say why rather than just "not published".
    """
    tags = parse_dkim_record(record_text)
    if tags.get("k", KeyAlgorithm.RSA.value) != algorithm.value or not tags["p"]:
        return False
    return base64.b64decode(tags["p"]) == base64.b64decode(public_b64, validate=True)


def next_selector(existing: Iterable[str], algorithm: KeyAlgorithm, today: datetime.date) -> str:
    """A selector for a new key that is none of `existing` (all selectors ever used, retired
    included): ``pr20250314-rsa``, then ``pr20250314-rsa-2``, ``-3``... A lower-case DNS label.
    """
    taken = {selector.lower() for selector in existing}  # DNS labels compare case-insensitively
    suffix = "rsa" if algorithm is KeyAlgorithm.RSA else "ed"
    base = f"pr{today:%Y%m%d}-{suffix}"
    candidate, sequence = base, 2
    while candidate in taken:
        candidate, sequence = f"{base}-{sequence}", sequence + 1
    return candidate


@dataclass(frozen=True, slots=True)
class KeyView:
    """What the rotation rules need to know about one stored key; times are Unix seconds."""

    selector: str
    algorithm: KeyAlgorithm
    state: KeyState
    created_at: float
    state_since: float


@dataclass(frozen=True, slots=True)
class Transition:
    """Move key `selector` from `from_state` to `to_state`, for `reason` (for logs and audit)."""

    selector: str
    from_state: KeyState
    to_state: KeyState
    reason: str


def plan_transitions(
    keys: Sequence[KeyView],
    published: Mapping[str, bool],
    now: float,
    grace_s: float,
) -> list[Transition]:
    """The state changes due for the keys of one domain.

    `published[selector]` is True when DNS shows that key's public key (see
    `public_key_matches`); a missing selector counts as not published. It is consulted for
    PENDING keys only. Rules, applied per algorithm:

    * the newest published PENDING key becomes ACTIVE, and every ACTIVE key of its algorithm
      becomes RETIRING at the same moment; older PENDING keys of that algorithm are superseded
      before they ever signed, so they go straight to RETIRED;
    * a PENDING key that is not published stays PENDING;
    * without an activation, surplus ACTIVE keys (a damaged table) become RETIRING, keeping
      the newest, so at most one ACTIVE key per algorithm remains after the plan;
    * a RETIRING key whose ``state_since + grace_s <= now`` becomes RETIRED.

    The result is in an order safe to apply one by one: demotions come before the activation
    they make room for. This function never creates keys: a domain's very first key is created
    ACTIVE directly by the caller, because with no older key to keep, signing at once costs
    nothing (a signature whose key is not yet in DNS fails like no signature) and counts as
    soon as the record appears.
    """
    selectors = [key.selector for key in keys]
    if len(set(selectors)) != len(selectors):
        raise ValueError("duplicate selectors among the keys of one domain")
    plan: list[Transition] = []
    for algorithm in KeyAlgorithm:
        same = [key for key in keys if key.algorithm is algorithm]
        plan.extend(_plan_activation(same, published))
    for key in keys:
        if key.state is KeyState.RETIRING and key.state_since + grace_s <= now:
            plan.append(
                Transition(
                    key.selector,
                    KeyState.RETIRING,
                    KeyState.RETIRED,
                    f"grace period of {grace_s:g} s after replacement has passed",
                )
            )
    return plan


def _newest_first(keys: Iterable[KeyView]) -> list[KeyView]:
    return sorted(keys, key=lambda key: (key.created_at, key.selector), reverse=True)


def _plan_activation(keys: Sequence[KeyView], published: Mapping[str, bool]) -> list[Transition]:
    """Transitions between PENDING and ACTIVE for the keys of one algorithm."""
    active = _newest_first(key for key in keys if key.state is KeyState.ACTIVE)
    ready = _newest_first(
        key for key in keys if key.state is KeyState.PENDING and published.get(key.selector)
    )
    if not ready:
        return [
            Transition(
                surplus.selector,
                KeyState.ACTIVE,
                KeyState.RETIRING,
                f"more than one active key; {active[0].selector} is the newest and stays",
            )
            for surplus in active[1:]
        ]
    new = ready[0]
    plan = [
        Transition(old.selector, KeyState.ACTIVE, KeyState.RETIRING, f"replaced by {new.selector}")
        for old in active
    ]
    plan.extend(
        Transition(
            stale.selector,
            KeyState.PENDING,
            KeyState.RETIRED,
            f"superseded by newer {new.selector} before it signed",
        )
        for stale in keys
        if stale.state is KeyState.PENDING
        and (stale.created_at, stale.selector) < (new.created_at, new.selector)
    )
    plan.append(
        Transition(new.selector, KeyState.PENDING, KeyState.ACTIVE, "record published in DNS")
    )
    return plan
