"""Projects, linked domains and their DKIM keys in the database.

`Directory(engine)` is the one place that reads and changes these rows. Every
change is one transaction: it happens whole or not at all, and a refusal is a
`DirectoryError` whose message is one line for the operator (the CLI prints it
and exits 2). Names arrive already normalised (`postroom.mailbox.names`).

A domain is linked to exactly one project. It starts `unverified` with a random
token; `mark_verified` moves it to `verified` together with its first DKIM keys,
so a verified domain always has a key to sign with. Key rows are never deleted:
that is what keeps a selector from ever being reused.

Config keys: none (the engine comes from [database]).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from postroom.db.models import DomainState, dkim_keys, domains, projects
from postroom.mailbox.dkim_keys import KeyState

VERIFICATION_PREFIX = "postroom-verification="
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class DirectoryError(Exception):
    """A refused change or a missing object; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    message_limit: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str
    project: str
    state: DomainState
    verification_token: str
    created_at: float
    verified_at: float | None

    @property
    def verification_text(self) -> str:
        """The TXT value at the domain's apex that proves ownership."""
        return f"{VERIFICATION_PREFIX}{self.verification_token}"

    @property
    def verified(self) -> bool:
        return self.state is DomainState.VERIFIED


@dataclass(frozen=True, slots=True)
class DkimKey:
    selector: str
    algorithm: str
    state: str
    public_key: str
    private_key: bytes  # encrypted at rest (SecretBox)
    created_at: float
    state_since: float


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """A signing key as the signer needs it (its row id changes with every new key)."""

    id: int
    domain: str
    selector: str
    algorithm: str
    private_key: bytes = field(repr=False)  # encrypted at rest (SecretBox)


@dataclass(frozen=True, slots=True)
class NewKey:
    selector: str
    algorithm: str
    state: str
    public_key: str
    private_key: bytes


class Directory:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- projects -------------------------------------------------------------

    def add_project(self, name: str, message_limit: int | None = None) -> Project:
        if not _PROJECT_NAME.match(name):
            raise DirectoryError(
                f"project name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'"
            )
        if message_limit is not None and message_limit < 0:
            raise DirectoryError(f"--message-limit {message_limit}: must be 0 or more")
        row = {"name": name, "message_limit": message_limit, "created_at": time.time()}
        try:
            with self.engine.begin() as conn:
                new_id = conn.execute(projects.insert().values(row)).inserted_primary_key[0]
        except IntegrityError:
            raise DirectoryError(f"project {name!r} already exists") from None
        return Project(id=new_id, **row)

    def projects(self) -> list[Project]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(projects).order_by(projects.c.name)).all()
        return [_project(row) for row in rows]

    def set_message_limit(self, name: str, message_limit: int | None) -> Project:
        """The project's message limit per UTC calendar month (None = unlimited)."""
        if message_limit is not None and message_limit < 0:
            raise DirectoryError(f"message limit {message_limit}: must be 0 or more")
        with self.engine.begin() as conn:
            done = conn.execute(
                update(projects).where(projects.c.name == name).values(message_limit=message_limit)
            )
        if done.rowcount != 1:
            raise DirectoryError(f"no project named {name!r} (see `postroom project list`)")
        return self.project(name)

    def project(self, name: str) -> Project:
        with self.engine.connect() as conn:
            row = conn.execute(select(projects).where(projects.c.name == name)).first()
        if row is None:
            raise DirectoryError(f"no project named {name!r} (see `postroom project list`)")
        return _project(row)

    # -- domains --------------------------------------------------------------

    def add_domain(self, name: str, project_name: str) -> Domain:
        project = self.project(project_name)
        token = secrets.token_hex(16)
        row = {
            "project_id": project.id,
            "name": name,
            "state": DomainState.UNVERIFIED.value,
            "verification_token": token,
            "created_at": time.time(),
            "verified_at": None,
        }
        try:
            with self.engine.begin() as conn:
                existing = _domain_row(conn, name)
                if existing is not None:
                    raise DirectoryError(_already_linked(name, existing.project, project.name))
                conn.execute(domains.insert().values(row))
        except IntegrityError:
            # Another command linked it between our check and our insert.
            raise DirectoryError(f"domain {name} is already linked") from None
        return self.domain(name)

    def domain(self, name: str) -> Domain:
        with self.engine.connect() as conn:
            row = _domain_row(conn, name)
        if row is None:
            raise DirectoryError(f"domain {name} is not linked (see `postroom domain add`)")
        return _domain(row)

    def domains(self, project_name: str | None = None) -> list[Domain]:
        query = _domain_query().order_by(domains.c.name)
        if project_name is not None:
            query = query.where(projects.c.name == self.project(project_name).name)
        with self.engine.connect() as conn:
            return [_domain(row) for row in conn.execute(query)]

    def mark_verified(self, name: str, first_keys: Iterable[NewKey]) -> Domain:
        """`name` becomes verified with `first_keys`, in one transaction."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                row = _domain_row(conn, name)
                if row is None:
                    raise DirectoryError(f"domain {name} is not linked")
                if row.state == DomainState.VERIFIED.value:
                    return _domain(row)
                conn.execute(
                    update(domains)
                    .where(domains.c.id == row.id)
                    .values(state=DomainState.VERIFIED.value, verified_at=now)
                )
                for key in first_keys:
                    _insert_key(conn, row.id, key, now)
        except IntegrityError:
            raise DirectoryError(f"domain {name}: selector already used, try again") from None
        return self.domain(name)

    # -- DKIM keys ------------------------------------------------------------

    def dkim_keys(self, name: str) -> list[DkimKey]:
        domain = self.domain(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(dkim_keys)
                .where(dkim_keys.c.domain_id == domain.id)
                .order_by(dkim_keys.c.created_at, dkim_keys.c.id)
            ).all()
        return [
            DkimKey(
                selector=row.selector,
                algorithm=row.algorithm,
                state=row.state,
                public_key=row.public_key,
                private_key=row.private_key,
                created_at=row.created_at,
                state_since=row.state_since,
            )
            for row in rows
        ]

    def active_keys(self) -> list[ActiveKey]:
        """Every key that signs now: ACTIVE keys of verified domains."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(dkim_keys, domains.c.name.label("domain"))
                .join(domains, domains.c.id == dkim_keys.c.domain_id)
                .where(
                    dkim_keys.c.state == KeyState.ACTIVE.value,
                    domains.c.state == DomainState.VERIFIED.value,
                )
                .order_by(dkim_keys.c.id)
            ).all()
        return [
            ActiveKey(row.id, row.domain, row.selector, row.algorithm, row.private_key)
            for row in rows
        ]

    def add_keys(self, name: str, keys: Iterable[NewKey]) -> None:
        domain = self.domain(name)
        now = time.time()
        try:
            with self.engine.begin() as conn:
                for key in keys:
                    _insert_key(conn, domain.id, key, now)
        except IntegrityError:
            raise DirectoryError(f"domain {name}: selector already used, try again") from None

    def set_key_states(
        self, name: str, states: dict[str, str], *, only_from: Mapping[str, str] | None = None
    ) -> set[str]:
        """Move selectors to new states (selector → state), all in one transaction; the
        selectors moved. With `only_from` (selector → state), a key moves only if it is
        still in that state: of several processes applying one plan at once (the workers
        of `serve` refreshing together), one moves each key and the others move nothing."""
        domain = self.domain(name)
        now = time.time()
        moved: set[str] = set()
        with self.engine.begin() as conn:
            for selector, state in states.items():
                statement = update(dkim_keys).where(
                    dkim_keys.c.domain_id == domain.id, dkim_keys.c.selector == selector
                )
                if only_from is not None:
                    statement = statement.where(dkim_keys.c.state == only_from[selector])
                if conn.execute(statement.values(state=state, state_since=now)).rowcount:
                    moved.add(selector)
        return moved


def _insert_key(conn: Connection, domain_id: int, key: NewKey, now: float) -> None:
    conn.execute(
        dkim_keys.insert().values(
            domain_id=domain_id,
            selector=key.selector,
            algorithm=key.algorithm,
            state=key.state,
            private_key=key.private_key,
            public_key=key.public_key,
            created_at=now,
            state_since=now,
        )
    )


def _already_linked(name: str, owner: str, wanted: str) -> str:
    if owner == wanted:
        return f"domain {name} is already linked to project {owner!r}"
    return f"domain {name} is already linked to another project"


def _domain_query():  # type: ignore[no-untyped-def]
    return select(domains, projects.c.name.label("project")).join(
        projects, projects.c.id == domains.c.project_id
    )


def _domain_row(conn: Connection, name: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(_domain_query().where(domains.c.name == name)).first()


def _domain(row: Row) -> Domain:  # type: ignore[type-arg]
    return Domain(
        id=row.id,
        name=row.name,
        project=row.project,
        state=DomainState(row.state),
        verification_token=row.verification_token,
        created_at=row.created_at,
        verified_at=row.verified_at,
    )


def _project(row: Row) -> Project:  # type: ignore[type-arg]
    return Project(
        id=row.id, name=row.name, message_limit=row.message_limit, created_at=row.created_at
    )
