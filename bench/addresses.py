"""Address validator throughput without the DNS step: addresses validated per second.

Purpose: measure `Validator.validate` (junk trimming, email-validator syntax,
TLD, typo, lookalike, disposable and role checks, duplicates) on a generated
list that looks like a real campaign import: mostly provider and company
addresses, plus typos, junk, display names, role accounts, disposable domains,
duplicates and broken entries in realistic shares. Each run uses a fresh
validator (cold per-domain cache, data files loaded outside the timing); the
median of the runs is printed.

Inputs: command-line options only (`--help`). Outputs: one line per run and
the median on stdout, or one JSON object with `--json`. No network, no DNS,
no external service; the list comes from a seeded generator, so runs repeat.

    .venv/bin/python bench/addresses.py                 # 100,000 addresses, 3 runs
    .venv/bin/python bench/addresses.py --count 10000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import time
from collections import Counter

from postroom.campaign.addresses import ValidationPolicy, Validator

FIRST_NAMES = (
    "ann",
    "bob",
    "carla",
    "dmitri",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kate",
    "liam",
    "maria",
    "nina",
    "oscar",
    "priya",
    "quentin",
    "rosa",
    "sven",
    "tanya",
    "umar",
    "vera",
    "wei",
    "xenia",
    "yusuf",
    "zoe",
    "олег",
    "josé",
    "françois",
    "müller",
)
LAST_NAMES = (
    "smith",
    "garcia",
    "ivanov",
    "chen",
    "kowalski",
    "nguyen",
    "schmidt",
    "rossi",
    "dubois",
    "tanaka",
    "silva",
    "jensen",
    "murphy",
    "novak",
    "haddad",
    "okafor",
    "larsen",
    "petrov",
)
PROVIDERS = (
    ("gmail.com", 30),
    ("yahoo.com", 8),
    ("hotmail.com", 8),
    ("outlook.com", 6),
    ("icloud.com", 4),
    ("aol.com", 2),
    ("mail.ru", 3),
    ("yandex.ru", 3),
    ("gmx.de", 2),
    ("web.de", 2),
    ("live.com", 2),
    ("protonmail.com", 1),
    ("qq.com", 2),
    ("163.com", 1),
    ("orange.fr", 1),
    ("libero.it", 1),
    ("comcast.net", 1),
    ("btinternet.com", 1),
)
COMPANY_WORDS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "vandelay",
    "dunder",
    "prestige",
    "oscorp",
    "gringotts",
)
COMPANY_TLDS = ("com", "net", "org", "de", "fr", "co.uk", "io", "nl", "ru", "com.br", "ch")
DISPOSABLE = ("mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com")
ROLES = ("info", "sales", "postmaster", "noreply", "admin", "support", "abuse")
BROKEN = ("ann.example.com", "ann@@example.com", "ann@", "@example.com", "ann lee@x.com", "")


def typo_of(domain: str, rng: random.Random) -> str:
    name, _, tld = domain.partition(".")
    slip = rng.randrange(4)
    position = rng.randrange(1, len(name))
    if slip == 0 and len(name) > 2:  # swap two letters
        name = name[: position - 1] + name[position] + name[position - 1] + name[position + 1 :]
    elif slip == 1:  # drop one
        name = name[:position] + name[position + 1 :]
    elif slip == 2:  # double one
        name = name[:position] + name[position] + name[position:]
    else:  # mistype the TLD
        tld = rng.choice(("con", "cmo", "comm", "cm", "co")) if tld == "com" else tld + "r"
    return f"{name}.{tld}"


def junk_around(address: str, rng: random.Random) -> str:
    return rng.choice(
        (
            f"  {address} ",
            f"{address},",
            f"<{address}>",
            f'"Ann Example" <{address}>',
            f"mailto:{address}",
            f"\ufeff{address}",
            f"{address}\u00a0;",
        )
    )


def generate(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    provider_domains = [domain for domain, _ in PROVIDERS]
    provider_weights = [weight for _, weight in PROVIDERS]
    addresses: list[str] = []
    while len(addresses) < count:
        roll = rng.random()
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = rng.choice((f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", first))
        if rng.random() < 0.7:
            local += str(rng.randrange(1, 10_000))
        if rng.random() < 0.05:
            local = local.capitalize()
        if roll < 0.55:
            domain = rng.choices(provider_domains, provider_weights)[0]
        else:
            word = rng.choice(COMPANY_WORDS) + rng.choice(("", "-group", "corp", "labs", ""))
            suffix = "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(0, 3)))
            domain = f"{word}{suffix}.{rng.choice(COMPANY_TLDS)}"
        address = f"{local}@{domain}"
        kind = rng.random()
        if kind < 0.03:
            address = f"{local}@{typo_of(rng.choices(provider_domains, provider_weights)[0], rng)}"
        elif kind < 0.06:
            address = junk_around(address, rng)
        elif kind < 0.07:
            address = f"{rng.choice(ROLES)}@{domain}"
        elif kind < 0.08:
            address = f"{local}@{rng.choice(DISPOSABLE)}"
        elif kind < 0.09:
            address = rng.choice(BROKEN)
        elif kind < 0.14 and addresses:
            address = rng.choice(addresses).upper()  # a repeat, in another case
        addresses.append(address)
    return addresses


def run_once(addresses: list[str]) -> tuple[float, Counter[str]]:
    validator = Validator(ValidationPolicy(dns=False))
    started = time.perf_counter()
    results = asyncio.run(validator.validate(addresses))
    elapsed_s = time.perf_counter() - started
    return elapsed_s, Counter(item.verdict for item in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000, help="addresses per run")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the generated list")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()
    addresses = generate(options.count, options.seed)
    rates: list[float] = []
    verdicts: Counter[str] = Counter()
    for run in range(1, max(1, options.runs) + 1):
        elapsed_s, verdicts = run_once(addresses)
        rates.append(len(addresses) / elapsed_s)
        if not options.json:
            print(
                f"run {run}: {len(addresses)} addresses in {elapsed_s:.2f} s "
                f"= {rates[-1]:,.0f} addresses/s"
            )
    median = statistics.median(rates)
    if options.json:
        print(
            json.dumps(
                {
                    "addresses": len(addresses),
                    "runs": rates,
                    "median_per_s": median,
                    "verdicts": dict(verdicts),
                }
            )
        )
    else:
        print(f"verdicts: {dict(sorted(verdicts.items()))}")
        print(f"median: {median:,.0f} addresses/s (no DNS step)")


if __name__ == "__main__":
    main()
