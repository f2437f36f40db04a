"""DNS records for the fake lookups of the message-authentication unit tests.

`record(rdtype, value)` builds one record as a resolver hands it over: TXT from
the value itself (zone-file text would need quoting), split into character-
strings of at most 255 octets (RFC 1035 3.3) as long DKIM keys are published;
any other type from zone-file text, its names absolute.
"""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT


def record(rdtype: str, value: str | bytes) -> dns.rdata.Rdata:
    if rdtype == "TXT":
        data = value.encode("utf-8") if isinstance(value, str) else value
        strings = [data[start : start + 255] for start in range(0, len(data), 255)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    text = value.decode("ascii") if isinstance(value, bytes) else value
    return dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
        text,
        origin=dns.name.root,
        relativize=False,
    )
