"""Files made by a root CLI go to the owner of the state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postroom.core.ownership import hand_to_state_owner, tree

NOBODY = 65534


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "mail" / "example.test" / "alice" / "new").mkdir(parents=True)
    (state / "mail" / "example.test" / "alice" / "maildirsize").write_text("0S\n")
    return state


def test_root_hands_new_files_to_the_state_owner(state: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (make test runs as root)")
    os.chown(state, NOBODY, NOBODY)
    maildir = state / "mail" / "example.test" / "alice"
    hand_to_state_owner(tree(maildir), state)
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in tree(maildir)}
    assert owners == {(NOBODY, NOBODY)}
    assert (state / "mail").stat().st_uid == 0  # only the paths given


def test_a_root_owned_state_directory_changes_nothing(state: Path) -> None:
    maildir = state / "mail" / "example.test" / "alice"
    before = {p: p.stat().st_uid for p in tree(maildir)}
    hand_to_state_owner(tree(maildir), state)
    assert {p: p.stat().st_uid for p in tree(maildir)} == before
    assert len(before) == 3  # alice/, new/, maildirsize
