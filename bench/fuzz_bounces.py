"""Fuzz the bounce parser with mutations of the shared corpus: no exception, no case over 1 s.

Contract (`.venv/bin/python bench/fuzz_bounces.py [--cases N] [--seed S] [--limit-s L]
[--case I] [--json]`, from the repository root, with `../shared/corpora/bounces`
beside the checkout): runs N cases (default 100,000) of
`tests/fakes/hostile_bounces.Mutator`, each derived from (seed, index) alone, so
that any case can be replayed: `--case I` runs that one and prints what was done
to which corpus file. Mutations: byte flips, truncation, deleted and repeated
spans, splices of two files, huge repeats of tokens (encoded words, blanks, "@",
boundaries, "<script", brackets, folded lines...), nesting, header floods, long
header lines and MIME parameter lists; most cases are small, some reach a
megabyte. Each case is parsed by `parse_bounce` (one thread, in-process) and
timed in thread CPU time, which the machine's other load does not inflate, and
in wall time.

Prints the cases per second, the verdict kinds, the hard caps hit, the CPU time
per case (median, 99th percentile, maximum), the ten slowest cases with what
was done to them, and every failure: an exception out of `parse_bounce` or its
last-resort handler's "bounce parse failed" (with the exception it logged).
Progress goes to stderr when it is a terminal. Exit status 1 when a case failed
or took more than `--limit-s` (default 1.0) of CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fakes.hostile_bounces import Mutator, corpus_files, parse_observed  # noqa: E402

from postroom.mta.bounce.parse import shipped_classifier  # noqa: E402

SLOWEST_SHOWN = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases to run (100,000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the run (1)")
    parser.add_argument("--limit-s", type=float, default=1.0, help="CPU limit per case (1.0)")
    parser.add_argument("--case", type=int, help="run only this case of the seed, and show it")
    parser.add_argument("--json", action="store_true", help="figures as one JSON object")
    args = parser.parse_args()
    files = corpus_files()
    if not files:
        print(f"no corpus under {REPO.parent / 'shared'}: put shared/ beside the checkout")
        return 2
    mutator = Mutator(files)
    shipped_classifier()  # loaded once, outside every case's time
    if args.case is not None:
        what, data = mutator.case(args.seed, args.case)
        seen = parse_observed(data)
        print(f"case {args.case} of seed {args.seed}: {what}, {len(data)} bytes")
        print(f"  {seen.cpu_s:.3f}s CPU, kind {seen.kind}, caps {list(seen.caps)}")
        print(f"  failure: {seen.failure or 'none'}")
        return 1 if seen.failure or seen.cpu_s > args.limit_s else 0

    kinds: Counter[str] = Counter()
    caps: Counter[str] = Counter()
    cpu: list[float] = []
    slowest: list[tuple[float, float, int, str, int]] = []
    failures: list[tuple[int, str, str]] = []
    total_bytes = 0
    progress = sys.stderr.isatty()
    started = time.perf_counter()
    for index in range(args.cases):
        what, data = mutator.case(args.seed, index)
        seen = parse_observed(data)
        total_bytes += len(data)
        kinds[seen.kind] += 1
        caps.update(seen.caps)
        cpu.append(seen.cpu_s)
        slowest.append((seen.cpu_s, seen.wall_s, index, what, len(data)))
        if len(slowest) > 4 * SLOWEST_SHOWN:
            slowest = sorted(slowest, reverse=True)[:SLOWEST_SHOWN]
        if seen.failure:
            failures.append((index, what, seen.failure))
        if progress and index % 500 == 499:
            rate = (index + 1) / (time.perf_counter() - started)
            print(
                f"\r{index + 1:,}/{args.cases:,} cases, {rate:.0f}/s, {len(failures)} failures",
                end="",
                file=sys.stderr,
            )
    elapsed = time.perf_counter() - started
    if progress:
        print(file=sys.stderr)
    slowest = sorted(slowest, reverse=True)[:SLOWEST_SHOWN]
    over = sum(seconds > args.limit_s for seconds in cpu)
    figures = {
        "cases": args.cases,
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "cases_per_s": round(args.cases / elapsed, 1),
        "mean_bytes": round(total_bytes / max(1, args.cases)),
        "kinds": dict(kinds.most_common()),
        "caps": dict(caps.most_common()),
        "cpu_median_ms": round(1000 * statistics.median(cpu), 2),
        "cpu_p99_ms": round(1000 * sorted(cpu)[int(0.99 * (len(cpu) - 1))], 2),
        "cpu_max_ms": round(1000 * max(cpu), 2),
        "over_limit": over,
        "failures": len(failures),
        "slowest": [
            {"case": i, "cpu_s": round(c, 3), "wall_s": round(w, 3), "bytes": n, "what": what}
            for c, w, i, what, n in slowest
        ],
        "failed": [{"case": i, "what": what, "failure": f} for i, what, f in failures],
    }
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        _print(figures, args.limit_s)
    return 1 if failures or over else 0


def _print(figures: dict, limit_s: float) -> None:  # type: ignore[type-arg]
    print(
        f"bounce parser fuzz, seed {figures['seed']}: {figures['cases']:,} cases in "
        f"{figures['seconds']}s, {figures['cases_per_s']} cases/s "
        f"(mean input {figures['mean_bytes']:,} bytes)"
    )
    print("verdict kinds: " + ", ".join(f"{k} {n:,}" for k, n in figures["kinds"].items()))
    print("hard caps hit: " + (", ".join(f"{k} {n:,}" for k, n in figures["caps"].items()) or "-"))
    print(
        f"CPU per case: median {figures['cpu_median_ms']} ms, 99th percentile "
        f"{figures['cpu_p99_ms']} ms, max {figures['cpu_max_ms']} ms; "
        f"over {limit_s}s: {figures['over_limit']}"
    )
    print(f"slowest {len(figures['slowest'])} (replay one with --case N):")
    for row in figures["slowest"]:
        print(
            f"  case {row['case']}: {row['cpu_s']:.3f}s CPU ({row['wall_s']:.3f}s wall), "
            f"{row['bytes']:,} bytes, {row['what']}"
        )
    print(f"failures: {figures['failures']}")
    for row in figures["failed"]:
        print(f"  case {row['case']}: {row['what']}: {row['failure']}")


if __name__ == "__main__":
    sys.exit(main())
