"""Contact import: wall time of `postroom contact import` on a generated CSV.

Contract (`.venv/bin/python bench/import_csv.py [--rows N] [--repeat R]`, from the
repo root): writes a CSV of N rows (email, name and two variable columns; about
2 % junk, typos and duplicates, like a real export), then runs the real command
`postroom contact import FILE --project bench --no-dns --json` against a fresh
SQLite state directory (production durability) R times, and prints each run's
wall time, rows per second and the median. No peer exists for this (Postfix has
no contact import), so there is no ratio; the issue's target is "100,000 rows
in seconds, not minutes". The DNS step is off because its cost is the network's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROVIDERS = ("gmail.com", "yahoo.com", "outlook.com", "mail.ru", "example.org", "shop.example")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    lines = ["email,name,city,plan"]
    previous = ""
    for index in range(rows):
        domain = rng.choice(PROVIDERS)
        address = f"user{index}.{rng.randrange(10**6)}@{domain}"
        roll = rng.random()
        if roll < 0.005:
            address = f" <{address.upper()}> ,"  # junk to trim
        elif roll < 0.01:
            address = address.replace("gmail", "gmial")  # a typo
        elif roll < 0.02 and previous:
            address = previous.upper()  # the row before, in other case: a duplicate
        previous = address
        lines.append(f"{address},User {index},City {index % 97},plan{index % 3}")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def run_once(csv_path: Path, workdir: Path) -> tuple[float, dict]:
    state = workdir / f"state-{time.monotonic_ns()}"
    config = workdir / f"{state.name}.toml"
    config.write_text(f'[state]\ndir = "{state}"\n[logging]\nlevel = "warning"\n')
    cli = [sys.executable, "-m", "postroom.cli.main", "-c", str(config)]
    subprocess.run([*cli, "project", "add", "bench"], check=True, capture_output=True)
    started = time.monotonic()
    result = subprocess.run(
        [*cli, "contact", "import", str(csv_path), "--project", "bench", "--no-dns", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.monotonic() - started, json.loads(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postroom-import-bench-") as directory:
        workdir = Path(directory)
        csv_path = workdir / "contacts.csv"
        write_csv(csv_path, args.rows)
        times = []
        for run in range(1, args.repeat + 1):
            seconds, report = run_once(csv_path, workdir)
            times.append(seconds)
            print(
                f"run {run}: {args.rows} rows in {seconds:.2f} s "
                f"({args.rows / seconds:,.0f} rows/s)"
                f"  imported {report['imported']}, invalid {report['invalid']}, "
                f"duplicate {report['duplicate']}, fixed {report['fixed']}"
            )
    median = statistics.median(times)
    print(f"median: {median:.2f} s for {args.rows} rows ({args.rows / median:,.0f} rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
