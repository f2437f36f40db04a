"""Audiences at scale: count and list ~300,000 of 1,000,000 contacts, SQLite and PostgreSQL.

Contract (`.venv/bin/python bench/audience.py [--contacts N] [--repeat R]
[--only sqlite|postgresql]`, from the repo root): builds, in each database, one
project with N contacts (default 1,000,000) in 20 lists (each contact on 5 of
them), with 3 variables (`score` a number, `city` a text, `signup` a date), a
stage and a registration date; rows go in with the drivers' bulk paths
(SQLite: executemany in one transaction; PostgreSQL: COPY) and the tables are
analysed, as autovacuum would. Then, R times, for the audience
`--list l00 --list l01 --exclude-list l02 --var 'score >= 5'
--registered-after 2023-02-01 --registered-before 2024-12-15` (about 30 % of
the contacts):
- count: `count_matched` (one COUNT over the audience query);
- list: every matched row, from one query read in batches (SQL only);
- recipients: `recipients()`, the producer's stream (validator, dedupe).
Prints the population build time and each figure's median. PostgreSQL is a
throwaway cluster started like the tests' (`tests/peers/postgres.py`).

Previews (`--previews N`, default 2,000; `--only previews` runs only them): the
per-message cost of what `campaign preview` and the producer do for each
contact, the tests' newsletter (personalisation, CSS to inline, two buttons,
one of them a channel), an RSA-2048 DKIM key: render
(Jinja sandbox, buttons, derived text), MIME build (CSS inlined, footer,
headers, QP/base64 parts), DKIM (parse, canonicalise, sign). Prints the median
µs per message of each step over R runs and the previews per second of one
core. No peer exists for any of this, so there is no ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.peers

from sqlalchemy import Engine, insert, text

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.campaign.audience import AudienceFilter, VarCondition, audience_query
from postroom.campaign.audience_report import count_matched, recipients
from postroom.campaign.contact_fields import variable_rows
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import contacts, projects

LISTS = 20
LISTS_PER_CONTACT = 5
PAGE_ROWS = 5000
CITIES = ("Berlin", "Paris", "Moscow", "Oslo", "Lisbon", "Madrid", "Rome", "Vienna")
STAGES = ("lead", "customer", "churned")
START = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
DAY_S = 86_400
AUDIENCE = AudienceFilter(
    lists=("l00", "l01"),
    exclude_lists=("l02",),
    variables=(VarCondition("score", ">=", "5"),),
    registered_after="2023-02-01",
    registered_before="2024-12-15",
)
CONTACT_COLUMNS = (
    "id", "project_id", "address", "rating", "blocked", "blocked_cause", "source", "created_at",
    "updated_at", "name", "variables", "stage", "state", "registered_at",
)  # fmt: skip


def population(count: int, project_id: int, seed: int = 5) -> Iterator[tuple[str, list]]:
    """(table, rows) chunks: contacts, their variables and list memberships (ids 1..count)."""
    rng = random.Random(seed)
    for start in range(0, count, 50_000):
        contact_rows, variable_rows_, member_rows = [], [], []
        for contact_id in range(start + 1, min(start + 50_000, count) + 1):
            variables = {
                "score": str(rng.randrange(100)),
                "city": rng.choice(CITIES),
                "signup": time.strftime(
                    "%Y-%m-%d", time.gmtime(START + rng.randrange(700) * DAY_S)
                ),
            }
            registered = START + rng.randrange(730) * DAY_S + rng.randrange(DAY_S)
            contact_rows.append(
                (contact_id, project_id, f"user{contact_id}@bench{contact_id % 97}.test",
                 rng.randint(5, 10), 0, "", "import", registered, registered, f"User {contact_id}",
                 json.dumps(variables), rng.choice(STAGES), "", registered)
            )  # fmt: skip
            variable_rows_ += [
                (row["contact_id"], row["name"], row["value"], row["number"], row["moment"])
                for row in variable_rows(contact_id, variables)
            ]
            member_rows += [
                (list_id, contact_id)
                for list_id in rng.sample(range(1, LISTS + 1), LISTS_PER_CONTACT)
            ]
        yield "contacts", contact_rows
        yield "contact_variables", variable_rows_
        yield "list_members", member_rows


COLUMNS = {
    "contacts": CONTACT_COLUMNS,
    "contact_variables": ("contact_id", "name", "value", "number", "moment"),
    "list_members": ("list_id", "contact_id"),
}


def build(engine: Engine, count: int) -> tuple[int, float]:
    started = time.monotonic()
    with engine.begin() as conn:
        project_id = conn.execute(
            insert(projects).values(name="bench", created_at=0.0).returning(projects.c.id)
        ).scalar_one()
        for index in range(LISTS):
            conn.execute(
                text("INSERT INTO lists (id, project_id, name, created_at) VALUES (:i, :p, :n, 0)"),
                {"i": index + 1, "p": project_id, "n": f"l{index:02d}"},
            )
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for table, rows in population(count, project_id):
            columns = COLUMNS[table]
            if engine.dialect.name == "postgresql":
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * len(columns))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return project_id, time.monotonic() - started


def list_matched(engine: Engine, project_id: int) -> int:
    """Every matched row, read in batches from one query by id (the producer's path), SQL only."""
    with engine.connect() as conn:
        query = audience_query(conn, project_id, AUDIENCE).order_by(contacts.c.id)
        with conn.execution_options(yield_per=PAGE_ROWS).execute(query) as result:
            return sum(1 for _ in result)


def count(engine: Engine, project_id: int) -> int:
    with engine.connect() as conn:
        return count_matched(conn, project_id, AUDIENCE)


def stream_recipients(engine: Engine, project_id: int) -> int:
    validator = Validator(ValidationPolicy(dns=False))
    with engine.connect() as conn:
        return sum(len(batch) for batch in recipients(conn, project_id, AUDIENCE, validator))


MEASURES: list[tuple[str, Callable[[Engine, int], int]]] = [
    ("count", count),
    ("list", list_matched),
    ("recipients", stream_recipients),
]


def previews(count: int, repeat: int) -> None:
    """The tests' newsletter (tests/fakes/campaign_mail.py: a non-ASCII subject, two
    variables, CSS to inline, two buttons, one a channel) for `count` contacts."""
    from tests.fakes.campaign_mail import context, links, newsletter

    from postroom.campaign.message import (
        build_campaign_message,
        campaign_feedback_id,
        campaign_list_id,
    )
    from postroom.campaign.render import compile_template
    from postroom.mailbox.dkim_keys import KeyAlgorithm, generate_key
    from postroom.mta.signing.dkim import SigningKey, load_private_key, parse_message, sign_headers

    template = compile_template(newsletter())
    generated = generate_key(KeyAlgorithm.RSA)
    private = load_private_key(KeyAlgorithm.RSA, generated.private_pem)
    key = SigningKey("shop.test", "s1", KeyAlgorithm.RSA, private)
    rng = random.Random(3)
    contexts = [
        context(rng.choice(("Ann", "Zoë", "Jürgen", "Ольга")), rng.choice(CITIES))
        for _ in range(count)
    ]
    steps: dict[str, list[float]] = {"render": [], "mime": [], "dkim": []}
    for _ in range(repeat):
        spent = dict.fromkeys(steps, 0.0)
        for index, each in enumerate(contexts):
            started = time.perf_counter()
            rendered = template.render(each)
            built = time.perf_counter()
            message = build_campaign_message(
                rendered,
                from_name=each.sender.name,
                from_address=each.sender.address,
                to_address=each.contact.email,
                message_id=f"<{index}.c42@shop.test>",
                date=time.time(),
                unsubscribe=links(contact_id=index + 1),
                list_id=campaign_list_id("acme", 42, "shop.test"),
                feedback_id=campaign_feedback_id(1, 42),
            )
            signing = time.perf_counter()
            headers, body = parse_message(message)
            sign_headers(headers, body, [key])
            done = time.perf_counter()
            spent["render"] += built - started
            spent["mime"] += signing - built
            spent["dkim"] += done - signing
        for step, seconds in spent.items():
            steps[step].append(seconds / count * 1e6)
    medians = {step: statistics.median(values) for step, values in steps.items()}
    total = sum(medians.values())
    print(
        f"previews: {count:,} messages x {repeat}: render {medians['render']:.0f} µs, "
        f"MIME build {medians['mime']:.0f} µs, DKIM {medians['dkim']:.0f} µs per message "
        f"(medians) → {1e6 / total:,.0f} previews/s on one core"
    )


def bench(name: str, url: str, contacts_count: int, repeat: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    project_id, built_s = build(engine, contacts_count)
    print(f"{name}: population of {contacts_count:,} contacts built in {built_s:.1f} s")
    for label, measure in MEASURES:
        times, result = [], 0
        for _ in range(repeat):
            started = time.monotonic()
            result = measure(engine, project_id)
            times.append(time.monotonic() - started)
        median = statistics.median(times)
        print(
            f"{name}: {label:10} {result:>9,} contacts  median {median * 1000:8.0f} ms"
            f"  ({result / median:,.0f} contacts/s)"
        )
    engine.dispose()


@contextmanager
def postgres() -> Iterator[str]:
    from tests.peers.postgres import PostgresServer

    with PostgresServer(database="postroom_bench") as server:
        yield server.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("sqlite", "postgresql", "previews"))
    parser.add_argument("--previews", type=int, default=2000, help="messages per run")
    args = parser.parse_args()
    if args.only in (None, "previews"):
        previews(args.previews, args.repeat)
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="postroom-audience-bench-") as directory:
            bench("sqlite", f"sqlite:///{directory}/bench.db", args.contacts, args.repeat)
    if args.only in (None, "postgresql"):
        with postgres() as url:
            bench("postgresql", url, args.contacts, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
