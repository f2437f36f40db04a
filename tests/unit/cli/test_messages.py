"""What the CLI says: warnings for names public DNS cannot serve (the output stays,
exit 0), one wording for files it cannot read, a refused --json/--format conflict,
and import reports that say what a fixed row became and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.cli.running import NOWHERE_DNS, run_cli, write_config

from postroom.cli.main import main


@pytest.mark.parametrize("hostname", ["localhost", "mailhost"])
def test_dns_self_warns_that_records_naming_a_local_hostname_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hostname: str
) -> None:
    config = write_config(tmp_path, hostname=hostname)
    status, out, err = run_cli(config, capsys, "dns", "self", "--format", "bind")
    assert status == 0
    assert f"IN MX 10 {hostname}." in out  # printed all the same
    (warning,) = err.splitlines()
    assert warning.startswith(f"postroom: warning: server.hostname {hostname!r} ")
    assert "cannot work" in warning and "public FQDN" in warning


def test_domain_dns_warns_about_the_mx_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hostname="localhost", extra=NOWHERE_DNS)
    for args in (["project", "add", "shop"], ["domain", "add", "shop.test", "--project", "shop"]):
        assert run_cli(config, capsys, *args)[0] == 0
    status, out, err = run_cli(config, capsys, "domain", "dns", "shop.test", "--json")
    assert status == 0
    assert {"name": "shop.test", "type": "MX"}.items() <= json.loads(out)[1].items()
    assert "server.hostname 'localhost' resolves only on this machine" in err


def test_a_public_hostname_gets_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hostname="mail.example.com")
    assert run_cli(config, capsys, "dns", "self")[2] == ""
    assert run_cli(config, capsys, "config", "check")[2] == ""


def test_config_check_warns_with_the_line_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hostname="localhost")
    status, out, err = run_cli(config, capsys, "config", "check")
    assert status == 0 and out.startswith(f"{config}: ok")
    assert err.startswith(f"postroom: warning: {config}:2: server.hostname 'localhost' ")
    assert "a production hostname must be a public FQDN whose A/AAAA" in err and "PTR" in err


@pytest.mark.parametrize(
    "args",
    [
        ["dns", "self", "--json", "--format", "bind"],
        ["dns", "self", "--format", "table", "--json"],
    ],
)
def test_json_and_another_format_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    config = write_config(tmp_path, hostname="mail.example.com")
    status, out, err = run_cli(config, capsys, *args)
    assert (status, out) == (2, "")
    chosen = args[args.index("--format") + 1]
    assert err == f"postroom: --json and --format {chosen} contradict each other: give one\n"


def test_json_alone_and_format_json_alone_print_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, hostname="mail.example.com")
    outputs = [
        run_cli(config, capsys, "dns", "self", *args)[1]
        for args in (["--json"], ["--format", "json"])
    ]
    assert outputs[0] == outputs[1] and isinstance(json.loads(outputs[0]), list)


@pytest.mark.parametrize(
    "args",
    [
        ["address", "check", "--no-dns", "--file", "{missing}"],
        ["bounce", "parse", "{missing}"],
        ["contact", "import", "{missing}", "--project", "shop", "--no-dns"],
        [
            "auth",
            "check",
            "{missing}",
            "--client-ip",
            "192.0.2.1",
            "--helo",
            "h.example.test",
            "--mail-from",
            "",
        ],
        ["config", "check", "-c", "{missing}"],
    ],
)
def test_a_file_that_cannot_be_read_is_named_in_one_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    missing = tmp_path / "missing.txt"
    config = write_config(tmp_path)
    status, _, err = run_cli(config, capsys, *[arg.format(missing=missing) for arg in args])
    assert status == 2
    assert err.endswith(f"{missing}: cannot read: No such file or directory\n"), err
    assert err.count("\n") == 1


def test_a_bounce_pattern_file_that_cannot_be_read_is_named_in_the_same_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "patterns.toml"
    config = write_config(tmp_path, extra=f'\n[bounce]\npatterns = ["{missing}"]\n')
    saved = tmp_path / "bounce.eml"
    saved.write_bytes(b"Subject: hello\r\n\r\nhi\r\n")
    status, _, err = run_cli(config, capsys, "bounce", "parse", str(saved))
    assert status == 2
    assert err == f"postroom: bounce patterns: {missing}: cannot read: No such file or directory\n"


def test_import_reports_what_a_fixed_row_became_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert run_cli(config, capsys, "project", "add", "shop")[0] == 0
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("email,name\r\nann@example.com,Ann\r\njohn@gmial.com,John\r\nx@@y,X\r\n")
    args = ["contact", "import", str(csv_file), "--project", "shop", "--no-dns"]
    status, out, err = run_cli(config, capsys, *args, "--apply-suggestions")
    assert status == 0, err
    assert "  line 3: fixed 'john@gmial.com' → 'john@gmail.com' (typo of gmail.com)\n" in out
    assert "  line 4: invalid 'x@@y': syntax\n" in out
    assert "imported 2 new contact(s)" in out
    status, out, _ = run_cli(config, capsys, *args, "--apply-suggestions", "--dry-run", "--json")
    fixed = json.loads(out)["problems"][0]
    assert (fixed["line"], fixed["category"], fixed["address"]) == (3, "fixed", "john@gmail.com")
    assert (fixed["reasons"], fixed["suggestion"]) == (["typo_domain"], "john@gmail.com")


def test_import_help_says_what_is_atomic(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["contact", "import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "import its valid rows in one transaction (all or none of them)" in text
    assert "invalid rows are reported, never imported" in text
