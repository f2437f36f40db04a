"""ARC chain validation of a received message (RFC 8617), with dkimpy.

`verify_arc(lookup, message)` (or `verify_parsed_arc` of a message already
parsed) returns an `ArcVerdict`: `none` when the message
carries no ARC set, `pass` when every ARC-Seal and the newest
ARC-Message-Signature verify and the chain states are consistent, `fail`
otherwise, and `temperror` when a failure coincided with DNS trouble on a key
lookup (the same chain may validate later). A chain of more than
`MAX_INSTANCES` sets fails (RFC 8617 4.2.1: at most 50; we stop far earlier,
as real chains are a few hops long and each set costs key lookups).

The verdict reports; it overrides nothing. What it says (the sealer of the
newest set, the chain length) goes into Authentication-Results, where an
operator or a later trusted-sealer policy can use it.
Untrusted input: the message and the key records. Bounded as dkim.py bounds
DKIM: the message parsed once in linear time, and a chain with an ARC field
dkimpy would read in superlinear time (`dkim.unreadable_field`) fails unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import dkim

from postroom.mta.checks.dkim import dkim_over, signature_tags, unreadable_field
from postroom.mta.checks.lookup import DnsLookup, KeyRecordLookup
from postroom.mta.signing.dkim import Headers, SigningError, parse_message

MAX_INSTANCES = 10

_INSTANCE = re.compile(rb"(?:^|;)\s*i\s*=\s*(\d+)")


class ArcResult(StrEnum):
    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"


@dataclass(frozen=True, slots=True)
class ArcVerdict:
    result: ArcResult
    instances: int  # ARC sets on the message (0 for none)
    sealer: str  # d= of the newest ARC-Seal ("" when none)
    reason: str


def verify_arc(lookup: DnsLookup, message: bytes) -> ArcVerdict:
    try:
        headers, body = parse_message(message)
    except SigningError as error:
        return arc_of_unparsable(error)
    return verify_parsed_arc(lookup, headers, body)


def arc_of_unparsable(error: SigningError) -> ArcVerdict:
    return ArcVerdict(ArcResult.FAIL, 0, "", f"unparsable header section ({error})")


def verify_parsed_arc(lookup: DnsLookup, headers: Headers, body: bytes) -> ArcVerdict:
    """`verify_arc` of a message already split by `parse_message`."""
    seals = [value for name, value in headers if name.lower() == b"arc-seal"]
    if not seals and not any(name.lower().startswith(b"arc-") for name, _ in headers):
        return ArcVerdict(ArcResult.NONE, 0, "", "no ARC sets")
    instances = max((_instance(value) for value in seals), default=0)
    if instances > MAX_INSTANCES:
        return ArcVerdict(ArcResult.FAIL, instances, "", f"more than {MAX_INSTANCES} ARC sets")
    for name, value in headers:
        if not name.lower().startswith(b"arc-"):
            continue
        problem = unreadable_field(value, signature_tags(value))
        if problem:
            return ArcVerdict(ArcResult.FAIL, instances, "", f"{name.decode()}: {problem}")
    keys = KeyRecordLookup(lookup)
    try:
        state, results, reason = dkim_over(dkim.ARC, headers, body).verify(dnsfunc=keys)
    except dkim.DKIMException as error:  # what dkim.arc_verify would have made of it
        state, results, reason = dkim.CV_Fail, [], str(error)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        # dkimpy meeting malformed input it does not anticipate.
        return ArcVerdict(
            ArcResult.FAIL, instances, "", f"unusable ARC set ({type(error).__name__})"
        )
    sealer = _newest_sealer(results)
    reason = " ".join(str(reason).split())[:200]
    if state == dkim.CV_Pass:
        return ArcVerdict(ArcResult.PASS, instances, sealer, reason)
    if state == dkim.CV_None:
        return ArcVerdict(ArcResult.NONE, instances, sealer, reason)
    if keys.temporary:
        return ArcVerdict(ArcResult.TEMPERROR, instances, sealer, "key lookup failed: " + reason)
    return ArcVerdict(ArcResult.FAIL, instances, sealer, reason or "chain did not validate")


def _instance(seal: bytes) -> int:
    match = _INSTANCE.search(seal)
    return int(match.group(1)) if match else 0


def _newest_sealer(results: list[dict[str, object]]) -> str:
    if not results:
        return ""
    newest = max(results, key=lambda result: int(result.get("instance", 0)))  # type: ignore[call-overload]
    domain = newest.get("as-domain", b"")
    return domain.decode("ascii", "replace") if isinstance(domain, bytes) else ""
