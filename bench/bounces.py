"""Bounce parsing: postroom against Sisimai (Debian's libsisimai-perl), same corpus, same run.

Contract (`.venv/bin/python bench/bounces.py [--repeat R]`, from the repo root, with
`../shared/corpora/bounces` beside the checkout and `make bench` having installed
libsisimai-perl): both parsers read every message of the corpus (the Sisimai
set's LF files and flufl.bounce) and write their verdicts in the format of the
corpus's own scorer, `bounces/score.py`, which then scores each of them — so
the accuracy figures are the maintainers' metric, not ours. Speed: messages
parsed per second, median of `--repeat` runs (postroom in-process; Sisimai in
one `perl` process for the whole corpus, its start-up included, which is a
fraction of a second). Prints both, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postroom.mta.bounce.parse import parse_bounce

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "bounces"

# Sisimai 4.x: one JSON line per file, in the shape score.py reads (4.x has softbounce:
# 0 = hard, 1 = soft, -1 = unknown).
SISIMAI = r"""
use strict; use warnings; use Sisimai; use JSON::PP;
my $json = JSON::PP->new->canonical;
while (my $line = <STDIN>) {
    chomp $line; my ($name, $path) = split /\t/, $line;
    my $data = eval { Sisimai->make($path, 'delivered' => 1) } || [];
    my @results = map { {
        recipient => $_->recipient->address, status => $_->deliverystatus // '',
        reply_code => $_->replycode // '', reason => $_->reason // '',
        hardbounce => (($_->softbounce // 1) == 0) ? JSON::PP::true : JSON::PP::false,
    } } @$data;
    print $json->encode({ file => $name, results => \@results }), "\n";
}
"""


def corpus_files() -> list[tuple[str, Path]]:
    files = []
    for line in (CORPUS / "expectations.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("kind") == "crlf_variant":
            continue
        prefix = "set-of-emails" if entry["corpus"].startswith("sisimai") else "flufl-bounce"
        path = CORPUS / prefix / entry["file"]
        if path.exists():
            files.append((f"{prefix}/{entry['file']}", path))
    return files


def postroom_verdicts(files: list[tuple[str, Path]]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    verdicts = []
    for name, path in files:
        report = parse_bounce(path.read_bytes())
        verdicts.append(
            {
                "file": name,
                "results": [
                    {
                        "recipient": r.address,
                        "status": r.status,
                        "reply_code": r.reply_code,
                        "reason": str(r.reason),
                        "hardbounce": r.hard,
                    }
                    for r in report.recipients
                ],
            }
        )
    return verdicts, time.perf_counter() - started


def sisimai_verdicts(files: list[tuple[str, Path]]) -> tuple[list[dict], float]:
    feed = "".join(f"{name}\t{path}\n" for name, path in files)
    started = time.perf_counter()
    result = subprocess.run(
        ["perl", "-e", SISIMAI], input=feed, capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - started
    return [json.loads(line) for line in result.stdout.splitlines()], elapsed


def score(verdicts: list[dict], workdir: Path, name: str) -> str:
    path = workdir / f"{name}.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    result = subprocess.run(
        [sys.executable, str(CORPUS / "score.py"), str(CORPUS / "expectations.jsonl"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (CORPUS / "expectations.jsonl").exists():
        print(f"no corpus at {CORPUS}", file=sys.stderr)
        return 2
    files = corpus_files()
    have_sisimai = shutil.which("perl") is not None and (
        subprocess.run(["perl", "-MSisimai", "-e1"], capture_output=True).returncode == 0
    )
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.repeat):
        mine, seconds = postroom_verdicts(files)
        ours.append(seconds)
        if have_sisimai:
            other, other_seconds = sisimai_verdicts(files)
            theirs.append(other_seconds)
    with tempfile.TemporaryDirectory() as directory:
        print(f"corpus: {len(files)} messages ({CORPUS})")
        print("== postroom ==")
        print(score(mine, Path(directory), "postroom"))
        if have_sisimai:
            print("== Sisimai (Debian libsisimai-perl) ==")
            print(score(other, Path(directory), "sisimai"))
    ours_rate = len(files) / statistics.median(ours)
    print(f"postroom: {ours_rate:,.0f} messages/s (median of {args.repeat})")
    if have_sisimai:
        theirs_rate = len(files) / statistics.median(theirs)
        print(f"Sisimai:  {theirs_rate:,.0f} messages/s (median of {args.repeat})")
        print(f"speed ratio postroom/Sisimai: {ours_rate / theirs_rate:.1f}x")
    else:
        print("Sisimai not installed (make bench installs libsisimai-perl): no comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())
