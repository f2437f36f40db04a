"""CLI startup: what one `postroom` call costs before it does anything.

Purpose: operators script the CLI (`postroom queue stats` in a monitoring loop,
`address check` per signup), so every call pays the interpreter's start and
the imports. For `postroom --help`, `postroom queue stats` (a migrated SQLite
database, nothing queued) and `postroom config check`, each run `--runs` times
as a fresh process, this prints the median wall time (spawn to exit, a plain
run of the installed `postroom` script), the median CPU time of that run
(user + system: steadier than wall time on a shared machine) and the median
import time (a second run with `python -X importtime`, whose bookkeeping would
inflate the other figures: the sum of the top-level imports' cumulative times). Bytecode is cached
in a private PYTHONPYCACHEPREFIX, written by an uncounted first run, as an
installed package has it (even where PYTHONDONTWRITEBYTECODE is set). The
target: import time well under 200 ms for `--help` and `queue stats`.
`python -c "import sqlalchemy"` is measured the same way, for scale: what a
command that opens the database through SQLAlchemy pays before its work
(`queue stats` on SQLite at the current schema does not: db/readonly.py). Peer:
Postfix's `postconf -h mail_version` (reads main.cf and prints one value: the
start of a Postfix CLI call); the ratio is postroom's median wall time over
postconf's.

Inputs: command-line options only (`--help`). Outputs: a table on stdout, or
one JSON object with `--json`. Touches only a temporary directory; no network.

    .venv/bin/python bench/cli_startup.py              # 15 runs of each
    .venv/bin/python bench/cli_startup.py --runs 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMPORT_TARGET_MS = 200.0
TARGETED = ("--help", "queue stats")
COMMAND_TIMEOUT_S = 60.0

CONFIG = """\
[server]
hostname = "mail.example.com"

[state]
dir = "{state_dir}"
"""


@dataclass(frozen=True, slots=True)
class Subject:
    """One thing to start: `wall` is run as is; `python_args` (after `python -X
    importtime`) gives the import time, None when it is not a Python program."""

    label: str
    wall: list[str]
    python_args: list[str] | None


def bytecode_cached(directory: Path) -> dict[str, str]:
    """The environment of every measured process: bytecode read from (and the first
    time written to) `directory`, never to the source tree."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(directory)
    return env


def finished(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        command, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()}")
    return done


def timed_run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished(command, env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_time_ms(python_args: list[str], env: dict[str, str]) -> float:
    """The sum of the top-level imports' cumulative times `-X importtime` reports."""
    done = finished([sys.executable, "-X", "importtime", *python_args], env)
    total_us = 0
    for line in done.stderr.decode().splitlines():
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line.split("|", 2)
        # Nested imports are indented by two more spaces per level; the header is not a number.
        if cumulative.strip().isdigit() and not name.startswith("  "):
            total_us += int(cumulative)
    return total_us / 1000


def measure(subject: Subject, runs: int, env: dict[str, str]) -> dict[str, Any]:
    timed_run(subject.wall, env)  # compiles and caches the bytecode: not counted
    walls, cpus = zip(*(timed_run(subject.wall, env) for _ in range(runs)), strict=True)
    result: dict[str, Any] = {
        "command": subject.label,
        "wall_ms": round(statistics.median(walls) * 1000, 1),
        "cpu_ms": round(statistics.median(cpus) * 1000, 1),
    }
    if subject.python_args is not None:
        times = [import_time_ms(subject.python_args, env) for _ in range(runs)]
        result["import_ms"] = round(statistics.median(times), 1)
    return result


def postroom_script() -> list[str]:
    """The installed console script (what operators run), else the module."""
    script = Path(sys.executable).with_name("postroom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "postroom.cli.main"]


def postconf_subject(directory: Path) -> Subject | None:
    # /usr/sbin is not on every user's PATH.
    postconf = shutil.which("postconf", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if postconf is None:
        return None
    # Its own config directory: the machine's Postfix may have none.
    directory.mkdir()
    (directory / "main.cf").write_text("", encoding="utf-8")
    (directory / "master.cf").write_text("", encoding="utf-8")
    command = [postconf, "-c", str(directory), "-h", "mail_version"]
    return Subject("postconf -h mail_version", command, None)


def run(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="postroom-cli-bench-") as name:
        directory = Path(name)
        config = directory / "postroom.toml"
        config.write_text(CONFIG.format(state_dir=directory / "state"), encoding="utf-8")
        env = bytecode_cached(directory / "pycache")
        script = postroom_script()
        # Migrated, as in production: `queue stats` then needs no Alembic.
        finished([*script, "-c", str(config), "db", "upgrade"], env)
        results = []
        for label, arguments in (
            ("--help", ["--help"]),
            ("queue stats", ["-c", str(config), "queue", "stats"]),
            ("config check", ["-c", str(config), "config", "check"]),
        ):
            module = ["-m", "postroom.cli.main", *arguments]
            results.append(measure(Subject(label, [*script, *arguments], module), runs, env))
        floor = ["-c", "import sqlalchemy"]
        sqlalchemy = Subject("import sqlalchemy", [sys.executable, *floor], floor)
        summary: dict[str, Any] = {
            "runs": runs,
            "postroom": results,
            "sqlalchemy": measure(sqlalchemy, runs, env),
        }
        peer = postconf_subject(directory / "postfix")
        if peer is not None:
            summary["postconf"] = peer_result = measure(peer, runs, env)
            summary["ratio_wall_postroom_over_postconf"] = {
                result["command"]: round(result["wall_ms"] / peer_result["wall_ms"], 2)
                for result in results
            }
    summary["import_target_met"] = all(
        result["import_ms"] < IMPORT_TARGET_MS
        for result in results
        if result["command"] in TARGETED
    )
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print(f"medians of {summary['runs']} runs")
    print(f"{'command':28} {'wall ms':>8} {'CPU ms':>7} {'import ms':>10} {'wall x postconf':>16}")
    ratios = summary.get("ratio_wall_postroom_over_postconf", {})
    for result in summary["postroom"]:
        ratio = ratios.get(result["command"])
        shown = f"{ratio:.2f}x" if ratio is not None else "-"
        print(
            f"{'postroom ' + result['command']:28} {result['wall_ms']:8.1f} "
            f"{result['cpu_ms']:7.1f} {result['import_ms']:10.1f} {shown:>16}"
        )
    floor = summary["sqlalchemy"]
    label = f"python -c '{floor['command']}'"
    print(f"{label:28} {floor['wall_ms']:8.1f} {floor['cpu_ms']:7.1f} {floor['import_ms']:10.1f}")
    if "postconf" in summary:
        peer = summary["postconf"]
        print(f"{peer['command']:28} {peer['wall_ms']:8.1f} {peer['cpu_ms']:7.1f}")
    else:
        print("postconf not found (Debian package postfix): no peer figure")
    met = "met" if summary["import_target_met"] else "NOT met"
    print(f"target import time < {IMPORT_TARGET_MS:.0f} ms for {' and '.join(TARGETED)}: {met}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    summary = run(args.runs)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0  # a missed target is a figure to read, not a failed run (make bench goes on)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
