"""Senders (the brief's "email bots"): the addresses a project's campaigns send from.

`Senders(engine, config, clock=time.time)` keeps the `senders` table:
- `add(project, address, display_name)`: a new sender, `unconfirmed`, with a
  one-time code (`sender_code`) valid `[campaign] code_lifetime`. The mail
  carrying it is queued by `Outbox` in the SAME transaction as the row and its
  code: both exist or neither. It goes to the address itself, with a null
  envelope sender (a failure never sends backscatter anywhere), in
  `config.transactional_pool`; From is the sender's own address when its domain
  is a verified linked domain of the project (the Outbox then DKIM-signs it),
  else `postmaster@<[server] hostname>`.
- `confirm(address, code, project=None)`: the right code → `confirmed`. Every
  try first takes one of `[campaign] code_max_failures` (persisted, atomically:
  concurrent tries cannot exceed it), then the right code gives it back. A wrong
  code says how many tries are left; an expired code, or any code once the tries
  are spent, is refused until `resend_code` issues a new one (new expiry, tries
  reset). Without `project`, the one unconfirmed sender with that address in any
  project; several → an error asking for the project.
- `resend_code` (at most one code a minute, `RESEND_INTERVAL_S`), `list`,
  `show`, `remove` (refused while campaigns use the
  sender, naming them: `campaigns.sender_id` must keep pointing somewhere).
- `code_mail_delivery(sender)`: the code mail's delivery state from the queue.
- For the campaign launcher: `require_confirmed(conn, project_id, address)` and
  `dmarc_risk(config, address)` (from `sender_reach`).
Every query filters by project. Two-way vs send-only: `sender_reach`.

Refusals are `SenderError`: one line naming the object, nothing changed.
Untrusted input: addresses, display names and codes an operator typed.
Config keys: [campaign] code_lifetime, code_max_failures, transactional_pool;
[server] hostname; [secrets] key_file; [dkim] (through the Outbox).
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from postroom.campaign.sender_code import (
    SENDER_CODES_INFO,
    code_digest,
    code_mail,
    code_matches,
    new_code,
    normalised_code,
)
from postroom.campaign.sender_reach import (
    SenderMode,
    dmarc_risk,
    sender_mode,
    verified_domains_of,
)
from postroom.db.models import (
    MessageOrigin,
    SenderState,
    campaigns,
    deliveries,
    domains,
    projects,
    senders,
)
from postroom.mailbox.names import InvalidName, normalise_address

if TYPE_CHECKING:
    from postroom.config import Config
    from postroom.mta.queue.outbox import Outbox

__all__ = [
    "CodeMailDelivery",
    "SenderError",
    "SenderRecord",
    "Senders",
    "dmarc_risk",
    "require_confirmed",
    "sender_address",
]

MAX_DISPLAY_NAME = 200  # characters; a From display name longer than this is no name
MAX_NAMED_CAMPAIGNS = 5  # a refusal names this many campaigns, then counts the rest
RESEND_INTERVAL_S = 60  # a new code at most this often
RESEND_HINT = "request a new one with `postroom sender resend-code {address} --project {project}`"


class SenderError(Exception):
    """A refused sender operation: one line naming the sender or the input."""


@dataclass(frozen=True, slots=True)
class SenderRecord:
    id: int
    project_id: int
    project: str
    address: str
    display_name: str
    state: SenderState
    mode: SenderMode
    created_at: float
    confirmed_at: float | None
    code_expires_at: float | None
    code_failures: int
    code_message_id: str | None

    def as_json(self) -> dict[str, Any]:
        """The `sender list --json` object (a contract: keys are only ever added)."""
        return {
            "address": self.address,
            "name": self.display_name,
            "state": self.state.value,
            "project": self.project,
            "mode": self.mode.value,
            "created_at": self.created_at,
            "confirmed_at": self.confirmed_at,
        }


@dataclass(frozen=True, slots=True)
class CodeMailDelivery:
    """The code mail's delivery, as the queue has it."""

    queue_id: str
    state: str  # a DeliveryState value
    attempts: int
    last_reply: str
    updated_at: float


def sender_address(text: str) -> str:
    """The stored form of a sender address (`names.normalise_address`); SenderError."""
    try:
        local, domain = normalise_address(text)
    except InvalidName as error:
        raise SenderError(str(error)) from None
    return f"{local}@{domain}"


def display_name(text: str) -> str:
    """A display name for From: one line of printable text, at most MAX_DISPLAY_NAME."""
    name = " ".join(text.split())
    if len(name) > MAX_DISPLAY_NAME:
        raise SenderError(f"display name longer than {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(char)[0] == "C" for char in name):
        raise SenderError(f"display name {name!r} holds control or format characters")
    return name


def require_confirmed(conn: Connection, project_id: int, address: str) -> SenderRecord:
    """The confirmed sender `address` of project `project_id`; SenderError (one line)
    when the project has no such sender or it is not confirmed yet."""
    stored = sender_address(address)
    row = _row(conn, project_id, stored)
    if row is None:
        raise SenderError(f"no sender {stored} in this project (see `postroom sender add`)")
    record = _record(conn, row)
    if record.state is not SenderState.CONFIRMED:
        raise SenderError(
            f"sender {stored} is not confirmed yet: `postroom sender confirm {stored} CODE` "
            "with the code mailed to it"
        )
    return record


class Senders:
    def __init__(self, engine: Engine, config: Config, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.config = config
        self.clock = clock

    @cached_property
    def _code_key(self) -> bytes:
        from postroom.core.secretbox import SecretBox

        secret = SecretBox.load(Path(self.config.secret_key_file), create=True)
        return secret.derive(SENDER_CODES_INFO)

    @cached_property
    def _outbox(self) -> Outbox:
        from postroom.mta.queue.outbox import Outbox

        return Outbox(self.engine, self.config)

    def add(self, project: str, address: str, name: str = "") -> SenderRecord:
        stored, name = sender_address(address), display_name(name)
        domain = stored.rpartition("@")[2]
        try:
            with self.engine.begin() as conn:
                project_id = _project_id(conn, project)
                owner = conn.execute(
                    select(domains.c.project_id).where(domains.c.name == domain)
                ).scalar()
                if owner is not None and owner != project_id:
                    raise SenderError(
                        f"{domain} is linked to another project: project {project!r} "
                        "cannot send from it"
                    )
                if _row(conn, project_id, stored) is not None:
                    raise SenderError(f"{stored} is already a sender of project {project!r}")
                sender_id = conn.execute(
                    insert(senders).values(
                        project_id=project_id,
                        address=stored,
                        display_name=name,
                        state=SenderState.UNCONFIRMED.value,
                        created_at=self.clock(),
                    )
                ).inserted_primary_key[0]
                return self._issue_code(conn, int(sender_id))
        except IntegrityError:  # another command added it between our check and insert
            raise SenderError(f"{stored} is already a sender of project {project!r}") from None

    def resend_code(self, address: str, project: str) -> SenderRecord:
        """A new code (new expiry, tries reset) and a new mail; the old code stops working."""
        with self.engine.begin() as conn:
            row = self._named(conn, address, project)
            if row.state == SenderState.CONFIRMED.value:
                raise SenderError(f"sender {row.address} is already confirmed")
            # One code a minute at most: with 5 tries a code, guessing one of a million
            # codes by asking for new ones takes months, and the address's owner is not
            # flooded with mail.
            lifetime = float(self.config.campaign.code_lifetime)
            issued_at = (row.code_expires_at or 0.0) - lifetime
            wait_s = issued_at + RESEND_INTERVAL_S - self.clock()
            if wait_s > 0:
                raise SenderError(
                    f"a code went to {row.address} less than a minute ago: "
                    f"ask again in {math.ceil(wait_s)} s"
                )
            return self._issue_code(conn, row.id)

    def confirm(self, address: str, code: str, project: str | None = None) -> SenderRecord:
        code_digits = normalised_code(code)
        if code_digits is None:
            raise SenderError(f"{code!r} is not a confirmation code: expected 6 digits")
        with self.engine.begin() as conn:
            row = self._to_confirm(conn, sender_address(address), project)
            outcome = self._try_code(conn, row, code_digits)
        if isinstance(outcome, SenderError):
            raise outcome  # after the commit: the wrong try stays counted
        return outcome

    def list(self, project: str) -> list[SenderRecord]:
        with self.engine.connect() as conn:
            project_id = _project_id(conn, project)
            own = verified_domains_of(conn, project_id)
            rows = conn.execute(
                _sender_query()
                .where(senders.c.project_id == project_id)
                .order_by(senders.c.address)
            ).all()
            return [_record_of(row, own) for row in rows]

    def show(self, address: str, project: str) -> SenderRecord:
        with self.engine.connect() as conn:
            return _record(conn, self._named(conn, address, project))

    def code_mail_delivery(self, sender: SenderRecord) -> CodeMailDelivery | None:
        """The latest code mail's delivery (None when none was queued or it is gone)."""
        if sender.code_message_id is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    deliveries.c.state,
                    deliveries.c.attempts,
                    deliveries.c.last_reply,
                    deliveries.c.updated_at,
                ).where(deliveries.c.message_id == sender.code_message_id)
            ).first()
        if row is None:
            return None
        return CodeMailDelivery(
            queue_id=sender.code_message_id,
            state=row.state,
            attempts=row.attempts,
            last_reply=row.last_reply,
            updated_at=row.updated_at,
        )

    def remove(self, address: str, project: str) -> SenderRecord:
        with self.engine.begin() as conn:
            record = _record(conn, self._named(conn, address, project))
            users = conn.execute(
                select(campaigns.c.id, campaigns.c.name)
                .where(campaigns.c.sender_id == record.id)
                .order_by(campaigns.c.id)
            ).all()
            if users:
                named = ", ".join(
                    f"{user.name!r} (#{user.id})" for user in users[:MAX_NAMED_CAMPAIGNS]
                )
                more = len(users) - MAX_NAMED_CAMPAIGNS
                named += f" and {more} more" if more > 0 else ""
                raise SenderError(f"sender {record.address} is used by campaign(s) {named}")
            conn.execute(delete(senders).where(senders.c.id == record.id))
            return record

    # -- inside a transaction -------------------------------------------------

    def _issue_code(self, conn: Connection, sender_id: int) -> SenderRecord:
        """A new code for the sender and its mail queued, in the caller's transaction."""
        row = conn.execute(_sender_query().where(senders.c.id == sender_id)).one()
        record = _record(conn, row)
        code, now = new_code(), self.clock()
        expires_at = now + float(self.config.campaign.code_lifetime)
        hostname = self.config.server.hostname
        if record.mode is SenderMode.TWO_WAY:
            author, author_name = record.address, record.display_name
        else:
            author, author_name = f"postmaster@{hostname}", hostname
        body = code_mail(
            author=author,
            author_name=author_name,
            sender=record.address,
            display_name=record.display_name,
            project=record.project,
            code=code,
            expires_at=expires_at,
            max_failures=self.config.campaign.code_max_failures,
            hostname=hostname,
            now=now,
        )
        queue_id = self._outbox.send(
            mail_from="",  # the null sender: no bounce of this mail goes anywhere
            recipients=[record.address],
            body=body,
            pool=self.config.transactional_pool,
            origin=MessageOrigin.SUBMISSION,
            # Signed as the sender only on a domain of its own project; the appliance's
            # own address otherwise.
            project_id=record.project_id if record.mode is SenderMode.TWO_WAY else None,
            conn=conn,
        )
        conn.execute(
            update(senders)
            .where(senders.c.id == sender_id)
            .values(
                code_hmac=code_digest(self._code_key, sender_id, record.address, code),
                code_expires_at=expires_at,
                code_failures=0,
                code_message_id=queue_id,
            )
        )
        return _reread(conn, sender_id)

    def _try_code(self, conn: Connection, row: Row[Any], code: str) -> SenderRecord | SenderError:
        """Confirm `row` with `code`, or the refusal to raise once the transaction is
        committed (a wrong code) or rolled back (nothing to count)."""
        hint = RESEND_HINT.format(address=row.address, project=row.project)
        if row.state == SenderState.CONFIRMED.value:
            raise SenderError(f"sender {row.address} is already confirmed")
        if row.code_hmac is None:
            raise SenderError(f"sender {row.address} has no code outstanding: {hint}")
        if self.clock() >= row.code_expires_at:
            raise SenderError(f"the code for {row.address} has expired: {hint}")
        limit = self.config.campaign.code_max_failures
        # One try is taken before comparing, in one statement: concurrent tries cannot
        # both use the last one, and none is possible once they are spent.
        taken = conn.execute(
            update(senders)
            .where(senders.c.id == row.id, senders.c.code_failures < limit)
            .values(code_failures=senders.c.code_failures + 1)
        ).rowcount
        if not taken:
            raise SenderError(f"too many wrong codes for {row.address}: {hint}")
        if not code_matches(self._code_key, row.id, row.address, code, row.code_hmac):
            left = limit - row.code_failures - 1
            if not left:
                return SenderError(f"wrong code for {row.address}: no tries left; {hint}")
            return SenderError(
                f"wrong code for {row.address}: {left} {'try' if left == 1 else 'tries'} left"
            )
        conn.execute(
            update(senders)
            .where(senders.c.id == row.id)
            .values(
                state=SenderState.CONFIRMED.value,
                confirmed_at=self.clock(),
                code_hmac=None,
                code_expires_at=None,
                code_failures=0,
            )
        )
        return _reread(conn, row.id)

    def _named(self, conn: Connection, address: str, project: str) -> Row[Any]:
        stored = sender_address(address)
        row = _row(conn, _project_id(conn, project), stored)
        if row is None:
            raise SenderError(f"no sender {stored} in project {project!r}")
        return row

    def _to_confirm(self, conn: Connection, address: str, project: str | None) -> Row[Any]:
        """The sender a `confirm` means: in `project`, else the one unconfirmed sender
        with that address (a confirmed one when it is the only row)."""
        if project is not None:
            return self._named(conn, address, project)
        rows = conn.execute(_sender_query().where(senders.c.address == address)).all()
        waiting = [row for row in rows if row.state == SenderState.UNCONFIRMED.value]
        if len(waiting) > 1:
            raise SenderError(
                f"{address} is an unconfirmed sender of {len(waiting)} projects: "
                "name one with --project"
            )
        if waiting or len(rows) == 1:
            return (waiting or rows)[0]
        if not rows:
            raise SenderError(f"no sender {address} (see `postroom sender add`)")
        raise SenderError(f"sender {address} is already confirmed")


def _project_id(conn: Connection, name: str) -> int:
    from postroom.rating.contacts import ContactError, project_id_of

    try:
        return project_id_of(conn, name)
    except ContactError as error:
        raise SenderError(str(error)) from None


def _sender_query():  # type: ignore[no-untyped-def]
    return select(senders, projects.c.name.label("project")).join(
        projects, projects.c.id == senders.c.project_id
    )


def _reread(conn: Connection, sender_id: int) -> SenderRecord:
    return _record(conn, conn.execute(_sender_query().where(senders.c.id == sender_id)).one())


def _row(conn: Connection, project_id: int, address: str) -> Row[Any] | None:
    return conn.execute(
        _sender_query().where(senders.c.project_id == project_id, senders.c.address == address)
    ).first()


def _record(conn: Connection, row: Row[Any]) -> SenderRecord:
    return _record_of(row, verified_domains_of(conn, row.project_id))


def _record_of(row: Row[Any], own_verified_domains: set[str]) -> SenderRecord:
    return SenderRecord(
        id=row.id,
        project_id=row.project_id,
        project=row.project,
        address=row.address,
        display_name=row.display_name,
        state=SenderState(row.state),
        mode=sender_mode(row.address, own_verified_domains),
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        code_expires_at=row.code_expires_at,
        code_failures=row.code_failures,
        code_message_id=row.code_message_id,
    )
