"""The Authentication-Results header field (RFC 8601) for our verdicts.

`authentication_results(authserv_id, verdicts)` builds one header field with
authres — spf (the MAIL FROM identity, and the HELO identity when it was
checked), one dkim result per signature (header.d, header.s, header.a and the
RFC 6008 header.b prefix that tells signatures of one domain apart), dmarc
(header.from, policy.applied-disposition style comment) and arc — folded at
result boundaries, CRLF-terminated, to be placed at the top of the message.

`remove_forged(headers, authserv_id)` drops every Authentication-Results field
already in the header section that claims our authserv-id (RFC 8601 5: a
receiver must not trust, and should remove, results it did not add — else a
sender could write "dkim=pass" in our name). The id compares case-insensitively,
comments and the optional version around it ignored. Other hosts' fields stay.

Untrusted input: the header section (only the A-R fields' first token is read).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import authres
import authres.arc
import authres.dmarc

from postroom.mta.checks.spf import SpfResult, SpfVerdict

if TYPE_CHECKING:
    from postroom.mta.checks.pipeline import AuthVerdicts

_AR_FIELD = re.compile(rb"^Authentication-Results[ \t]*:(.*?\r\n)(?![ \t])", re.I | re.M | re.S)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_UNSAFE_COMMENT = re.compile(r"[^\x20-\x27\x2a-\x5b\x5d-\x7e]")


def authentication_results(authserv_id: str, verdicts: AuthVerdicts) -> bytes:
    results: list[authres.BaseAuthenticationResult] = [_spf(verdicts.spf.mail_from)]
    if verdicts.spf.helo.result is not SpfResult.NONE:
        results.append(_spf(verdicts.spf.helo))
    if verdicts.dkim:
        for verdict in verdicts.dkim:
            results.append(
                authres.DKIMAuthenticationResult(
                    result=verdict.result.value,
                    result_comment=_comment(verdict.reason),
                    header_d=verdict.domain or None,
                    header_s=verdict.selector or None,
                    header_a=verdict.algorithm or None,
                    properties=[
                        authres.AuthenticationResultProperty("header", "b", verdict.header_b)
                    ]
                    if verdict.header_b
                    else None,
                )
            )
    else:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    dmarc = verdicts.dmarc
    results.append(
        authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result.value,
            result_comment=_comment(
                f"p={dmarc.policy.value} dis={dmarc.disposition.value}"
                if dmarc.policy
                else dmarc.reason
            ),
            header_from=dmarc.from_domain or None,
        )
    )
    arc = verdicts.arc
    results.append(
        authres.arc.ARCAuthenticationResult(
            result=arc.result.value,
            result_comment=_comment(f"{arc.instances} set(s), sealed by {arc.sealer}")
            if arc.sealer
            else None,
        )
    )
    field = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
    # One result per line keeps the field under the 998-octet line limit (RFC 5322 2.1.1).
    return field.replace("; ", ";\r\n\t").encode("utf-8", "surrogateescape") + b"\r\n"


def remove_forged(headers: bytes, authserv_id: str) -> bytes:
    ours = authserv_id.lower().encode("ascii", "replace")

    def keep(match: re.Match[bytes]) -> bytes:
        return b"" if _claimed_id(match.group(1)) == ours else match.group(0)

    return _AR_FIELD.sub(keep, headers)


def _claimed_id(value: bytes) -> bytes:
    """The authserv-id a field's value starts with, lower case: the first token or
    quoted-string (RFC 8601 2.2) after any comments, which may nest and may hide a
    ")" behind a backslash (RFC 5322 3.2.2)."""
    index, size = 0, len(value)
    while index < size:
        char = value[index : index + 1]
        if char in b" \t\r\n":
            index += 1
        elif char == b"(":
            index = _after_comment(value, index)
        elif char == b'"':
            return _quoted_string(value, index + 1).lower()
        else:
            end = index
            while end < size and value[end : end + 1] not in b' \t\r\n;("':
                end += 1
            return value[index:end].lower()
    return b""


def _after_comment(value: bytes, index: int) -> int:
    depth = 0
    while index < len(value):
        char = value[index : index + 1]
        if char == b"\\":
            index += 2
            continue
        depth += {b"(": 1, b")": -1}.get(char, 0)
        index += 1
        if depth == 0:
            break
    return index


def _quoted_string(value: bytes, index: int) -> bytes:
    text = bytearray()
    while index < len(value):
        char = value[index : index + 1]
        if char == b'"':
            break
        if char == b"\\":
            index += 1
            char = value[index : index + 1]
        text += char
        index += 1
    return bytes(text)


def _spf(verdict: SpfVerdict) -> authres.SPFAuthenticationResult:
    if verdict.identity == "helo":
        return authres.SPFAuthenticationResult(
            result=verdict.result.value,
            result_comment=_comment(verdict.explanation),
            smtp_helo=verdict.domain or None,
        )
    return authres.SPFAuthenticationResult(
        result=verdict.result.value,
        result_comment=_comment(verdict.explanation),
        smtp_mailfrom=_property_value(verdict.sender, verdict.domain),
    )


def _property_value(address: str, domain: str) -> str | None:
    """The address when it is a plain token, else its domain (RFC 8601 2.7.2 allows
    either): a quoted local part would need quoting authres does not do."""
    if address and _PLAIN_ADDRESS.fullmatch(address):
        return address
    return domain or None


def _comment(text: str) -> str | None:
    """Text safe inside an RFC 5322 comment: printable ASCII, no parentheses or backslash."""
    cleaned = _UNSAFE_COMMENT.sub("", " ".join(text.split()))[:120]
    return cleaned or None
