"""DNS records we ask a domain owner to publish, as values, and their renderings.

Purpose: `DnsRecord` is one record (owner name, type, presentation value,
whether it is required and why); this module turns a list of them into text a
DNS admin pastes into a zone file (`render_bind`), reads off a screen
(`render_table`), or a program consumes (`records_json`).

Inputs: `DnsRecord` values, checked when built: names are absolute, lower-case
ASCII without the trailing dot; values are in presentation form without
quoting (a TXT value is its full text, an MX value "10 mail.example.test").
Outputs: text and JSON-ready lists; no I/O.

RFCs: 1035 section 5.1 (zone file syntax, quoting and \\DDD escapes),
1035 section 3.3.14 and 7208 section 3.3 (TXT character-strings of at most 255 octets).
Untrusted input: TXT values may hold text from an existing DNS record (a
published SPF or DMARC record); every byte outside printable ASCII is written
as \\DDD, and names and reasons are checked, so no value can add a line to a zone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

RECORD_TYPES = frozenset({"TXT", "MX", "CNAME", "A", "AAAA", "PTR"})
# RFC 1035 3.3: a <character-string> is one length octet and up to 255 octets.
TXT_STRING_MAX_OCTETS = 255
# RFC 2181 8: TTLs are 32-bit unsigned with the top bit clear.
_TTL_MAX = 2**31 - 1
# Owner names we produce: letters, digits, hyphen and the underscore of
# attribute leaves (_dmarc, _domainkey, _report); 1-63 octets a label.
_HOST = re.compile(r"^[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$")
_MX_VALUE = re.compile(r"^(\d{1,5}) (\S+)$")
# Rows wider than this print their value on a line of its own.
_TABLE_ROW_MAX_WIDTH = 100


def _check_host(host: str, what: str) -> None:
    if len(host) > 253 or _HOST.match(host) is None:
        raise ValueError(
            f"{what} must be a lower-case ASCII domain name without trailing dot: {host!r}"
        )


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One record to publish.

    `name`: absolute owner name, lower-case ASCII, no trailing dot.
    `type`: one of TXT, MX, CNAME, A, AAAA, PTR.
    `value`: presentation value without quoting: a TXT record's full text,
    "10 mail.example.test" for MX, the target for CNAME/PTR (no trailing dot),
    the address for A/AAAA.
    `required`: mail breaks without it (else it is recommended).
    `reason`: one line telling the admin why.
    """

    name: str
    type: str
    value: str
    required: bool
    reason: str
    ttl: int = 3600

    def __post_init__(self) -> None:
        _check_host(self.name, "record name")
        if self.type not in RECORD_TYPES:
            raise ValueError(f"unsupported record type {self.type!r}")
        if not 0 <= self.ttl <= _TTL_MAX:
            raise ValueError(f"TTL out of range: {self.ttl}")
        if "\n" in self.reason or "\r" in self.reason:
            raise ValueError(f"reason must be one line: {self.reason!r}")
        if self.type == "MX":
            match = _MX_VALUE.match(self.value)
            if match is None or int(match.group(1)) > 65535:
                raise ValueError(f"MX value must be '<preference> <host>': {self.value!r}")
            _check_host(match.group(2), "MX host")
        elif self.type in ("CNAME", "PTR"):
            _check_host(self.value, f"{self.type} target")
        elif self.type == "A":
            ipaddress.IPv4Address(self.value)
        elif self.type == "AAAA":
            if "%" in self.value:  # ipaddress accepts a scope ("fe80::1%eth0"); DNS does not
                raise ValueError(f"AAAA value must not carry a scope: {self.value!r}")
            ipaddress.IPv6Address(self.value)

    @property
    def label(self) -> str:
        """ "required" or "recommended"."""
        return "required" if self.required else "recommended"


def txt_strings(text: str) -> list[str]:
    """`text` split into TXT character-strings of at most 255 UTF-8 octets each.

    A multi-byte character is never cut: a chunk ends before a character that
    would not fit. An empty text is one empty string (a TXT record has at least one).
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        octets = len(char.encode("utf-8"))
        if size + octets > TXT_STRING_MAX_OCTETS:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += octets
    if current or not chunks:
        chunks.append("".join(current))
    return chunks


def _quoted(chunk: str) -> str:
    """One character-string in zone file syntax (RFC 1035 5.1)."""
    out = []
    for octet in chunk.encode("utf-8"):
        if octet in (0x22, 0x5C):  # '"' and '\' are escaped with a backslash
            out.append("\\" + chr(octet))
        elif 0x20 <= octet <= 0x7E:
            out.append(chr(octet))
        else:  # controls and non-ASCII octets: \DDD keeps the zone file ASCII, one line
            out.append(f"\\{octet:03d}")
    return '"' + "".join(out) + '"'


def _bind_rdata(record: DnsRecord) -> str:
    if record.type == "TXT":
        strings = [_quoted(chunk) for chunk in txt_strings(record.value)]
        if len(strings) == 1:
            return strings[0]
        return "( " + "\n\t".join(strings) + " )"
    if record.type == "MX":
        preference, host = record.value.split(" ")
        return f"{preference} {host}."
    if record.type in ("CNAME", "PTR"):
        return f"{record.value}."
    return record.value


def render_bind(records: Iterable[DnsRecord], *, header: str = "") -> str:
    """Zone file lines for `records`, to paste into a zone (named-checkzone accepts them).

    `header` lines come first as comments. Each record is preceded by a comment
    "; required: <reason>" or "; recommended: <reason>"; owner names and
    MX/CNAME/PTR targets are absolute (trailing dot), so $ORIGIN does not matter.
    A long TXT value is several quoted strings inside parentheses.
    """
    lines = [f"; {line}".rstrip() for line in header.splitlines()]
    for record in records:
        lines.append(f"; {record.label}: {record.reason}")
        lines.append(f"{record.name}. {record.ttl} IN {record.type} {_bind_rdata(record)}")
    return "\n".join(lines) + "\n" if lines else ""


def render_table(records: Iterable[DnsRecord]) -> str:
    """A fixed-width table (label, type, name, value) for a DNS admin.

    Values are never wrapped, so they can be copied whole: a value that would
    make its row wider than 100 columns is printed on the next line, indented
    by four spaces, with "(value on the next line)" in the value column.
    """
    rows = list(records)
    label_width = max([len("LABEL"), *(len(record.label) for record in rows)])
    type_width = max([len("TYPE"), *(len(record.type) for record in rows)])
    name_width = max([len("NAME"), *(len(record.name) for record in rows)])

    def row(label: str, rdtype: str, name: str, value: str) -> str:
        cells = f"{label:<{label_width}}  {rdtype:<{type_width}}  {name:<{name_width}}  "
        return cells + value

    lines = [row("LABEL", "TYPE", "NAME", "VALUE")]
    for record in rows:
        line = row(record.label, record.type, record.name, record.value)
        if len(line) <= _TABLE_ROW_MAX_WIDTH:
            lines.append(line)
        else:
            lines.append(row(record.label, record.type, record.name, "(value on the next line)"))
            lines.append("    " + record.value)
    return "\n".join(lines) + "\n"


def records_json(records: Iterable[DnsRecord]) -> list[dict[str, object]]:
    """Records as JSON-ready dicts; TXT records also carry their 255-octet "strings"."""
    out: list[dict[str, object]] = []
    for record in records:
        item: dict[str, object] = {
            "name": record.name,
            "type": record.type,
            "value": record.value,
            "ttl": record.ttl,
            "required": record.required,
            "reason": record.reason,
        }
        if record.type == "TXT":
            item["strings"] = txt_strings(record.value)
        out.append(item)
    return out
