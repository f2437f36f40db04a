"""The README and bench/README.md say what the Makefile does (issue 12: they disagreed).

- The README opens with exactly the two set-up commands, `make run` and `make test`.
- Every benchmark `make bench` runs is named where each README says what it runs.
- Every swaks command in the README gives `--from`: swaks's default sender, root@ the
  host name, is refused (553 5.1.2) on a host whose name has no dot.
Pure text checks of the repository's own files.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BENCH_README = (REPO / "bench" / "README.md").read_text()


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target (tab-indented lines after `target:`)."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def benchmarks_make_runs() -> list[str]:
    """`relay.py`, `relay.py --sign`, ...: each bench/*.py command of `make bench`."""
    found = []
    for line in make_recipe("bench"):
        match = re.search(r"bench/(\S+\.py)((?: --[\w-]+)*)", line)
        if match:
            found.append(match.group(1) + match.group(2))
    return found


def paragraph_with(text: str, marker: str) -> str:
    [paragraph] = [p for p in text.split("\n\n") if marker in p]
    return " ".join(paragraph.split())


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make run", "make test"]


def test_both_readmes_name_every_benchmark_make_bench_runs() -> None:
    benchmarks = benchmarks_make_runs()
    assert any(b.startswith("relay.py") for b in benchmarks) and len(benchmarks) >= 5
    speed = paragraph_with(README, "`make bench` runs every benchmark")
    bench = paragraph_with(BENCH_README, "`make bench` installs those peers")
    for benchmark in benchmarks:
        assert f"{benchmark}`" in speed, f"README's Speed section omits {benchmark}"
        assert f"{benchmark}`" in bench, f"bench/README.md omits {benchmark}"


def test_every_swaks_example_gives_a_sender() -> None:
    joined = README.replace("\\\n", " ")  # shell line continuations
    commands = re.findall(r"swaks --[^`\n]*", joined)
    assert commands
    for command in commands:
        assert "--from " in command, command
