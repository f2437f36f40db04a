"""`postroom bounce parse FILE... --json`: the contract shape, one object per file,
with no config file at the default path (a pure parse needs no server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "bounces"
MAILDIR = CORPUS / "set-of-emails" / "maildir"


def postroom(*args: str, env_config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postroom.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"POSTROOM_CONFIG": env_config, "PATH": "/usr/bin:/bin"},
    )


def test_parse_prints_the_contract_shape(tmp_path: Path) -> None:
    assert MAILDIR.is_dir(), f"the shared corpus is missing: {CORPUS}"
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\x00\xff not a message at all \r\n--\r\n")
    files = [
        MAILDIR / "bsd" / "lhost-postfix-04.eml",
        MAILDIR / "bsd" / "arf-01.eml",
        MAILDIR / "not" / "is-not-bounce-02.eml",
        garbage,
    ]
    result = postroom(
        "bounce", "parse", *map(str, files), "--json", env_config=str(tmp_path / "absent.toml")
    )
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["file"] for v in verdicts] == [str(f) for f in files]
    for verdict in verdicts:
        assert set(verdict) == {"file", "is_bounce", "feedback_type", "recipients"}
        for recipient in verdict["recipients"]:
            assert set(recipient) == {"address", "action", "status", "reply_code", "reason", "hard"}
    postfix, arf, not_bounce, junk = verdicts
    assert postfix["is_bounce"] is True and postfix["recipients"][0]["hard"] is True
    assert arf["feedback_type"] == "abuse" and arf["recipients"][0]["reason"] == "feedback"
    assert arf["is_bounce"] is True
    assert not_bounce == {**not_bounce, "is_bounce": False, "recipients": []}
    assert junk["is_bounce"] is False and junk["recipients"] == []


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = postroom(
        "bounce", "parse", str(tmp_path / "nope.eml"), env_config=str(tmp_path / "absent.toml")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"postroom: {tmp_path / 'nope.eml'}: cannot read: No such file or directory"
    ]
