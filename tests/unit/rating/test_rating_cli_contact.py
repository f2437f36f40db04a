"""`postroom contact ...` and `rating gate` through `main`: one line on stderr and
exit 2 for bad input, contacts found as they were stored (IDN, UTF-8 local
parts), an import refused before any row is validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.cli.running import run_cli

from postroom.cli import audience_cmd
from postroom.cli.main import main


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "postroom.toml"
    path.write_text(f'[server]\nhostname = "mx.example.test"\n[state]\ndir = "{tmp_path}/state"\n')
    assert main(["-c", str(path), "project", "add", "shop"]) == 0
    return str(path)


@pytest.mark.parametrize("address", ["zed@bücher.de", "üser@example.com"])
def test_a_contact_added_by_hand_can_be_shown_and_blocked(
    config: str, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    status, _, err = run_cli(
        config, capsys, "contact", "add", address, "--project", "shop", "--no-dns"
    )
    assert status == 0, err
    status, out, err = run_cli(config, capsys, "contact", "show", address, "--project", "shop")
    assert (status, err) == (0, ""), err
    assert out.startswith(f"{address} in shop: rating 10")
    status, out, err = run_cli(
        config, capsys, "contact", "block", f"<{address}>", "--project", "shop"
    )
    assert (status, err) == (0, "")
    assert "blocked (operator)" in out


@pytest.mark.parametrize("rating", ["0", "11", "-3", "99999999999999999999"])
def test_set_rating_out_of_range_is_one_line_and_exit_2(
    config: str, capsys: pytest.CaptureFixture[str], rating: str
) -> None:
    run_cli(config, capsys, "contact", "add", "ann@example.com", "--project", "shop", "--no-dns")
    status, out, err = run_cli(
        config, capsys, "contact", "set-rating", "ann@example.com", rating, "--project", "shop"
    )
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and "between 1 and 10" in err


def test_show_of_no_address_is_one_line_and_exit_2(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(config, capsys, "contact", "show", "nobody", "--project", "shop")
    assert status == 2 and err.count("\n") == 1 and "not an address" in err


@pytest.mark.parametrize(("list_name", "why"), [("", "empty"), ("x" * 200, "at most 128")])
def test_import_with_a_bad_list_name_is_refused_before_validation(
    config: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    list_name: str,
    why: str,
) -> None:
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("email\r\nann@example.com\r\n")

    def no_validation(*args: object) -> None:
        raise AssertionError("validated before the list name was checked")

    monkeypatch.setattr(audience_cmd, "_validator", no_validation)
    for project, expected in (("shop", why), ("nope", "no project named 'nope'")):
        status, out, err = run_cli(
            config,
            capsys,
            "contact",
            "import",
            str(csv_path),
            "--project",
            project,
            "--list",
            list_name if project == "shop" else "ok",
        )
        assert (status, out) == (2, "")
        assert err.count("\n") == 1 and expected in err, err
