"""Contacts of projects in the database: ratings, blocks, events, lists, the gate.

`Contacts(engine, rules)` serves two callers:
- operators (CLI): `add`, `show`, `block`, `unblock`, `set_rating`, `gate`,
  each one transaction, refusals as `ContactError` (one line, nothing changed);
- the mail engine, inside its own transaction (`conn`): `ensure_many` when mail
  is sent (new addresses start at `[rating] automatic`; the addresses a process
  found already known, up to `KNOWN_CONTACTS_MAX`, it does not write again:
  contacts are never deleted), `record` when a
  bounce, complaint or reply moves a rating. Every change is a `contact_events`
  row naming its cause (kind, reason, message, delivery, detail, and the
  campaign whose message it was, looked up by queue id when the cause does not
  name one: `campaign_recipients.message_id`). A change is
  a conditional UPDATE (compare and set, retried): processes and threads that
  change one contact at once lose none of their changes, on SQLite and
  PostgreSQL alike.

Addresses are stored lower-cased. The validator stores an IDN domain in
Unicode (U-labels), envelopes may carry it in ASCII (A-labels): a lookup
matches either form, the stored spelling first. A list name is 1 to
`MAX_LIST_NAME_CHARS` characters, no control characters. A project never sees
another's contacts: every query is keyed by project.
Config keys: [rating] through `Rules`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType

import idna
from sqlalchemy import Engine, Insert, and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from postroom.campaign.contact_fields import insert_new_fields, variables_json
from postroom.db.engine import write_transaction
from postroom.db.models import (
    campaign_recipients,
    contact_events,
    contacts,
    list_members,
    lists,
    projects,
)
from postroom.rating.rules import BlockCause, ContactState, GateResult, Rules, gate

INSERT_CHUNK_ROWS = 1000
# (project id, address) pairs a process remembers as existing contacts; past it,
# the memory starts over (a bound on a worker's memory, not a correctness limit).
KNOWN_CONTACTS_MAX = 100_000
# Reads of a contact that others keep changing before `record` gives up (see there).
RECORD_ATTEMPTS = 10
MAX_LIST_NAME_CHARS = 128  # lists.name


# Built once: it runs for every group commit of project mail, under the write lock.
_BLOCKED_AMONG = select(contacts.c.address).where(
    contacts.c.project_id == bindparam("project_id"),
    contacts.c.blocked == 1,
    contacts.c.address.in_(bindparam("addresses", expanding=True)),
)


def _insert_unless_known(dialect: ModuleType) -> Insert:
    return (
        dialect.insert(contacts)
        .on_conflict_do_nothing(index_elements=["project_id", "address"])
        .returning(contacts.c.id, contacts.c.project_id, contacts.c.address)
    )


# Built once per dialect: the statement of every group commit that queues project mail.
_INSERT_NEW = {
    "postgresql": _insert_unless_known(postgresql),
    "sqlite": _insert_unless_known(sqlite),
}


class ContactError(Exception):
    """A refused operator change or a missing object; nothing was changed."""


class ContactBusy(ContactError):
    """Other writers changed the contact at every attempt; the caller's transaction
    should roll back and be tried again later."""


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    project: str
    address: str
    rating: int
    blocked: bool
    blocked_cause: str
    source: str
    created_at: float
    name: str = ""
    variables: str = "{}"  # JSON object
    stage: str = ""
    state: str = ""
    registered_at: float | None = None
    unsubscribed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    created_at: float
    kind: str
    reason: str
    old_rating: int | None
    new_rating: int
    blocked: bool
    message_id: str | None
    delivery_id: int | None
    detail: str
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """What moved a rating, for the event row."""

    kind: str  # created | bounced | complained | replied | set | blocked | unblocked
    reason: str = ""
    message_id: str | None = None
    delivery_id: int | None = None
    detail: str = ""
    campaign_id: int | None = None  # None: the campaign that sent `message_id`, if any


Change = Callable[[ContactState], ContactState | None]


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact to create unless the project already has the address (lower-cased)."""

    project_id: int
    address: str
    cause: Cause
    name: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    stage: str = ""
    state: str = ""
    registered_at: float | None = None  # None: when it is created
    channels: tuple[str, ...] = ()


class Contacts:
    def __init__(self, engine: Engine, rules: Rules) -> None:
        self.engine = engine
        self.rules = rules
        # Contacts found existing (committed before the INSERT that met them), so that
        # mail to a known address costs no statement under the queue's write lock.
        self._known: set[tuple[int, str]] = set()

    # -- operators --------------------------------------------------------------

    def add(self, project: str, address: str, list_name: str | None = None) -> Contact:
        address = address.lower()
        with self.engine.begin() as conn:
            project_id = project_id_of(conn, project)
            if contact_row(conn, project_id, address) is not None:
                raise ContactError(f"contact {address} already exists in project {project!r}")
            state = self.rules.created(manual=True)
            contact_id = _insert_contact(conn, project_id, address, state, "manual")
            _event(conn, contact_id, None, state, Cause("created", detail="added by hand"))
            if list_name is not None:
                _join_list(conn, project_id, list_name, contact_id)
        return self.contact(project, address)

    def contact(self, project: str, address: str) -> Contact:
        with self.engine.connect() as conn:
            row = contact_row(conn, project_id_of(conn, project), address.lower())
        if row is None:
            raise ContactError(f"no contact {address.lower()} in project {project!r}")
        return _contact(row, project)

    def events(self, contact: Contact) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(contact_events)
                .where(contact_events.c.contact_id == contact.id)
                .order_by(contact_events.c.created_at, contact_events.c.id)
            ).all()
        return [
            Event(
                created_at=row.created_at,
                kind=row.kind,
                reason=row.reason,
                old_rating=row.old_rating,
                new_rating=row.new_rating,
                blocked=bool(row.blocked),
                message_id=row.message_id,
                delivery_id=row.delivery_id,
                detail=row.detail,
                campaign_id=row.campaign_id,
            )
            for row in rows
        ]

    def set_rating(self, project: str, address: str, rating: int) -> Contact:
        def change(state: ContactState) -> ContactState:
            try:
                return self.rules.set_by_operator(state, rating)
            except ValueError as error:
                raise ContactError(str(error)) from None

        return self._operator(project, address, change, Cause("set", detail="by an operator"))

    def block(self, project: str, address: str) -> Contact:
        return self._operator(project, address, self.rules.block, Cause("blocked"))

    def unblock(self, project: str, address: str) -> Contact:
        return self._operator(project, address, self.rules.unblock, Cause("unblocked"))

    def gate(self, project: str, list_name: str | None = None) -> GateResult:
        with self.engine.connect() as conn:
            project_id = project_id_of(conn, project)
            query = select(contacts.c.rating, contacts.c.blocked, contacts.c.blocked_cause).where(
                contacts.c.project_id == project_id
            )
            if list_name is not None:
                list_id = _list_id(conn, project_id, list_name)
                query = query.join(
                    list_members,
                    and_(
                        list_members.c.contact_id == contacts.c.id,
                        list_members.c.list_id == list_id,
                    ),
                )
            states = [_state(row) for row in conn.execute(query)]
        return gate(states, self.rules.config)

    def _operator(self, project: str, address: str, change: Change, cause: Cause) -> Contact:
        with self.engine.begin() as conn:
            project_id = project_id_of(conn, project)
            if not self.record(conn, project_id, address.lower(), change, cause):
                raise ContactError(f"no contact {address.lower()} in project {project!r}")
        return self.contact(project, address)

    # -- the mail engine ----------------------------------------------------------

    def ensure_many(
        self, conn: Connection, wanted: Iterable[tuple[int, str, str]], detail: str
    ) -> None:
        """(project id, address, message id): create the contacts that do not exist yet,
        at the automatic rating, with a `created` event naming the message.
        An address the INSERT met as existing is remembered and skipped from then on:
        it was committed before (a transaction ensures an address once, so it is not
        one this transaction created and may roll back), and contacts are never deleted."""
        new = {
            (project_id, address.lower()): NewContact(
                project_id, address.lower(), Cause("created", message_id=message_id, detail=detail)
            )
            for project_id, address, message_id in wanted
        }
        unknown = [key for key in new if key not in self._known]
        if not unknown:
            return
        created = _create_new(
            conn, [new[key] for key in unknown], self.rules.created(manual=False), "auto"
        )
        # Only what existed before: a contact this transaction created may roll back.
        if len(self._known) >= KNOWN_CONTACTS_MAX:
            self._known.clear()
        self._known.update(key for key in unknown if key not in created)

    def record(
        self,
        conn: Connection,
        project_id: int,
        address: str,
        change: Change,
        cause: Cause,
        *,
        keep_unchanged: bool = False,
    ) -> bool:
        """Apply `change` to a contact and write the event; False when no such contact.
        A change that returns None (the event does not move the rating) writes nothing,
        unless `keep_unchanged`: the contact's history shows every reply.

        Safe when several processes or threads change one contact at once, whatever
        transaction `conn` is in: the UPDATE applies only if the contact still has the
        state `change` was given, else the contact is read again and `change` applied
        to what another writer left (bounded; `ContactBusy` when it never settles).
        On SQLite the first miss has taken the write lock, so the second try holds; on
        PostgreSQL the row is read FOR UPDATE, so the first try holds (the loop stays
        for a row read without it, as SQLite's deferred transactions do)."""
        for _ in range(RECORD_ATTEMPTS):
            # Locked on PostgreSQL: under heavy contention a compare-and-set alone could
            # lose every round; the lock makes the first one hold.
            row = contact_row(conn, project_id, address.lower(), for_update=True)
            if row is None:
                return False
            old = _state(row)
            new = change(old)
            if new is None:
                if keep_unchanged:
                    _event(conn, row.id, old.rating, old, cause)
                return True
            applied = conn.execute(
                update(contacts)
                .where(
                    contacts.c.id == row.id,
                    contacts.c.rating == row.rating,
                    contacts.c.blocked == row.blocked,
                    contacts.c.blocked_cause == row.blocked_cause,
                )
                .values(
                    rating=new.rating,
                    blocked=int(new.blocked),
                    blocked_cause=new.cause.value,
                    updated_at=time.time(),
                )
            ).rowcount
            if applied:
                _event(conn, row.id, old.rating, new, cause)
                return True
        raise ContactBusy(f"contact {address.lower()} kept changing; try again")

    def received(self, project_ids: Iterable[int], sender: str, message_id: str) -> None:
        """Mail from `sender` reached mailboxes of these projects: a known contact is
        alive (`replied`), a new address becomes a contact."""
        with write_transaction(self.engine) as conn:
            for project_id in set(project_ids):
                cause = Cause("replied", message_id=message_id, detail="mail received from it")
                if not self.record(
                    conn, project_id, sender, self.rules.replied, cause, keep_unchanged=True
                ):
                    self.ensure_many(
                        conn, [(project_id, sender, message_id)], "mail received from a new address"
                    )

    def blocked_among(
        self, conn: Connection, wanted: Iterable[tuple[int, str, str]]
    ) -> set[tuple[int, str]]:
        """(project id, address) of the blocked contacts among (project id, address, _)."""
        by_project: dict[int, set[str]] = {}
        for project_id, address, _ in wanted:
            by_project.setdefault(project_id, set()).add(address.lower())
        found: set[tuple[int, str]] = set()
        for project_id, addresses in by_project.items():
            rows = conn.execute(
                _BLOCKED_AMONG, {"project_id": project_id, "addresses": sorted(addresses)}
            )
            found.update((project_id, row.address) for row in rows)
        return found

    def is_blocked(self, project_id: int, address: str) -> bool:
        with self.engine.connect() as conn:
            row = contact_row(conn, project_id, address.lower())
        return row is not None and bool(row.blocked)


def project_id_of(conn: Connection, name: str) -> int:
    found = conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar()
    if found is None:
        raise ContactError(f"no project named {name!r} (see `postroom project list`)")
    return int(found)


def contact_id_of(conn: Connection, project_id: int, address: str) -> int:
    """The id of the project's contact `address` (either IDNA form); ContactError if none."""
    row = contact_row(conn, project_id, address.lower())
    if row is None:
        raise ContactError(f"no contact {address.lower()} in this project")
    return int(row.id)


def _list_id(conn: Connection, project_id: int, name: str) -> int:
    found = conn.execute(
        select(lists.c.id).where(lists.c.project_id == project_id, lists.c.name == name)
    ).scalar()
    if found is None:
        raise ContactError(f"no list named {name!r} in this project")
    return int(found)


def _join_list(conn: Connection, project_id: int, name: str, contact_id: int) -> None:
    join_list_many(conn, project_id, name, [contact_id])


def insert_new(
    conn: Connection, new: Sequence[NewContact], state: ContactState, source: str
) -> int:
    """Create the contacts of `new` that do not exist yet, each with its `created` event,
    its variables and channels (`contact_fields.insert_new_fields`); the number created.
    One compiled statement run as executemany per chunk: SQLAlchemy sends it as
    multi-row INSERTs ("insertmanyvalues"), where compiling a literal 1,000-row VALUES
    list cost three quarters of a CSV import's time."""
    return len(_create_new(conn, new, state, source))


def _create_new(
    conn: Connection, new: Sequence[NewContact], state: ContactState, source: str
) -> set[tuple[int, str]]:
    """`insert_new`; the (project id, address) of the contacts it created."""
    now = time.time()
    statement = _INSERT_NEW["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    by_key = {(item.project_id, item.address): item for item in new}
    values = [
        {
            "project_id": item.project_id,
            "address": item.address,
            "rating": state.rating,
            "blocked": int(state.blocked),
            "blocked_cause": state.cause.value,
            "source": source,
            "created_at": now,
            "updated_at": now,
            "name": item.name,
            "variables": variables_json(item.variables),
            "stage": item.stage,
            "state": item.state,
            "registered_at": now if item.registered_at is None else item.registered_at,
        }
        for item in by_key.values()
    ]
    created: set[tuple[int, str]] = set()
    for start in range(0, len(values), INSERT_CHUNK_ROWS):
        rows = conn.execute(statement, values[start : start + INSERT_CHUNK_ROWS]).all()
        created.update((row.project_id, row.address) for row in rows)
        if rows:
            created_items = [(row.id, by_key[(row.project_id, row.address)]) for row in rows]
            conn.execute(
                insert(contact_events),
                [
                    event_row(contact_id, None, state, item.cause, now)
                    for contact_id, item in created_items
                ],
            )
            insert_new_fields(
                conn,
                [(contact_id, item.variables, item.channels) for contact_id, item in created_items],
            )
    return created


def check_list_name(name: str) -> str:
    """`name` when it can name a list; a ContactError saying why not."""
    if not name.strip():
        raise ContactError("a list name cannot be empty")
    if len(name) > MAX_LIST_NAME_CHARS:
        raise ContactError(f"a list name is at most {MAX_LIST_NAME_CHARS} characters")
    if not name.isprintable():
        raise ContactError(f"list name {name!r}: no control characters")
    return name


def join_list_many(conn: Connection, project_id: int, name: str, contact_ids: list[int]) -> None:
    check_list_name(name)
    found = conn.execute(
        select(lists.c.id).where(lists.c.project_id == project_id, lists.c.name == name)
    ).scalar()
    if found is None:
        found = conn.execute(
            insert(lists).values(project_id=project_id, name=name, created_at=time.time())
        ).inserted_primary_key[0]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    rows = [{"list_id": found, "contact_id": contact_id} for contact_id in contact_ids]
    statement = dialect.insert(list_members).on_conflict_do_nothing(
        index_elements=["list_id", "contact_id"]
    )
    for start in range(0, len(rows), INSERT_CHUNK_ROWS):
        conn.execute(statement, rows[start : start + INSERT_CHUNK_ROWS])


def contact_row(  # type: ignore[type-arg]
    conn: Connection, project_id: int, address: str, *, for_update: bool = False
) -> Row | None:
    """The project's contacts row for `address` (either IDNA form of its domain), or None;
    `for_update` locks it until the transaction ends (PostgreSQL; SQLite's writer holds
    the whole database already)."""
    forms = address_forms(address)
    query = select(contacts).where(
        contacts.c.project_id == project_id, contacts.c.address.in_(forms)
    )
    rows = conn.execute(query.with_for_update() if for_update else query).all()
    return min(rows, key=lambda row: forms.index(row.address), default=None)


def address_forms(address: str) -> list[str]:
    """`address`, then the same address with its domain's other IDNA form, if any."""
    local, _, domain = address.rpartition("@")
    try:
        if not domain.isascii():
            other = idna.encode(domain, uts46=True).decode("ascii")
        elif "xn--" in domain:
            other = idna.decode(domain)
        else:
            return [address]
    except (idna.IDNAError, UnicodeError):
        return [address]
    return [address] if other == domain else [address, f"{local}@{other}"]


def _insert_contact(
    conn: Connection, project_id: int, address: str, state: ContactState, source: str
) -> int:
    now = time.time()
    return int(
        conn.execute(
            insert(contacts).values(
                project_id=project_id,
                address=address,
                rating=state.rating,
                blocked=int(state.blocked),
                blocked_cause=state.cause.value,
                source=source,
                created_at=now,
                updated_at=now,
                registered_at=now,
            )
        ).inserted_primary_key[0]
    )


def _event(
    conn: Connection, contact_id: int, old_rating: int | None, new: ContactState, cause: Cause
) -> None:
    if cause.campaign_id is None and cause.message_id is not None:
        cause = replace(cause, campaign_id=campaign_of_message(conn, cause.message_id))
    conn.execute(insert(contact_events).values(event_row(contact_id, old_rating, new, cause)))


def campaign_of_message(conn: Connection, message_id: str) -> int | None:
    """The campaign whose recipient got queue message `message_id`, None for other mail."""
    return campaigns_of_messages(conn, [message_id]).get(message_id)


def campaigns_of_messages(conn: Connection, message_ids: Iterable[str]) -> dict[str, int]:
    """Queue message id → the campaign whose recipient got it; other mail is absent."""
    rows = conn.execute(
        select(campaign_recipients.c.message_id, campaign_recipients.c.campaign_id).where(
            campaign_recipients.c.message_id.in_(sorted(set(message_ids)))
        )
    )
    return {message_id: int(campaign_id) for message_id, campaign_id in rows}


def event_row(
    contact_id: int,
    old_rating: int | None,
    new: ContactState,
    cause: Cause,
    now: float | None = None,
) -> dict[str, object]:
    return {
        "contact_id": contact_id,
        "created_at": time.time() if now is None else now,
        "kind": cause.kind,
        "reason": cause.reason,
        "old_rating": old_rating,
        "new_rating": new.rating,
        "blocked": int(new.blocked),
        "message_id": cause.message_id,
        "delivery_id": cause.delivery_id,
        "detail": cause.detail[:1000],
        "campaign_id": cause.campaign_id,
    }


def _state(row: Row) -> ContactState:  # type: ignore[type-arg]
    return ContactState(row.rating, bool(row.blocked), BlockCause(row.blocked_cause))


def _contact(row: Row, project: str) -> Contact:  # type: ignore[type-arg]
    return Contact(
        id=row.id,
        project=project,
        address=row.address,
        rating=row.rating,
        blocked=bool(row.blocked),
        blocked_cause=row.blocked_cause,
        source=row.source,
        created_at=row.created_at,
        name=row.name,
        variables=row.variables,
        stage=row.stage,
        state=row.state,
        registered_at=row.registered_at,
        unsubscribed_at=row.unsubscribed_at,
    )
