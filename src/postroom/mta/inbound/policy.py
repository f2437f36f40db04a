"""Who may send what through port 25: relay decisions and envelope address checks.

Pure functions over untrusted input (addresses from MAIL FROM / RCPT TO, the
client's IP). No open relay: a client outside `[smtp.inbound] relay_networks`
may only send to our own domains (none until linked domains land), and the
classic relay tricks are refused outright for everyone, because no legitimate
sender needs them and each has fooled some MTA into relaying:
- percent hack `user%victim.test@us`, bang paths `victim.test!user@us`,
- quoted local parts hiding an address `"user@victim.test"@us`,
- source routes `@us:user@victim.test` (aiosmtpd strips them to the final
  address, which is then judged like any other),
- IP-literal domains `user@[192.0.2.1]` from clients that may not relay.
RFC 5321 4.5.3.1 limits: local part 64, domain 255, path 256 octets.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

from postroom.core.reply import Reply

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.I)
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+$")


class RelayNetworks:
    """The CIDRs whose clients may relay without AUTH."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
        # Asked at every RCPT and DATA; parsing the address each time showed in profiles.
        self.allows = functools.lru_cache(maxsize=4096)(self._allows)

    def _allows(self, client_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def normalise_sender(address: str) -> str:
    """aiosmtpd gives the null sender as "<>"; the queue stores it as ""."""
    return "" if address in ("<>", "") else address


# RFC 3463 3.2: the same faults in the sender's address have codes of their own
# (X.1.7 bad sender's mailbox syntax, X.1.8 bad sender's system address).
_SENDER_CODES = {"5.1.3": "5.1.7", "5.1.2": "5.1.8"}


def check_address(address: str, *, smtputf8: bool, sender: bool = False) -> Reply | None:
    """A refusal for a malformed envelope address, or None when it is acceptable.
    `sender`: the address of MAIL FROM, whose refusals say so in their enhanced code."""
    refusal = _address_refusal(address, smtputf8)
    if sender and refusal is not None and refusal.enhanced in _SENDER_CODES:
        return Reply(refusal.code, _SENDER_CODES[refusal.enhanced], refusal.text)
    return refusal


def _address_refusal(address: str, smtputf8: bool) -> Reply | None:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return Reply(553, "5.1.3", f"<{address}>: address must be local-part@domain")
    if len(address) > 254 or len(local.encode()) > 64:
        return Reply(553, "5.1.3", f"<{address}>: address too long (RFC 5321 4.5.3.1)")
    if not smtputf8 and not address.isascii():
        return Reply(553, "5.6.7", f"<{address}>: non-ASCII address needs SMTPUTF8")
    if local.startswith('"'):
        return Reply(553, "5.7.1", f"<{address}>: quoted local parts are not accepted here")
    if "%" in local or "!" in local:
        return Reply(553, "5.7.1", f"<{address}>: percent hack and bang paths are not accepted")
    if any(not part or not _ATEXT.match(part) for part in local.split(".")):
        return Reply(553, "5.1.3", f"<{address}>: malformed local part")
    if domain.startswith("["):
        if _ip_literal(domain) is None:
            return Reply(553, "5.1.3", f"<{address}>: malformed address literal")
        return None
    if not _valid_domain(domain):
        return Reply(553, "5.1.2", f"<{address}>: malformed domain")
    return None


def _ip_literal(domain: str) -> str | None:
    if not domain.endswith("]"):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def _valid_domain(domain: str) -> bool:
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return False
    if len(ascii_domain) > 253 or ascii_domain.endswith("."):
        return False
    labels = ascii_domain.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)
