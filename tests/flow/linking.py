"""Helpers of the linked-domain flow tests: zones built from postroom's own output.

`ApplianceZones` keeps the zone texts one private NSD serves: the appliance's
zone (its host name, the SPF include host of `postroom dns self`) and each
linked domain's zone, whose records are whatever the test publishes — usually
the BIND text `postroom domain dns --format bind` printed. Every `publish`
bumps the SOA serial and waits until NSD serves it.
"""

from __future__ import annotations

from tests.peers.dns import NsdServer, make_zone
from tests.peers.postroom import PostroomServer

APPLIANCE = "appliance.test"
MAIL_HOST = f"mail.{APPLIANCE}"
MAIL_IP = "127.0.0.1"
EGRESS = """
[[egress]]
name = "out-1"
address = "127.0.0.2"
helo = "out-1.appliance.test"
"""


class ApplianceZones:
    def __init__(self) -> None:
        self.serial = 1
        self.records: dict[str, list[str]] = {APPLIANCE: [f"mail IN A {MAIL_IP}"]}

    def texts(self) -> dict[str, str]:
        return {
            name: make_zone(name, lines, serial=self.serial) for name, lines in self.records.items()
        }

    def publish(self, nsd: NsdServer, zone: str, lines: list[str]) -> None:
        """Replace `zone`'s records (relative or absolute lines) and serve them."""
        self.records[zone] = lines
        self.serial += 1
        nsd.reload(self.texts())


def link_domain(server: PostroomServer, nsd: NsdServer, zones: ApplianceZones, domain: str) -> str:
    """`domain add` + publish the proof + `domain verify`; returns the proof text."""
    added = server.cli_json("domain", "add", domain, "--project", "acme")
    proof = added["verification"]
    zones.publish(nsd, domain, [f'@ IN TXT "{proof}"'])
    server.cli("domain", "verify", domain)
    return proof


def publish_generated(
    server: PostroomServer, nsd: NsdServer, zones: ApplianceZones, domain: str
) -> str:
    """Serve exactly what `postroom domain dns --format bind` prints; returns it."""
    bind = server.cli("domain", "dns", domain, "--format", "bind").stdout
    zones.publish(nsd, domain, bind.splitlines())
    return bind
