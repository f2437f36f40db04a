"""Mailboxes and aliases of verified domains, and who receives a local recipient.

`Accounts(engine, mail_root)` adds, lists, re-passwords and deletes mailboxes,
and manages aliases: `source` → mailbox, where `source` is an address or
"@domain" (the domain's catch-all). Aliases point at mailboxes of linked
domains only: forwarding to other domains would need SRS to keep SPF passing,
which postroom does not do yet. Every change is one transaction; refusals are
`DirectoryError` (one line, nothing changed).

`resolve(address)` answers the router's question at RCPT time, in this order:
the domain is not a verified linked domain → `NOT_LOCAL`; a mailbox with that
address → it; aliases of the address → their mailboxes; the domain's
catch-all → its mailboxes; else `UNKNOWN` (550 5.1.1). Blocking database I/O:
the SMTP session calls it in a thread.

A mailbox's Maildir is `<mail_root>/<domain>/<local part>/` (ARCHITECTURE.md).
New mailboxes and alias sources follow the naming rule of
`names.mailbox_name_problem` (checked here again, whoever the caller), so that
no name can leave that tree or break Dovecot's passwd-file; rows stored before
the rule existed are still found, listed and deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from postroom.db.models import DomainState, aliases, domains, mailboxes, projects
from postroom.mailbox.directory import DirectoryError
from postroom.mailbox.names import mailbox_name_problem


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    address: str
    domain: str
    project: str
    password_hash: str
    quota_bytes: int
    created_at: float
    maildir: Path


@dataclass(frozen=True, slots=True)
class Alias:
    source: str
    target: str
    domain: str


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """A Maildir that receives a copy, with the mailbox's quota (0 = none)."""

    address: str
    maildir: Path
    quota_bytes: int
    project_id: int = 0


class RecipientKind(Enum):
    NOT_LOCAL = "not-local"
    LOCAL = "local"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Resolution:
    kind: RecipientKind
    targets: tuple[LocalTarget, ...] = ()


NOT_LOCAL = Resolution(RecipientKind.NOT_LOCAL)
UNKNOWN = Resolution(RecipientKind.UNKNOWN)


class Accounts:
    def __init__(self, engine: Engine, mail_root: Path) -> None:
        self.engine = engine
        self.mail_root = mail_root

    def maildir_of(self, address: str) -> Path:
        local, _, domain = address.rpartition("@")
        return self.mail_root / domain / local

    # -- mailboxes ------------------------------------------------------------

    def add_mailbox(self, address: str, password_hash: str, quota_bytes: int) -> Mailbox:
        local, _, domain_name = address.rpartition("@")
        _check_new_name(local, f"mailbox {address}")
        now = time.time()
        try:
            with self.engine.begin() as conn:
                domain_id = _verified_domain_id(conn, domain_name, f"mailbox {address}")
                if _mailbox_row(conn, address) is not None:
                    raise DirectoryError(f"mailbox {address} already exists")
                if conn.execute(select(aliases.c.id).where(aliases.c.source == address)).first():
                    raise DirectoryError(f"{address} is already an alias")
                conn.execute(
                    mailboxes.insert().values(
                        domain_id=domain_id,
                        address=address,
                        password_hash=password_hash,
                        quota_bytes=quota_bytes,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise DirectoryError(f"mailbox {address} already exists") from None
        return self.mailbox(address)

    def mailbox(self, address: str) -> Mailbox:
        with self.engine.connect() as conn:
            row = _mailbox_row(conn, address)
        if row is None:
            raise DirectoryError(f"no mailbox {address}")
        return self._mailbox(row)

    def mailboxes(self, *, domain: str | None = None, project: str | None = None) -> list[Mailbox]:
        query = mailbox_query().order_by(mailboxes.c.address)
        if domain is not None:
            query = query.where(domains.c.name == domain)
        if project is not None:
            query = query.where(projects.c.name == project)
        with self.engine.connect() as conn:
            return [self._mailbox(row) for row in conn.execute(query)]

    def set_password(self, address: str, password_hash: str) -> None:
        self._update(address, password_hash=password_hash)

    def set_quota(self, address: str, quota_bytes: int) -> None:
        self._update(address, quota_bytes=quota_bytes)

    def _update(self, address: str, **values: object) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(mailboxes)
                .where(mailboxes.c.address == address)
                .values(**values, updated_at=time.time())
            )
        if done.rowcount != 1:
            raise DirectoryError(f"no mailbox {address}")

    def delete_mailbox(self, address: str) -> tuple[Mailbox, list[str]]:
        """Deletes the mailbox and the aliases that pointed at it (returned)."""
        with self.engine.begin() as conn:
            row = _mailbox_row(conn, address)
            if row is None:
                raise DirectoryError(f"no mailbox {address}")
            removed = conn.execute(
                select(aliases.c.source).where(aliases.c.mailbox_id == row.id)
            ).scalars()
            sources = sorted(removed)
            conn.execute(delete(aliases).where(aliases.c.mailbox_id == row.id))
            conn.execute(delete(mailboxes).where(mailboxes.c.id == row.id))
        return self._mailbox(row), sources

    # -- aliases --------------------------------------------------------------

    def add_alias(self, source: str, target: str) -> Alias:
        """`source` is an address or "@domain" (catch-all); `target` a mailbox address."""
        local, _, domain_name = source.rpartition("@")
        if local:  # "@domain" is the catch-all
            _check_new_name(local, f"alias {source}")
        try:
            with self.engine.begin() as conn:
                domain_id = _verified_domain_id(conn, domain_name, f"alias {source}")
                if _mailbox_row(conn, source) is not None:
                    raise DirectoryError(f"{source} is a mailbox; an alias cannot shadow it")
                mailbox = _mailbox_row(conn, target)
                if mailbox is None or mailbox.project != _project_of(conn, domain_id):
                    # Another project's mailbox is as unknown to this one as a missing one.
                    raise DirectoryError(
                        f"alias target {target} is not a mailbox of this project "
                        "(aliases deliver to the project's own mailboxes only)"
                    )
                conn.execute(
                    aliases.insert().values(
                        domain_id=domain_id,
                        source=source,
                        mailbox_id=mailbox.id,
                        created_at=time.time(),
                    )
                )
        except IntegrityError:
            raise DirectoryError(f"alias {source} → {target} already exists") from None
        return Alias(source=source, target=target, domain=domain_name)

    def aliases(self, *, domain: str | None = None, project: str | None = None) -> list[Alias]:
        query = (
            select(aliases.c.source, mailboxes.c.address, domains.c.name)
            .join(mailboxes, mailboxes.c.id == aliases.c.mailbox_id)
            .join(domains, domains.c.id == aliases.c.domain_id)
            .join(projects, projects.c.id == domains.c.project_id)
            .order_by(aliases.c.source, mailboxes.c.address)
        )
        if domain is not None:
            query = query.where(domains.c.name == domain)
        if project is not None:
            query = query.where(projects.c.name == project)
        with self.engine.connect() as conn:
            return [Alias(source=s, target=t, domain=d) for s, t, d in conn.execute(query)]

    def delete_alias(self, source: str, target: str | None = None) -> int:
        with self.engine.begin() as conn:
            query = delete(aliases).where(aliases.c.source == source)
            if target is not None:
                mailbox = _mailbox_row(conn, target)
                if mailbox is None:
                    raise DirectoryError(f"no mailbox {target}")
                query = query.where(aliases.c.mailbox_id == mailbox.id)
            removed = conn.execute(query).rowcount
        if not removed:
            raise DirectoryError(f"no alias {source}" + (f" → {target}" if target else ""))
        return removed

    # -- routing --------------------------------------------------------------

    def verified_domains(self) -> dict[str, int]:
        """Verified domain name → its project id."""
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(domains.c.name, domains.c.project_id).where(
                        domains.c.state == DomainState.VERIFIED.value
                    )
                ).all()
            )

    def resolve(self, address: str) -> Resolution:
        """Who receives mail for `address` (see module docstring). `address` is lower-cased."""
        domain_name = address.rpartition("@")[2]
        with self.engine.connect() as conn:
            domain = conn.execute(
                select(domains.c.id, domains.c.project_id).where(
                    domains.c.name == domain_name,
                    domains.c.state == DomainState.VERIFIED.value,
                )
            ).first()
            if domain is None:
                return NOT_LOCAL
            project_id = int(domain.project_id)
            row = conn.execute(
                select(mailboxes.c.address, mailboxes.c.quota_bytes).where(
                    mailboxes.c.address == address
                )
            ).first()
            if row is not None:
                return Resolution(RecipientKind.LOCAL, (self._target(row, project_id),))
            for source in (address, f"@{domain_name}"):
                rows = conn.execute(
                    select(mailboxes.c.address, mailboxes.c.quota_bytes)
                    .join(aliases, aliases.c.mailbox_id == mailboxes.c.id)
                    .where(aliases.c.source == source)
                    .order_by(mailboxes.c.address)
                ).all()
                if rows:
                    targets = tuple(self._target(row, project_id) for row in rows)
                    return Resolution(RecipientKind.LOCAL, targets)
        return UNKNOWN

    def _target(self, row: Row, project_id: int) -> LocalTarget:  # type: ignore[type-arg]
        return LocalTarget(
            address=row.address,
            maildir=self.maildir_of(row.address),
            quota_bytes=row.quota_bytes,
            project_id=project_id,
        )

    def _mailbox(self, row: Row) -> Mailbox:  # type: ignore[type-arg]
        return Mailbox(
            id=row.id,
            address=row.address,
            domain=row.domain,
            project=row.project,
            password_hash=row.password_hash,
            quota_bytes=row.quota_bytes,
            created_at=row.created_at,
            maildir=self.maildir_of(row.address),
        )


def _check_new_name(local: str, what: str) -> None:
    problem = mailbox_name_problem(local)
    if problem is not None:
        raise DirectoryError(f"{what}: {problem}")


def _verified_domain_id(conn: Connection, name: str, what: str) -> int:
    row = conn.execute(select(domains.c.id, domains.c.state).where(domains.c.name == name)).first()
    if row is None:
        raise DirectoryError(f"{what}: domain {name} is not linked (see `postroom domain add`)")
    if row.state != DomainState.VERIFIED.value:
        raise DirectoryError(
            f"{what}: domain {name} is not verified yet (see `postroom domain verify`)"
        )
    return int(row.id)


def _project_of(conn: Connection, domain_id: int) -> str:
    return str(
        conn.execute(
            select(projects.c.name)
            .join(domains, domains.c.project_id == projects.c.id)
            .where(domains.c.id == domain_id)
        ).scalar_one()
    )


def mailbox_query():  # type: ignore[no-untyped-def]
    """Every column of `mailboxes` with its `domain` and `project` names (for other
    modules that read mailbox rows, such as `smtp_access`)."""
    return (
        select(mailboxes, domains.c.name.label("domain"), projects.c.name.label("project"))
        .join(domains, domains.c.id == mailboxes.c.domain_id)
        .join(projects, projects.c.id == domains.c.project_id)
    )


def _mailbox_row(conn: Connection, address: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(mailbox_query().where(mailboxes.c.address == address)).first()
