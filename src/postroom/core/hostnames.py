"""Names the appliance publishes in public DNS, and why one of them cannot work.

`hostname_problem(name)` says why a host name can never be found in public DNS
(None when it can): `localhost`, a single label, an IP address, a numeric last
label, or a name under a special-use or reserved top-level name. `RESERVED_TLDS`
is that list, shared with the address validator (no public mailbox lives under
them either). `public_name_problems(config)` applies it to every name the
appliance's own records use: `[server] hostname` (the MX target, the greeting,
the default SPF include host and EHLO name), each `[[egress]] helo` (its A/AAAA
and the egress address's PTR must match) and `[bounce] domain` (its MX must
point here). `config check`, `domain dns` and `dns self` print them as warnings:
a trial config on `localhost` is fine, records naming it are not.

Pure; no I/O. Input: operator text from the config file.
RFCs: 2606 and 6761 (test, example, invalid, localhost), 6762 (local), 7686
(onion), 8375 (home.arpa), 9476 (alt), ICANN's 2024 `.internal`; RFC 5321 2.3.5
(MX targets and EHLO are host names, not addresses).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postroom.config import Config

# Special-use or reserved top-level names: public DNS never resolves names under them.
RESERVED_TLDS = frozenset(
    {"test", "example", "invalid", "localhost", "local", "onion", "arpa", "internal", "alt"}
)


# What each name must be instead.
HOSTNAME_ADVICE = (
    "a production hostname must be a public FQDN whose A/AAAA points here "
    "and which the PTR of each egress address names"
)
HELO_ADVICE = (
    "an EHLO name must be a public FQDN whose A/AAAA is its egress address "
    "and which that address's PTR names"
)
BOUNCE_DOMAIN_ADVICE = "the bounce domain must be a public name whose MX points here"


@dataclass(frozen=True, slots=True)
class NameProblem:
    """A config key whose name cannot work in public DNS, why, and what it must be."""

    key: str  # "server.hostname", "egress[0].helo", "bounce.domain"
    name: str
    problem: str
    advice: str

    def __str__(self) -> str:
        return f"{self.key} {self.name!r} {self.problem}"


def hostname_problem(name: str) -> str | None:
    """Why `name` cannot be a public host name (a phrase after the name), or None."""
    host = name.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return "is an IP address: MX records and EHLO need a host name"
    if host == "localhost" or host.endswith(".localhost"):
        return "resolves only on this machine"
    if "." not in host:
        return "is a single label, not a fully qualified domain name"
    tld = host.rpartition(".")[2]
    if tld.isdigit():
        return "ends in a numeric label: not a host name"
    if tld in RESERVED_TLDS:
        return f"is under .{tld}, a special-use name that public DNS never resolves"
    return None


def public_name_problems(config: Config, *, egress: bool = True) -> list[NameProblem]:
    """Every name of the appliance's own DNS records that cannot work, in config order;
    `egress=False` leaves out the EHLO names (records of a linked domain never name them)."""
    named = [("server.hostname", config.server.hostname, HOSTNAME_ADVICE)]
    if egress:
        named += [
            (f"egress[{index}].helo", source.helo, HELO_ADVICE)
            for index, source in enumerate(config.egress)
            if source.helo
        ]
    if config.bounce.domain:
        named.append(("bounce.domain", config.bounce.domain, BOUNCE_DOMAIN_ADVICE))
    return [
        NameProblem(key, name, problem, advice)
        for key, name, advice in named
        if (problem := hostname_problem(name)) is not None
    ]
