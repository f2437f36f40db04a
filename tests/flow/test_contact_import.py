"""`postroom contact import` and `postroom address check` end to end: real files,
the real database, and for the DNS step a private NSD serving the test domains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers.dns import NsdServer, make_zone
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

CONTRACT_KEYS = {"input", "address", "verdict", "reasons", "suggestion", "duplicate_of"}
ZONES = {
    "good.test": make_zone("good.test", ["@ IN MX 10 mx.good.test.", "mx IN A 127.0.0.80"]),
    # A public-looking address: the validator treats loopback/private-only domains as no MX
    # (never contacted: this is DNS data only).
    "aonly.test": make_zone("aonly.test", ["@ IN A 1.2.3.4"]),
    "nullmx.test": make_zone("nullmx.test", ["@ IN MX 0 ."]),
    "nomail.test": make_zone("nomail.test", ['@ IN TXT "nothing here"']),
}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    directory = tmp_path_factory.mktemp("import")
    with NsdServer(ZONES) as nsd:
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=free_tcp_port(),
            nameserver=nsd.nameserver(),
            delivery_port=25,
        )
        server = PostroomServer(directory, text, 0)
        server.cli("project", "add", "acme")
        yield server


def report(server: PostroomServer, *args: str) -> dict:
    result = server.cli("contact", "import", *args, "--project", "acme", "--json", check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_the_template_is_an_importable_csv(appliance: PostroomServer, tmp_path: Path) -> None:
    template = appliance.cli("contact", "template").stdout
    assert template.splitlines()[0].startswith("email,name")
    dry = report(appliance, str(write(tmp_path / "t.csv", template)), "--dry-run", "--no-dns")
    assert dry["rows"] == 2 and dry["dry_run"] is True


def test_import_reports_every_row_and_imports_only_the_good_ones(
    appliance: PostroomServer, tmp_path: Path
) -> None:
    csv_text = (
        "\ufeffEmail;Name;City\r\n"
        "ann@good.test;Ann;Berlin\r\n"
        " <Carl@Good.test> , ;Carl;Rome\r\n"
        "bob@gmial.com;Bob;Paris\r\n"
        "name@;Nobody;\r\n"
        "ANN@good.test;Ann again;\r\n"
        "temp@mailinator.com;Temp;\r\n"
        "postmaster@good.test;Role;\r\n"
        "\r\n"
        "dora@aonly.test;Dora;Oslo\r\n"
        "eve@nullmx.test;Eve;\r\n"
        "fay@nomail.test;Fay;\r\n"
    )
    path = write(tmp_path / "contacts.csv", csv_text)
    dry = report(appliance, str(path), "--list", "spring", "--dry-run")
    assert (dry["encoding"], dry["delimiter"], dry["rows"]) == ("utf-8-sig", ";", 10)
    by_line = {p["line"]: p for p in dry["problems"]}
    assert by_line[3]["category"] == "fixed" and by_line[3]["address"] == "Carl@good.test"
    assert by_line[4]["category"] == "invalid" and by_line[4]["suggestion"] == "bob@gmail.com"
    assert by_line[5]["category"] == "invalid"
    assert by_line[6]["category"] == "duplicate" and by_line[6]["duplicate_of"]
    assert by_line[7]["category"] == "invalid" and "disposable" in by_line[7]["reasons"]
    assert by_line[8]["category"] == "risky" and "role_account" in by_line[8]["reasons"]
    assert 10 not in by_line  # an A record without MX is a valid mail domain (RFC 5321 5.1)
    assert by_line[11]["category"] == "invalid" and "null_mx" in by_line[11]["reasons"]
    assert by_line[12]["category"] == "invalid"
    assert dry["would_import"] == 3 and dry["imported"] == 0  # ann, carl, dora
    gone = appliance.cli("contact", "show", "ann@good.test", "--project", "acme", check=False)
    assert gone.returncode == 2  # a dry run imports nothing

    done = report(appliance, str(path), "--list", "spring", "--include-risky")
    assert done["imported"] == 4 and done["already_contacts"] == 0
    ann = appliance.cli_json("contact", "show", "ann@good.test", "--project", "acme")
    assert (ann["rating"], ann["source"], ann["blocked"]) == (7, "import", False)
    assert "contacts.csv line 2" in ann["events"][0]["detail"]
    gate = json.loads(
        appliance.cli(
            "rating", "gate", "--project", "acme", "--list", "spring", "--json", check=False
        ).stdout
    )
    assert gate["audience"] == 4

    again = report(appliance, str(path), "--list", "spring")
    assert again["imported"] == 0 and again["already_contacts"] == 3


def test_suggestions_are_applied_only_when_asked(appliance: PostroomServer, tmp_path: Path) -> None:
    path = write(tmp_path / "typo.csv", "email,name\r\nzed@gmial.com,Zed\r\n")
    plain = report(appliance, str(path), "--no-dns", "--dry-run")
    assert plain["would_import"] == 0 and plain["invalid"] == 1
    fixed = report(appliance, str(path), "--no-dns", "--apply-suggestions")
    assert fixed["imported"] == 1 and fixed["problems"][0]["address"] == "zed@gmail.com"
    assert appliance.cli_json("contact", "show", "zed@gmail.com", "--project", "acme")


def test_cp1251_and_tab_separated(appliance: PostroomServer, tmp_path: Path) -> None:
    path = write(tmp_path / "ru.csv", "email\tname\r\nivan@good.test\tИван Петров\r\n", "cp1251")
    done = report(appliance, str(path))
    assert (done["encoding"], done["delimiter"], done["imported"]) == ("cp1251", "\t", 1)
    ivan = appliance.cli_json("contact", "show", "ivan@good.test", "--project", "acme")
    assert ivan["address"] == "ivan@good.test"


def test_bad_files_are_one_line_exit_2_and_import_nothing(
    appliance: PostroomServer, tmp_path: Path
) -> None:
    no_email = write(tmp_path / "noemail.csv", "name,city\r\nAnn,Berlin\r\n")
    cases = [
        (("contact", "import", str(no_email), "--project", "acme"), "line 1: no 'email' column"),
        (("contact", "import", str(tmp_path / "absent.csv"), "--project", "acme"), "cannot read"),
        (
            (
                "contact",
                "import",
                str(write(tmp_path / "ok.csv", "email\r\nx@good.test\r\n")),
                "--project",
                "nobody",
                "--no-dns",
            ),
            "no project named",
        ),
    ]
    for args, message in cases:
        result = appliance.cli(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (
        appliance.cli("contact", "show", "x@good.test", "--project", "acme", check=False).returncode
        == 2
    )


def test_address_check_json_contract(appliance: PostroomServer) -> None:
    result = appliance.cli(
        "address",
        "check",
        "ann@good.test",
        "bob@gmial.com",
        "Ann@GOOD.test",
        "eve@nullmx.test",
        "--json",
        check=False,
    )
    assert result.returncode == 1, result.stderr  # an input is invalid: the answer is no
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    for verdict in verdicts:
        assert set(verdict) == {
            "input",
            "address",
            "verdict",
            "reasons",
            "suggestion",
            "duplicate_of",
        }
    assert [v["verdict"] for v in verdicts] == ["valid", "invalid", "duplicate", "invalid"]
    assert verdicts[1]["suggestion"] == "bob@gmail.com"
    assert verdicts[2]["duplicate_of"] == "ann@good.test"


def test_a_contact_added_by_hand_goes_through_the_validator(appliance: PostroomServer) -> None:
    typo = appliance.cli("contact", "add", "Bob@gmial.com", "--project", "acme", check=False)
    assert typo.returncode == 2 and "did you mean Bob@gmail.com?" in typo.stderr
    role = appliance.cli("contact", "add", "abuse@good.test", "--project", "acme", check=False)
    assert role.returncode == 2 and "--accept-risky" in role.stderr
    added = appliance.cli_json(
        "contact", "add", "abuse@good.test", "--project", "acme", "--accept-risky"
    )
    assert added["rating"] == 10
    hand = appliance.cli_json("contact", "add", " <Hand@Good.test> ", "--project", "acme")
    assert (hand["address"], hand["rating"], hand["source"]) == ("hand@good.test", 10, "manual")
