"""`make apt-update` (what `make run` and `make test` call through `debs`) waits while
another apt-get holds the package lists' lock, instead of failing at once: apt 2.6
(Debian 12) honours DPkg::Lock::Timeout for the dpkg lock of `install` but not for the
lists lock of `update`.

Real apt-get, pointed by APT_CONFIG at private lists and cache directories and an empty
sources list: nothing is fetched and the machine's own apt state is not touched. The
test holds the private lock (fcntl, as apt does) until make says it is waiting, then
releases it; make must then succeed.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
WAIT_TIMEOUT_S = 120.0


def private_apt(tmp_path: Path) -> dict[str, str]:
    lists, cache, parts = tmp_path / "lists", tmp_path / "cache", tmp_path / "sources.list.d"
    (lists / "partial").mkdir(parents=True)
    (cache / "archives" / "partial").mkdir(parents=True)
    parts.mkdir()
    (tmp_path / "sources.list").write_text("")
    config = tmp_path / "apt.conf"
    config.write_text(
        f'Dir::State::Lists "{lists}";\nDir::Cache "{cache}";\n'
        f'Dir::Etc::SourceList "{tmp_path / "sources.list"}";\n'
        f'Dir::Etc::SourceParts "{parts}";\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return {**env, "APT_CONFIG": str(config)}


def test_apt_update_waits_for_the_lists_lock(tmp_path: Path) -> None:
    env = private_apt(tmp_path)
    log_path = tmp_path / "make.log"
    with (tmp_path / "lists" / "lock").open("w") as lock, log_path.open("w") as log:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        make = subprocess.Popen(
            ["make", "-C", str(REPO), "--no-print-directory", "apt-update"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + WAIT_TIMEOUT_S
            while "waiting" not in log_path.read_text() and make.poll() is None:
                assert time.monotonic() < deadline, "make apt-update neither waited nor ended"
                time.sleep(0.1)
            assert make.poll() is None, f"failed instead of waiting:\n{log_path.read_text()}"
        except BaseException:
            make.kill()
            make.wait(10)
            raise
        fcntl.lockf(lock, fcntl.LOCK_UN)
        status = make.wait(WAIT_TIMEOUT_S)
    assert status == 0, log_path.read_text()
