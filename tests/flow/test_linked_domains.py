"""Linked domains end to end: proof of ownership, generated zones, audit, DKIM rotation.

A private NSD serves zones built from postroom's own output. The BIND text of
`postroom domain dns` must pass named-checkzone (NSD's reload runs it), load
into NSD, and resolve back record by record; `postroom domain check` must then
say ok, and must name each thing a test breaks afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from tests.flow.linking import (
    APPLIANCE,
    EGRESS,
    MAIL_HOST,
    MAIL_IP,
    ApplianceZones,
    publish_generated,
)
from tests.peers.dns import NsdServer, make_zone
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mailbox.zone.render import DnsRecord, render_bind

DOMAIN = "acme.test"


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    return ApplianceZones()


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    texts = {**zones.texts(), DOMAIN: make_zone(DOMAIN, [])}
    zones.records[DOMAIN] = []
    with NsdServer(texts) as server:
        yield server


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, nsd: NsdServer) -> PostroomServer:
    """A config and state for CLI commands (no server process needed here)."""
    directory = tmp_path_factory.mktemp("domains")
    text = flow_config(
        state_dir=directory / "state",
        smtp_port=free_tcp_port(),
        nameserver=nsd.nameserver(),
        delivery_port=25,
        hostname=MAIL_HOST,
        extra=EGRESS + '\n[dkim]\nretire_after = "2s"\n',
    )
    server = PostroomServer(directory, text, 0)
    server.cli("project", "add", "acme", "--message-limit", "5000")
    server.cli("project", "add", "other")
    return server


def answer(nsd: NsdServer, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, nsd.address, port=nsd.port, timeout=2)
    values = []
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.from_text(rdtype):
            continue
        for rdata in rrset:
            if rdtype == "TXT":
                values.append(b"".join(rdata.strings).decode())
            else:
                values.append(rdata.to_text().rstrip("."))
    return values


def check(appliance: PostroomServer) -> tuple[int, dict]:
    import json

    result = appliance.cli("domain", "check", DOMAIN, "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def verdicts(report: dict) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for row in report["records"]:
        found.setdefault((row["name"], row["type"]), []).append(row["verdict"])
    return found


def test_ownership_proof_then_dns_records_then_audit(
    appliance: PostroomServer, nsd: NsdServer, zones: ApplianceZones
) -> None:
    added = appliance.cli_json("domain", "add", "ACME.test.", "--project", "acme")
    assert added["domain"] == DOMAIN and added["state"] == "unverified"
    proof = added["verification"]
    assert proof.startswith("postroom-verification=") and len(proof) > 30
    assert added["record"]["name"] == DOMAIN and added["record"]["type"] == "TXT"

    # Another project cannot take it; the message does not name the owner.
    taken = appliance.cli("domain", "add", DOMAIN, "--project", "other", check=False)
    assert taken.returncode == 2
    assert "already linked to another project" in taken.stderr and "'acme'" not in taken.stderr

    # Not published yet: exit 1 (the answer is no) and what was found instead.
    missing = appliance.cli("domain", "verify", DOMAIN, check=False)
    assert missing.returncode == 1 and "has no TXT records" in missing.stderr
    zones.publish(nsd, DOMAIN, ['@ IN TXT "postroom-verification=0123456789abcdef"'])
    wrong = appliance.cli("domain", "verify", DOMAIN, check=False)
    assert wrong.returncode == 1 and "0123456789abcdef" in wrong.stderr
    assert appliance.cli_json("domain", "list")[0]["state"] == "unverified"

    zones.publish(nsd, DOMAIN, [f'@ IN TXT "{proof}"', '@ IN TXT "v=spf1 mx -all"'])
    verified = appliance.cli_json("domain", "verify", DOMAIN)
    assert verified["state"] == "verified" and len(verified["dkim_selectors"]) == 1

    # The snippet merges the published SPF record instead of adding a second one.
    records = appliance.cli_json("domain", "dns", DOMAIN, "--format", "json")
    spf = [r for r in records if r["type"] == "TXT" and r["value"].startswith("v=spf1")]
    assert len(spf) == 1
    assert spf[0]["value"] == "v=spf1 mx include:_spf.mail.appliance.test -all"
    dkim = [r for r in records if "._domainkey." in r["name"]]
    assert len(dkim) == 1 and len(dkim[0]["strings"]) == 2  # a 2048-bit key needs two strings

    # The BIND text loads (named-checkzone runs on reload) and resolves back.
    own = appliance.cli("dns", "self", "--format", "bind").stdout.splitlines()
    assert any(".in-addr.arpa. " in line and " PTR " in line for line in own)
    # PTR records belong to the reverse zone of the IP's provider, not to ours.
    own = [line for line in own if ".in-addr.arpa." not in line]
    zones.publish(nsd, APPLIANCE, [f"mail IN A {MAIL_IP}", *own])
    assert answer(nsd, f"_spf.{MAIL_HOST}", "TXT") == ["v=spf1 ip4:127.0.0.2 -all"]
    publish_generated(appliance, nsd, zones, DOMAIN)
    for record in records:
        if record["type"] == "CNAME":
            assert answer(nsd, record["name"], "CNAME") == [record["value"]]
            continue
        assert record["value"] in answer(nsd, record["name"], record["type"]), record

    status, report = check(appliance)
    not_ok = [r for r in report["records"] if r["required"] and r["verdict"] != "ok"]
    assert (status, report["ok"], not_ok) == (0, True, [])
    assert report["domain"] == DOMAIN
    assert set(report["records"][0]) == {
        "name",
        "type",
        "expected",
        "found",
        "verdict",
        "required",
        "reason",
    }


def test_audit_names_each_problem(
    appliance: PostroomServer, nsd: NsdServer, zones: ApplianceZones
) -> None:
    records = appliance.cli_json("domain", "dns", DOMAIN, "--format", "json")
    selector_host = next(r["name"] for r in records if "._domainkey." in r["name"])

    def without(*fragments: str) -> list[str]:
        """The generated records minus those whose value contains a fragment, as zone lines."""
        kept = [
            DnsRecord(r["name"], r["type"], r["value"], r["required"], r["reason"])
            for r in records
            if not any(fragment in r["value"] for fragment in fragments)
        ]
        return render_bind(kept).splitlines()

    good = without()
    other_key = generate_key(KeyAlgorithm.RSA, 1024)
    other_txt = dkim_txt_value(KeyAlgorithm.RSA, other_key.public_b64)
    includes = " ".join(f"include:l{i}.{DOMAIN}" for i in range(10))
    cases = {
        "two spf": (
            [*good, '@ IN TXT "v=spf1 a -all"'],
            (DOMAIN, "TXT"),
            "wrong",
            "2 SPF records",
        ),
        "spf without us": (
            [*without("v=spf1"), '@ IN TXT "v=spf1 mx -all"'],
            (DOMAIN, "TXT"),
            "wrong",
            "does not authorise us",
        ),
        "spf over 10 lookups": (
            [
                *without("v=spf1"),
                f'@ IN TXT "v=spf1 include:_spf.{MAIL_HOST} {includes} -all"',
                *(f'l{i} IN TXT "v=spf1 a -all"' for i in range(10)),
            ],
            (DOMAIN, "TXT"),
            "wrong",
            "over the limit of 10",
        ),
        "dkim mismatch": (
            [
                *without("DKIM1"),
                f'{selector_host}. IN TXT "{other_txt}"',
            ],
            (selector_host, "TXT"),
            "wrong",
            "DKIM key mismatch",
        ),
        "dmarc malformed": (
            [*without("DMARC1"), '_dmarc IN TXT "v=DMARC1; p=maybe"'],
            (f"_dmarc.{DOMAIN}", "TXT"),
            "wrong",
            "malformed DMARC",
        ),
        "dmarc missing": (without("DMARC1"), (f"_dmarc.{DOMAIN}", "TXT"), "missing", ""),
        "mx elsewhere": (
            [*without(MAIL_HOST), "@ IN MX 10 mx.acme.test.", "mx IN A 127.0.0.99"],
            (DOMAIN, "MX"),
            "wrong",
            "does not point to this server",
        ),
    }
    for name, (lines, key, verdict, reason) in cases.items():
        zones.publish(nsd, DOMAIN, lines)
        status, report = check(appliance)
        rows = [r for r in report["records"] if (r["name"], r["type"]) == key]
        assert status == 1 and report["ok"] is False, name
        assert any(r["verdict"] == verdict and reason in r["reason"] for r in rows), (name, rows)


def test_dkim_rotation_waits_for_dns_then_retires_the_old_key(
    appliance: PostroomServer, nsd: NsdServer, zones: ApplianceZones
) -> None:
    keys = appliance.cli_json("domain", "dkim", "list", DOMAIN)
    (old,) = [k for k in keys if k["state"] == "active"]

    new = appliance.cli_json("domain", "dkim", "rotate", DOMAIN)
    assert len(new) == 1 and new[0]["selector"] != old["selector"]
    again = appliance.cli("domain", "dkim", "rotate", DOMAIN, check=False)
    assert again.returncode == 2 and "already pending" in again.stderr

    # Not in DNS yet: nothing changes.
    assert appliance.cli_json("domain", "dkim", "refresh", DOMAIN) == []
    states = {
        k["selector"]: k["state"] for k in appliance.cli_json("domain", "dkim", "list", DOMAIN)
    }
    assert states == {old["selector"]: "active", new[0]["selector"]: "pending"}

    publish_generated(appliance, nsd, zones, DOMAIN)  # now lists the pending key too
    moved = appliance.cli_json("domain", "dkim", "refresh", DOMAIN)
    assert {(m["selector"], m["to"]) for m in moved} == {
        (new[0]["selector"], "active"),
        (old["selector"], "retiring"),
    }
    records = appliance.cli_json("domain", "dns", DOMAIN, "--format", "json")
    published = {
        r["name"].split(".")[0]: r["required"] for r in records if "_domainkey" in r["name"]
    }
    assert published == {new[0]["selector"]: True, old["selector"]: False}

    time.sleep(2.1)  # [dkim] retire_after = "2s"
    moved = appliance.cli_json("domain", "dkim", "refresh", DOMAIN)
    assert [(m["selector"], m["to"]) for m in moved] == [(old["selector"], "retired")]
    records = appliance.cli_json("domain", "dns", DOMAIN, "--format", "json")
    assert [r["name"] for r in records if "_domainkey" in r["name"]] == [
        f"{new[0]['selector']}._domainkey.{DOMAIN}"
    ]


def test_bad_input_gets_one_line_and_exit_2(appliance: PostroomServer, tmp_path: Path) -> None:
    cases = [
        (("domain", "add", "exa mple.test", "--project", "acme"), "not a valid domain name"),
        (("domain", "add", "co.uk", "--project", "acme"), "public suffix"),
        (("domain", "add", "localhost", "--project", "acme"), "single label"),
        (("domain", "add", "192.0.2.1", "--project", "acme"), "IP address"),
        (("domain", "add", "new.test", "--project", "nobody"), "no project named"),
        (("domain", "verify", "unlinked.test"), "is not linked"),
        (("project", "add", "Bad Name"), "project name"),
        (("project", "add", "acme"), "already exists"),
    ]
    for args, message in cases:
        result = appliance.cli(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert [d["domain"] for d in appliance.cli_json("domain", "list")] == [DOMAIN]
    assert [p["name"] for p in appliance.cli_json("project", "list")] == ["acme", "other"]
