"""DnsRecord checks and renderings; BIND output is loaded by the real named-checkzone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from postroom.mailbox.zone.render import (
    DnsRecord,
    records_json,
    render_bind,
    render_table,
    txt_strings,
)

ZONE_HEAD = """\
$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ IN NS ns1.example.test.
ns1 IN A 192.0.2.53
mail IN A 192.0.2.25
"""
# The size of a 2048-bit RSA DKIM record: well over one 255-octet string.
DKIM_TEXT = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 9 + "IDAQAB"
TRICKY_TEXT = 'say "hi" \\ back; (paren) é ünïcödé 😀 tab\there'


def named_checkzone() -> str:
    found = shutil.which("named-checkzone") or shutil.which("named-checkzone", path="/usr/sbin")
    assert found, "named-checkzone (bind9-utils) must be installed for this test"
    return found


def load_with_bind(tmp_path: Path, records: list[DnsRecord]) -> dns.zone.Zone:
    """Paste render_bind output into a zone, check it with named-checkzone, parse its dump."""
    zone_file = tmp_path / "example.test.zone"
    zone_file.write_text(
        ZONE_HEAD + render_bind(records, header="postroom records\nfor example.test")
    )
    result = subprocess.run(
        [named_checkzone(), "-D", "-o", "-", "example.test", str(zone_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dns.zone.from_text(result.stdout, origin="example.test.", relativize=False)


def txt_at(zone: dns.zone.Zone, name: str) -> list[bytes]:
    rdataset = zone.find_rdataset(name + ".", dns.rdatatype.TXT)
    return [b"".join(rdata.strings) for rdata in rdataset]


def test_txt_strings_split_at_255_octets() -> None:
    chunks = txt_strings("a" * 600)
    assert [len(chunk) for chunk in chunks] == [255, 255, 90]
    assert txt_strings("") == [""]
    assert txt_strings("a" * 255) == ["a" * 255]


def test_txt_strings_never_split_a_multibyte_character() -> None:
    text = "a" * 254 + "é" + "ü" * 200  # "é" would straddle the 255-octet boundary
    chunks = txt_strings(text)
    assert "".join(chunks) == text
    assert chunks[0] == "a" * 254
    assert all(len(chunk.encode()) <= 255 for chunk in chunks)
    assert [len(chunk.encode()) for chunk in txt_strings("😀" * 64)] == [252, 4]


def test_bind_output_loads_in_named_checkzone(tmp_path: Path) -> None:
    records = [
        DnsRecord("example.test", "MX", "10 mail.example.test", True, "mail is delivered here"),
        DnsRecord("example.test", "TXT", "v=spf1 mx ~all", True, "SPF authorises our server"),
        DnsRecord("sel1._domainkey.example.test", "TXT", DKIM_TEXT, True, "DKIM public key"),
        DnsRecord("quote.example.test", "TXT", TRICKY_TEXT, False, "escaping"),
        DnsRecord("autoconfig.example.test", "CNAME", "mail.example.test", False, "clients"),
        DnsRecord("mail6.example.test", "AAAA", "2001:db8::25", False, "IPv6 address", ttl=300),
        DnsRecord("25.2.0.192.example.test", "PTR", "mail.example.test", False, "reverse"),
    ]
    zone = load_with_bind(tmp_path, records)
    assert len(DKIM_TEXT) > 400
    assert txt_at(zone, "sel1._domainkey.example.test") == [DKIM_TEXT.encode()]
    assert txt_at(zone, "quote.example.test") == [TRICKY_TEXT.encode()]
    assert txt_at(zone, "example.test") == [b"v=spf1 mx ~all"]
    mx = zone.find_rdataset("example.test.", dns.rdatatype.MX)
    assert [(rdata.preference, rdata.exchange.to_text()) for rdata in mx] == [
        (10, "mail.example.test.")
    ]
    cname = zone.find_rdataset("autoconfig.example.test.", dns.rdatatype.CNAME)
    assert [rdata.target.to_text() for rdata in cname] == ["mail.example.test."]
    assert zone.find_rdataset("mail6.example.test.", dns.rdatatype.AAAA).ttl == 300


def test_bind_text_layout() -> None:
    text = render_bind(
        [
            DnsRecord("example.test", "TXT", 'a "b" \\c', True, "why one"),
            DnsRecord("sel._domainkey.example.test", "TXT", "x" * 300, False, "why two"),
            DnsRecord("example.test", "MX", "10 mail.example.test", True, "why three"),
        ],
        header="generated for example.test",
    )
    lines = text.splitlines()
    assert lines[0] == "; generated for example.test"
    assert lines[1] == "; required: why one"
    assert lines[2] == 'example.test. 3600 IN TXT "a \\"b\\" \\\\c"'
    assert lines[3] == "; recommended: why two"
    assert lines[4] == f'sel._domainkey.example.test. 3600 IN TXT ( "{"x" * 255}"'
    assert lines[5] == f'\t"{"x" * 45}" )'
    assert lines[6:] == ["; required: why three", "example.test. 3600 IN MX 10 mail.example.test."]


def test_non_ascii_and_controls_become_decimal_escapes() -> None:
    line = render_bind([DnsRecord("example.test", "TXT", "é\n", True, "r")]).splitlines()[1]
    assert line.endswith('"\\195\\169\\010"')
    assert line.isascii()


@pytest.mark.parametrize(
    ("name", "rdtype", "value", "reason"),
    [
        ("Example.test", "TXT", "x", "r"),
        ("example.test.", "TXT", "x", "r"),
        ("bad name.test", "TXT", "x", "r"),
        ("example.test", "SRV", "x", "r"),
        ("example.test", "TXT", "x", "two\nlines"),
        ("example.test", "MX", "mail.example.test", "r"),
        ("example.test", "MX", "70000 mail.example.test", "r"),
        ("example.test", "MX", "10 mail.example.test.", "r"),
        ("www.example.test", "CNAME", "target.test.", "r"),
        ("example.test", "A", "2001:db8::1", "r"),
        ("example.test", "AAAA", "fe80::1%eth0", "r"),
    ],
)
def test_record_refuses_values_that_would_break_a_zone(
    name: str, rdtype: str, value: str, reason: str
) -> None:
    with pytest.raises(ValueError):
        DnsRecord(name, rdtype, value, True, reason)


def test_table_prints_short_values_inline_and_long_ones_whole() -> None:
    records = [
        DnsRecord("example.test", "MX", "10 mail.example.test", True, "r"),
        DnsRecord("sel1._domainkey.example.test", "TXT", DKIM_TEXT, False, "r"),
    ]
    lines = render_table(records).splitlines()
    assert lines[0].split() == ["LABEL", "TYPE", "NAME", "VALUE"]
    assert lines[1].split() == ["required", "MX", "example.test", "10", "mail.example.test"]
    # columns line up: the value column starts at the same offset on every row
    assert lines[0].index("VALUE") == lines[1].index("10 mail") == lines[2].index("(value")
    assert lines[2].startswith("recommended  TXT ")
    assert lines[3] == "    " + DKIM_TEXT


def test_records_json_adds_strings_for_txt_only() -> None:
    records = [
        DnsRecord("sel1._domainkey.example.test", "TXT", DKIM_TEXT, True, "key"),
        DnsRecord("example.test", "MX", "10 mail.example.test", False, "mx", ttl=60),
    ]
    txt, mx = records_json(records)
    assert txt["strings"] == txt_strings(DKIM_TEXT)
    assert "".join(txt["strings"]) == DKIM_TEXT  # type: ignore[arg-type]
    assert mx == {
        "name": "example.test",
        "type": "MX",
        "value": "10 mail.example.test",
        "ttl": 60,
        "required": False,
        "reason": "mx",
    }
