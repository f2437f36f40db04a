"""The bounce parser under 3,000 mutations of the shared corpus: no exception, no case
over 1 s of CPU (issue 12, item 1).

The cases are bench/fuzz_bounces.py's first 3,000 of seed 1 (the bench runs
100,000 and replays any one with `--case N`). They took 8 s on the 2-core
development machine at load 5 (300 to 400 cases per second); times are the
parse thread's CPU time, which the machine's other load does not inflate.
Before the caps, 13 of the first 600 cases ended in the parser's last-resort
handler (RecursionError, AttributeError) and one took 4.4 s.
"""

from __future__ import annotations

import pytest
from tests.fakes.hostile_bounces import Mutator, corpus_files, parse_observed

from postroom.mta.bounce.parse import shipped_classifier

CASES = 3_000
SEED = 1
CPU_LIMIT_S = 1.0


def test_mutated_bounces_parse_without_exception_and_fast() -> None:
    files = corpus_files()
    if not files:
        pytest.fail("bounce corpus missing: shared/ must sit beside the checkout, as in CI")
    mutator = Mutator(files)
    shipped_classifier()  # loaded once, outside the cases' time
    failures, slow = [], []
    for index in range(CASES):
        what, data = mutator.case(SEED, index)
        seen = parse_observed(data)
        if seen.failure:
            failures.append(f"case {index} ({what}): {seen.failure}")
        if seen.cpu_s > CPU_LIMIT_S:
            slow.append(f"case {index} ({what}): {seen.cpu_s:.2f}s")
    assert failures == []
    assert slow == []
