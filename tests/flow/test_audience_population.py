"""Audience filters against a generated population, on SQLite and on a real PostgreSQL.

The population (seeded) is generated as typed values — ints, dates, sets — and
stored as contacts would be (strings through the import path); the expected
result of every filter is computed here in plain Python from the typed values,
never with the code under test. The same cases run on both databases: every
operator, list include and exclude, stages, states, channels, registration
dates, the minimum rating, the skip reasons, the gate and missing variables.
A second project holds look-alike contacts that no filter may ever return.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, bindparam, insert, select, update
from tests.peers.postgres import PostgresServer

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.campaign.audience import (
    AudienceError,
    AudienceFilter,
    audience_query,
)
from postroom.campaign.audience_report import (
    audience_report,
    count_matched,
    missing_variables,
    recipients,
)
from postroom.cli.audience_flags import add_audience_arguments, filter_from_args
from postroom.config.schema import RatingConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import contacts, projects
from postroom.rating.contacts import Cause, NewContact, insert_new, join_list_many
from postroom.rating.rules import ContactState

pytestmark = pytest.mark.flow

PROJECT = "audience-main"
OTHER = "audience-other"
LISTS = ("alpha", "beta", "gamma", "delta")
STAGES = ("lead", "customer", "churned", "")
STATES = ("", "onboarding", "active")
CHANNELS = ("email", "telegram", "whatsapp")
CITIES = ("Berlin", "berlin", "Bern", "Paris", "New York")
DAY = date(2000, 5, 1)
DAY_START = datetime(2000, 5, 1, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
INSTANT = datetime(2000, 5, 1, 10, 0, tzinfo=UTC)
REGISTERED_FROM = datetime(2024, 1, 1, tzinfo=UTC)
REGISTERED_TO = datetime(2024, 7, 1, tzinfo=UTC)


@dataclass
class Person:
    address: str
    mailbox: str | None  # the mailbox it reaches; None: an invalid address
    lists: set[str]
    stage: str
    state: str
    channels: set[str]
    registered: datetime
    rating: int
    blocked: bool
    unsubscribed: bool
    age: int | None  # a number variable
    age_text: str | None  # "unknown": a variable that is not a number
    city: str | None
    birthday: datetime | None  # its instant
    birthday_is_day: bool  # written as a date (a whole day) or a date-time
    variables: dict[str, str] = field(default_factory=dict)
    id: int = 0


def generate(rng: random.Random, count: int, prefix: str) -> list[Person]:
    people: list[Person] = []
    gmail_owners: list[int] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05:
            address, mailbox = f"bad..{prefix}{index}@shop.test", None
        elif roll < 0.10 and gmail_owners:
            owner = rng.choice(gmail_owners)  # Gmail ignores dots and +tags: the same mailbox
            address, mailbox = f"{prefix}.{owner}+x{index}@gmail.com", f"{prefix}{owner}@gmail.com"
        elif roll < 0.25:
            address = mailbox = f"{prefix}{index}@gmail.com"
            gmail_owners.append(index)
        else:
            address = mailbox = f"{prefix}{index}@shop.test"
        blocked = rng.random() < 0.08
        birthday, is_day = None, True
        kind = rng.random()
        if kind < 0.45:
            birthday = datetime.combine(
                DAY + timedelta(days=rng.randint(-3, 3)), datetime.min.time(), UTC
            )
        elif kind < 0.60:
            birthday, is_day = DAY_START + timedelta(hours=rng.choice([0, 10, 10, 23])), False
        elif kind < 0.70:
            birthday = datetime.combine(
                DAY + timedelta(days=rng.randint(-1, 1)), datetime.min.time(), UTC
            )
        age_roll = rng.random()
        person = Person(
            address=address,
            mailbox=mailbox,
            lists={name for name in LISTS if rng.random() < 0.35},
            stage=rng.choice(STAGES),
            state=rng.choice(STATES),
            channels={name for name in CHANNELS if rng.random() < 0.4},
            registered=datetime(2023, 6, 1, tzinfo=UTC)
            + timedelta(
                days=rng.randint(0, 500), seconds=rng.choice([0, 0, rng.randint(1, 86399)])
            ),
            rating=1 if blocked else rng.randint(2, 10),
            blocked=blocked,
            unsubscribed=rng.random() < 0.06,
            age=rng.randint(25, 35) if age_roll < 0.6 else None,
            age_text="unknown" if 0.6 <= age_roll < 0.7 else None,
            city=rng.choice(CITIES) if rng.random() < 0.7 else None,
            birthday=birthday,
            birthday_is_day=is_day,
        )
        person.variables = _variables(person, dotted=kind >= 0.60)
        people.append(person)
    return people


def _variables(person: Person, *, dotted: bool) -> dict[str, str]:
    variables = {}
    if person.age is not None:
        variables["age"] = str(person.age)
    if person.age_text is not None:
        variables["age"] = person.age_text
    if person.city is not None:
        variables["city"] = person.city
    if person.birthday is not None:
        if not person.birthday_is_day:
            variables["birthday"] = person.birthday.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif dotted:
            variables["birthday"] = person.birthday.strftime("%d.%m.%Y")
        else:
            variables["birthday"] = person.birthday.strftime("%Y-%m-%d")
    return variables


def store(engine: Engine, project: str, people: list[Person]) -> None:
    with engine.begin() as conn:
        project_id = conn.execute(
            insert(projects).values(name=project, created_at=0.0).returning(projects.c.id)
        ).scalar_one()
        new = [
            NewContact(
                project_id,
                person.address,
                Cause("created"),
                variables=person.variables,
                stage=person.stage,
                state=person.state,
                registered_at=person.registered.timestamp(),
                channels=tuple(sorted(person.channels)),
            )
            for person in people
        ]
        assert insert_new(conn, new, ContactState(7), "import") == len(people)
        ids = dict(
            conn.execute(
                select(contacts.c.address, contacts.c.id).where(contacts.c.project_id == project_id)
            ).all()
        )
        for person in people:
            person.id = ids[person.address]
        conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("contact_id"))
            .values(
                rating=bindparam("new_rating"),
                blocked=bindparam("new_blocked"),
                unsubscribed_at=bindparam("new_unsubscribed_at"),
            ),
            [
                {
                    "contact_id": person.id,
                    "new_rating": person.rating,
                    "new_blocked": int(person.blocked),
                    "new_unsubscribed_at": 1.0 if person.unsubscribed else None,
                }
                for person in people
            ],
        )
        for name in LISTS:
            members = [person.id for person in people if name in person.lists]
            join_list_many(conn, project_id, name, members)


@dataclass
class Population:
    engine: Engine
    project_id: int
    people: list[Person]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def population(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Population]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('audience')}/db.sqlite"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.url
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(13)
    people = generate(rng, 700, "m")
    store(engine, PROJECT, people)
    # Look-alikes in another project: same lists, fields and variables.
    store(engine, OTHER, generate(random.Random(13), 120, "m"))
    with engine.connect() as conn:
        project_id = conn.execute(
            select(projects.c.id).where(projects.c.name == PROJECT)
        ).scalar_one()
    yield Population(engine, project_id, people)
    engine.dispose()


def _day_compare(person: Person, operator: str) -> bool:
    """birthday OP 2000-05-01 (a whole day)."""
    moment = person.birthday
    if moment is None:
        return operator == "!="
    inside = DAY_START <= moment < DAY_END
    return {
        "=": inside,
        "!=": not inside,
        "<": moment < DAY_START,
        "<=": moment < DAY_END,
        ">": moment >= DAY_END,
        ">=": moment >= DAY_START,
    }[operator]


Predicate = Callable[[Person], bool]
CASES: list[tuple[list[str], Predicate]] = [
    ([], lambda p: True),
    (["--list", "alpha"], lambda p: "alpha" in p.lists),
    (["--list", "alpha", "--list", "beta"], lambda p: bool({"alpha", "beta"} & p.lists)),
    (["--exclude-list", "gamma"], lambda p: "gamma" not in p.lists),
    (
        ["--list", "alpha", "--list", "beta", "--exclude-list", "gamma", "--exclude-list", "delta"],
        lambda p: bool({"alpha", "beta"} & p.lists) and not {"gamma", "delta"} & p.lists,
    ),
    (["--stage", "customer"], lambda p: p.stage == "customer"),
    (["--stage", "lead", "--stage", "churned"], lambda p: p.stage in ("lead", "churned")),
    (["--state", "onboarding"], lambda p: p.state == "onboarding"),
    (["--channel", "telegram"], lambda p: "telegram" in p.channels),
    (
        ["--channel", "Telegram", "--channel", "whatsapp"],
        lambda p: bool({"telegram", "whatsapp"} & p.channels),
    ),
    (["--var", "age = 30"], lambda p: p.age == 30),
    (["--var", "age != 30"], lambda p: p.age != 30),
    (["--var", "age < 30"], lambda p: p.age is not None and p.age < 30),
    (["--var", "age <= 30"], lambda p: p.age is not None and p.age <= 30),
    (["--var", "age > 30"], lambda p: p.age is not None and p.age > 30),
    (["--var", "age >= 30.0"], lambda p: p.age is not None and p.age >= 30),
    (["--var", "age exists"], lambda p: p.age is not None or p.age_text is not None),
    (["--var", "age = unknown"], lambda p: p.age_text == "unknown"),
    (["--var", "city = Berlin"], lambda p: p.city == "Berlin"),
    (["--var", "city contains er"], lambda p: p.city is not None and "er" in p.city),
    (["--var", "city contains Ber"], lambda p: p.city is not None and "Ber" in p.city),
    (["--var", 'city = "New York"'], lambda p: p.city == "New York"),
    (["--var", "city != Paris"], lambda p: p.city != "Paris"),
    (["--var", "birthday = 2000-05-01"], lambda p: _day_compare(p, "=")),
    (["--var", "birthday = 01.05.2000"], lambda p: _day_compare(p, "=")),
    (["--var", "birthday != 2000-05-01"], lambda p: _day_compare(p, "!=")),
    (["--var", "birthday < 2000-05-01"], lambda p: _day_compare(p, "<")),
    (["--var", "birthday <= 2000-05-01"], lambda p: _day_compare(p, "<=")),
    (["--var", "birthday > 2000-05-01"], lambda p: _day_compare(p, ">")),
    (["--var", "birthday >= 2000-05-01"], lambda p: _day_compare(p, ">=")),
    (["--var", "birthday = 2000-05-01T10:00:00+00:00"], lambda p: p.birthday == INSTANT),
    (
        ["--var", "birthday > 2000-05-01T10:00:00Z"],
        lambda p: p.birthday is not None and p.birthday > INSTANT,
    ),
    (
        ["--registered-after", "2024-01-01", "--registered-before", "2024-07-01"],
        lambda p: REGISTERED_FROM <= p.registered < REGISTERED_TO,
    ),
    (
        ["--registered-after", "2024-03-05T12:00:00Z"],
        lambda p: p.registered >= datetime(2024, 3, 5, 12, tzinfo=UTC),
    ),
    (["--min-rating", "7"], lambda p: p.rating >= 7),
    (
        [
            "--list",
            "alpha",
            "--exclude-list",
            "beta",
            "--stage",
            "customer",
            "--channel",
            "email",
            "--var",
            "age >= 28",
            "--var",
            "city contains e",
            "--registered-after",
            "2023-09-01",
            "--min-rating",
            "3",
        ],
        lambda p: (
            "alpha" in p.lists
            and "beta" not in p.lists
            and p.stage == "customer"
            and "email" in p.channels
            and p.age is not None
            and p.age >= 28
            and p.city is not None
            and "e" in p.city
            and p.registered >= datetime(2023, 9, 1, tzinfo=UTC)
            and p.rating >= 3
        ),
    ),
]


def parse_filter(argv: list[str]) -> AudienceFilter:
    parser = argparse.ArgumentParser()
    add_audience_arguments(parser)
    return filter_from_args(parser.parse_args(argv))


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(ValidationPolicy(dns=False))


def expected_recipients(matched: list[Person]) -> tuple[list[Person], dict[str, int]]:
    skipped = {"blocked": 0, "unsubscribed": 0, "invalid": 0, "duplicate": 0}
    seen: set[str] = set()
    chosen = []
    for person in sorted(matched, key=lambda person: person.id):
        if person.blocked:
            skipped["blocked"] += 1
        elif person.unsubscribed:
            skipped["unsubscribed"] += 1
        elif person.mailbox is None:
            skipped["invalid"] += 1
        elif person.mailbox in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(person.mailbox)
            chosen.append(person)
    return chosen, skipped


@pytest.mark.parametrize(
    ("argv", "predicate"), CASES, ids=[" ".join(argv) or "everyone" for argv, _ in CASES]
)
def test_filter_matches_exactly_the_expected_contacts(
    population: Population, validator: Validator, argv: list[str], predicate: Predicate
) -> None:
    audience = parse_filter(argv)
    assert AudienceFilter.from_json(audience.to_json()) == audience
    matched = [person for person in population.people if predicate(person)]
    assert matched, f"the generated population never matches {argv}: the case proves nothing"
    with population.engine.connect() as conn:
        found = {
            row.id for row in conn.execute(audience_query(conn, population.project_id, audience))
        }
        assert found == {person.id for person in matched}
        assert count_matched(conn, population.project_id, audience) == len(matched)
        chosen, skipped = expected_recipients(matched)
        streamed = [
            recipient.contact_id
            for batch in recipients(conn, population.project_id, audience, validator, batch_rows=50)
            for recipient in batch
        ]
    assert streamed == [person.id for person in chosen]
    report = audience_report(
        population.engine, population.project_id, audience, validator, RatingConfig()
    )
    document = report.to_json()
    assert document["audience"] == len(chosen)
    assert document["matched"] == len(matched)
    assert document["skipped"] == skipped
    if chosen:
        average = sum(person.rating for person in chosen) / len(chosen)
        assert document["average_rating"] == pytest.approx(average, abs=1e-3)
    gate_ratings = [p.rating for p in chosen] + [1] * skipped["blocked"]
    gate_average = sum(gate_ratings) / len(gate_ratings) if gate_ratings else 0.0
    minimum = RatingConfig().campaign_minimum
    assert document["gate"]["ok"] == (bool(chosen) and gate_average >= minimum)


def test_every_skip_reason_and_the_refusing_gate_occur(
    population: Population, validator: Validator
) -> None:
    report = audience_report(
        population.engine, population.project_id, parse_filter([]), validator, RatingConfig()
    )
    assert all(count > 0 for count in report.skipped.values()), report.skipped
    low = parse_filter(["--stage", "churned"])
    strict = RatingConfig(campaign_minimum=9.5)
    refused = audience_report(population.engine, population.project_id, low, validator, strict)
    assert refused.to_json()["gate"]["ok"] is False
    assert "drag it down" in refused.to_json()["gate"]["reason"]


def test_missing_variables_counts_matched_contacts_without_them(population: Population) -> None:
    audience = parse_filter(["--list", "alpha"])
    candidates = [
        p for p in population.people if "alpha" in p.lists and not p.blocked and not p.unsubscribed
    ]
    with population.engine.connect() as conn:
        missing = missing_variables(
            conn, population.project_id, audience, ["age", "city", "nickname"]
        )
    assert missing == {
        "age": sum(p.age is None and p.age_text is None for p in candidates),
        "city": sum(p.city is None for p in candidates),
        "nickname": len(candidates),
    }


def test_an_unknown_list_is_named(population: Population) -> None:
    with population.engine.connect() as conn, pytest.raises(AudienceError, match="'nope'"):
        audience = parse_filter(["--list", "alpha", "--exclude-list", "nope"])
        audience_query(conn, population.project_id, audience)


def test_another_projects_lists_are_not_this_projects(population: Population) -> None:
    with population.engine.connect() as conn:
        other_id = conn.execute(select(projects.c.id).where(projects.c.name == OTHER)).scalar_one()
        rows = conn.execute(audience_query(conn, other_id, parse_filter(["--list", "alpha"]))).all()
    mine = {person.id for person in population.people}
    assert rows and not {row.id for row in rows} & mine
