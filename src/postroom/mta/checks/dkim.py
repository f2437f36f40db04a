"""DKIM verification of every signature of a received message (RFC 6376, RFC 8463).

`verify_dkim(lookup, message)` (or `verify_parsed_dkim` of a message already
parsed) returns one `DkimVerdict` per DKIM-Signature
field, top to bottom (at most `MAX_SIGNATURES`; the rest are reported as
`policy`, so a message cannot make us do unbounded DNS and RSA work).
dkimpy does the verifying — canonicalisation, body hash, key record, RSA or
Ed25519 (through PyNaCl) — with keys of at least 1024 bits (RFC 8301).

Results, as RFC 8601 2.7.1 names them:
- `pass`; `fail` when the body hash or the signature does not match;
- `permerror` when the signature cannot be checked for good: malformed tags,
  rsa-sha1 (RFC 8301 3.1),
  no key record at the selector (RFC 6376 6.1.2), a revoked or unusable key,
  an expired signature;
- `temperror` when the key lookup met DNS trouble (timeout, SERVFAIL): the
  same message may verify later, so policy must not treat it as a failure;
- `policy` for signatures beyond the limit.
No signature at all is an empty list (A-R then says `dkim=none`).

Untrusted input: the message and the key records. dkimpy's own log lines
are kept out of ours (its logger is quieted): each verdict carries the reason.
Its work is bounded: the message is parsed by `signing.dkim.parse_message`
(linear; dkimpy's own parse is quadratic in folded lines), and a signature is
`permerror` without being checked when its field is longer than
`MAX_SIGNATURE_FIELD_BYTES`, holds a run of white space longer than
`MAX_BLANK_RUN` (dkimpy's b= and h= patterns backtrack over such runs in time
quadratic in their length), or names more than `MAX_SIGNED_FIELDS` fields in
h= (dkimpy looks each one up through the whole header section).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

import dkim
import dkim.util

from postroom.core.dns import DnsTemporaryError
from postroom.mta.checks.lookup import DnsLookup, KeyRecordLookup
from postroom.mta.signing.dkim import Headers, SigningError, parse_message

MAX_SIGNATURES = 10
# Real signature fields are under 2 KB (an RSA-4096 b= is 684 characters), name a few
# dozen fields in h= at most, and fold with a few blanks at a time.
MAX_SIGNATURE_FIELD_BYTES = 8192
MAX_SIGNED_FIELDS = 100
MAX_BLANK_RUN = 256
_MAX_TAG_TEXT = 64

# dkimpy logs every failure at error level; each verdict carries its reason instead.
quiet_dkimpy = logging.getLogger("postroom.checks.dkimpy")
quiet_dkimpy.setLevel(logging.CRITICAL)

_WHITESPACE = re.compile(rb"\s+")
_BASE64_PREFIX = re.compile(r"[A-Za-z0-9+/=]{1,8}")
_LONG_BLANK_RUN = re.compile(rb"\s{%d}" % (MAX_BLANK_RUN + 1))


class DkimResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    POLICY = "policy"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class DkimVerdict:
    result: DkimResult
    domain: str  # d=, as signed ("" when the tag is missing)
    selector: str  # s=
    algorithm: str  # a=
    header_b: str  # the first 8 characters of b= (RFC 6008): tells signatures apart
    reason: str  # one line, for logs and A-R comments


def verify_dkim(lookup: DnsLookup, message: bytes) -> list[DkimVerdict]:
    try:
        headers, body = parse_message(message)
    except SigningError as error:
        return dkim_of_unparsable(message, error)
    return verify_parsed_dkim(lookup, headers, body)


def dkim_of_unparsable(message: bytes, error: SigningError) -> list[DkimVerdict]:
    """The header section itself cannot be parsed: any signature in it is unusable."""
    if b"dkim-signature" not in message.lower():
        return []
    return [DkimVerdict(DkimResult.PERMERROR, "", "", "", "", _one_line(error))]


def verify_parsed_dkim(lookup: DnsLookup, headers: Headers, body: bytes) -> list[DkimVerdict]:
    """`verify_dkim` of a message already split by `parse_message` (the pipeline
    parses once for DKIM, ARC and DMARC's From)."""
    verifier = dkim_over(dkim.DKIM, headers, body)
    fields = [value for name, value in headers if name.lower() == b"dkim-signature"]
    verdicts = []
    for index, value in enumerate(fields):
        tags = signature_tags(value)
        if index >= MAX_SIGNATURES:
            verdicts.append(_verdict(DkimResult.POLICY, tags, "too many signatures, not checked"))
            continue
        problem = unreadable_field(value, tags)
        if problem:
            verdicts.append(_verdict(DkimResult.PERMERROR, tags, problem))
            continue
        if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
            # RFC 8301 3.1: rsa-sha1 must not be used for verifying; such signatures
            # have permanently failed.
            verdicts.append(_verdict(DkimResult.PERMERROR, tags, "rsa-sha1 is historic (RFC 8301)"))
            continue
        verdicts.append(_verify_one(verifier, index, tags, KeyRecordLookup(lookup)))
    return verdicts


def _verify_one(
    verifier: dkim.DKIM, index: int, tags: dict[bytes, bytes], keys: KeyRecordLookup
) -> DkimVerdict:
    verifier.pk = None  # set by dkimpy only once a usable key record is loaded
    try:
        valid = verifier.verify(idx=index, dnsfunc=keys)
    except dkim.ValidationError as error:
        if "body hash" in str(error):
            return _verdict(DkimResult.FAIL, tags, "body hash mismatch")
        return _verdict(DkimResult.PERMERROR, tags, _one_line(error))
    except dkim.DKIMException as error:
        return _verdict(DkimResult.PERMERROR, tags, _one_line(error))
    except (ValueError, TypeError, IndexError, KeyError) as error:
        # dkimpy meeting malformed input it does not anticipate (bad base64, odd tags).
        return _verdict(DkimResult.PERMERROR, tags, f"unusable signature ({type(error).__name__})")
    if valid:
        return _verdict(DkimResult.PASS, tags, "signature verified")
    if isinstance(keys.problem, DnsTemporaryError):
        return _verdict(DkimResult.TEMPERROR, tags, f"key lookup failed: {keys.problem.reason}")
    if keys.problem is not None:
        return _verdict(DkimResult.PERMERROR, tags, "no key for signature")
    if verifier.pk is None:
        return _verdict(DkimResult.PERMERROR, tags, "unusable key record")
    return _verdict(DkimResult.FAIL, tags, "signature did not verify")


def dkim_over(kind: type[dkim.DomainSigner], headers: Headers, body: bytes) -> dkim.DomainSigner:
    """A dkimpy verifier (DKIM or ARC) over an already parsed message: it would parse
    the message again, in time quadratic in its folded lines."""
    verifier = kind(None, logger=quiet_dkimpy, minkey=1024)
    verifier.headers, verifier.body = headers, body
    return verifier


def unreadable_field(value: bytes, tags: dict[bytes, bytes]) -> str:
    """Why dkimpy must not be given this signature field ("" when it may): see the
    module docstring. `tags` are the field's, parsed."""
    if len(value) > MAX_SIGNATURE_FIELD_BYTES:
        return f"signature field over {MAX_SIGNATURE_FIELD_BYTES} bytes, not checked"
    if _LONG_BLANK_RUN.search(value):
        return f"white space run over {MAX_BLANK_RUN} characters, not checked"
    if tags.get(b"h", b"").count(b":") >= MAX_SIGNED_FIELDS:
        return f"more than {MAX_SIGNED_FIELDS} signed fields, not checked"
    return ""


def signature_tags(value: bytes) -> dict[bytes, bytes]:
    """A signature field's tags ({} when they do not parse)."""
    try:
        return dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return {}


def _verdict(result: DkimResult, tags: dict[bytes, bytes], reason: str) -> DkimVerdict:
    def text(tag: bytes, limit: int = _MAX_TAG_TEXT) -> str:
        # Bounded: these values come from the message and end up in a header line.
        return _WHITESPACE.sub(b"", tags.get(tag, b""))[:limit].decode("ascii", "replace")

    prefix = text(b"b", 8)
    header_b = prefix if _BASE64_PREFIX.fullmatch(prefix) else ""
    return DkimVerdict(result, text(b"d", 253), text(b"s"), text(b"a"), header_b, reason)


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
