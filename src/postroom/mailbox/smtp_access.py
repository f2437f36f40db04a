"""SMTP submission access of mailboxes: request, moderation, and who may log in.

An app sends through the submission ports (587 STARTTLS, 465 implicit TLS) with
AUTH as one mailbox, and only after an operator approved that mailbox:

    none ──request──► pending ──approve──► approved
                         │                    │
                         └──reject──► rejected ◄┘ (reject revokes an approval)
    rejected ──request──► pending;  rejected ──approve──► approved

`SmtpAccess(engine)` makes these transitions, each one compare-and-set in one
transaction (two operators deciding at once cannot both win). A refusal is
`SmtpAccessError`, one line for the user naming the address and, for a wrong
state, the state it is in; nothing is changed then. Addresses given to the
operator methods are normalised like `postroom mailbox` does
(`names.normalise_address`); an invalid one is an `SmtpAccessError` too.

Kept per mailbox (`mailboxes.smtp_*` columns): what the requester announced
(purpose: printable text, 1-500 characters; volume: messages per day,
1-10,000,000), the operator's last rejection reason (still shown after a new
request, cleared on approval), when it was requested and last decided, whether
the mailbox may send as any address of its own linked domain (else only as
itself: `SmtpAccount.may_send_as`), and rate-limit overrides. In `set_limits`
None keeps a value and 0 returns it to the `[smtp.submission] max_per_minute` /
`max_per_day` defaults (stored as NULL); the SMTP layer applies them.

`authenticate(username, password)` answers AUTH (blocking: argon2 verification,
tens of milliseconds; call it in a thread). The username is the mailbox address,
compared case-insensitively and with its domain in IDNA A-label form
(`names.login_address`, which the AUTH throttle keys on too). Mailboxes of
verified domains only. An unknown user and a wrong password are both "bad
credentials" and cost the same: an unknown user is verified against
`passwords.dummy_hash()`. A correct password of a mailbox not approved gives
"not approved (<state>)", so an app's developer learns why.

Untrusted input: username and password (never logged here, never echoed).
Config keys: none (the engine comes from [database]).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.engine import Connection, Row

from postroom.db.models import DomainState, SmtpState, domains, mailboxes
from postroom.mailbox.accounts import mailbox_query
from postroom.mailbox.names import InvalidName, login_address, lookup_address, normalise_address
from postroom.mailbox.passwords import dummy_hash, verify_password

__all__ = ["AuthOutcome", "SmtpAccess", "SmtpAccessError", "SmtpAccount", "SmtpState"]

MAX_TEXT = 500  # characters of a purpose or a rejection reason
MAX_VOLUME = 10_000_000  # messages per day a request may announce
MAX_LIMIT = 2**31 - 1  # what the Integer columns hold on every database
BAD_CREDENTIALS = "bad credentials"

# (address, current state, its row) → why the change is refused, or None to make it.
Refusal = Callable[[str, SmtpState, "Row[Any]"], "str | None"]


class SmtpAccessError(Exception):
    """A refused change, bad input or an unknown mailbox; nothing was changed."""


@dataclass(frozen=True, slots=True)
class SmtpAccount:
    """A mailbox's SMTP access: what the CLI shows and what the SMTP session needs."""

    address: str
    project: str
    project_id: int
    domain: str
    state: SmtpState
    purpose: str
    volume: int | None  # messages per day, as announced by the request
    reason: str  # the last rejection reason; "" after an approval
    requested_at: float | None
    decided_at: float | None  # the last approval or rejection
    domain_senders: bool  # may send as any address @domain, not only as itself
    per_minute: int | None  # override; None = [smtp.submission] max_per_minute
    per_day: int | None  # override; None = [smtp.submission] max_per_day

    @property
    def senders(self) -> tuple[str, ...]:
        """Who it may send as: its address, or "@domain" for any address of its domain."""
        return (f"@{self.domain}",) if self.domain_senders else (self.address,)

    def may_send_as(self, sender: str) -> bool:
        """Whether an envelope or From address `sender` is one this mailbox may use.
        Compared in lookup form: case-insensitive, IDNA domains in A-labels."""
        address = lookup_address(sender)
        if address is None:
            return False
        if address == self.address:
            return True
        return self.domain_senders and address.rpartition("@")[2] == self.domain


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """`account` only on success; `failure` is "" then, else "bad credentials" or
    "not approved (<state>)"."""

    account: SmtpAccount | None
    failure: str

    @property
    def ok(self) -> bool:
        return not self.failure


class SmtpAccess:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- moderation -----------------------------------------------------------

    def request(self, address: str, purpose: str, volume: int) -> SmtpAccount:
        """none/rejected → pending, with what the requester announced."""
        purpose = _text(purpose, "purpose")
        if isinstance(volume, bool) or not isinstance(volume, int):
            raise SmtpAccessError(f"volume {volume!r}: a whole number of messages per day")
        if not 1 <= volume <= MAX_VOLUME:
            raise SmtpAccessError(f"volume {volume}: messages per day, 1 to {MAX_VOLUME:,}")

        def refusal(address: str, state: SmtpState, row: Row[Any]) -> str | None:
            if state is SmtpState.PENDING:
                return f"SMTP access of {address} is already under moderation (state pending)"
            if state is SmtpState.APPROVED:
                return f"SMTP access of {address} is already approved"
            return None

        # The last rejection reason and decision time stay: the operator sees them again.
        return self._transition(
            address,
            refusal,
            smtp_state=SmtpState.PENDING.value,
            smtp_purpose=purpose,
            smtp_volume=volume,
            smtp_requested_at=time.time(),
        )

    def approve(self, address: str, *, domain_senders: bool | None = None) -> SmtpAccount:
        """pending/rejected → approved; the rejection reason is cleared. `domain_senders`
        None keeps the current setting."""

        def refusal(address: str, state: SmtpState, row: Row[Any]) -> str | None:
            if state is SmtpState.NONE:
                return _not_requested(address)
            if state is SmtpState.APPROVED:
                return f"SMTP access of {address} is already approved"
            return None

        values: dict[str, object] = {}
        if domain_senders is not None:
            values["smtp_domain_senders"] = int(domain_senders)
        return self._transition(
            address,
            refusal,
            smtp_state=SmtpState.APPROVED.value,
            smtp_reason="",
            smtp_decided_at=time.time(),
            **values,
        )

    def reject(self, address: str, reason: str) -> SmtpAccount:
        """pending/approved → rejected with `reason` (rejecting an approved mailbox
        revokes its access: its next AUTH fails)."""
        reason = _text(reason, "reason")

        def refusal(address: str, state: SmtpState, row: Row[Any]) -> str | None:
            if state is SmtpState.NONE:
                return _not_requested(address)
            if state is SmtpState.REJECTED:
                return f"SMTP access of {address} is already rejected: {row.smtp_reason}"
            return None

        return self._transition(
            address,
            refusal,
            smtp_state=SmtpState.REJECTED.value,
            smtp_reason=reason,
            smtp_decided_at=time.time(),
        )

    # -- settings (any state: an operator may prepare them before approving) ----

    def set_domain_senders(self, address: str, allowed: bool) -> SmtpAccount:
        return self._transition(address, lambda *_: None, smtp_domain_senders=int(bool(allowed)))

    def set_limits(
        self, address: str, *, per_minute: int | None, per_day: int | None
    ) -> SmtpAccount:
        """Per-mailbox rate limits: None keeps the current value, 0 returns to the
        config default, a positive number overrides it."""
        values: dict[str, object] = {}
        for name, value in (("per_minute", per_minute), ("per_day", per_day)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise SmtpAccessError(f"{name} {value!r}: a whole number of messages")
            if not 0 <= value <= MAX_LIMIT:
                raise SmtpAccessError(
                    f"{name} {value}: 0 (the default) or a positive number of messages"
                )
            values[f"smtp_{name}"] = value or None
        return self._transition(address, lambda *_: None, **values)

    # -- reading ----------------------------------------------------------------

    def account(self, address: str) -> SmtpAccount:
        address = _stored_form(address)
        with self.engine.connect() as conn:
            return _account(_existing_row(conn, address))

    def accounts(self, state: SmtpState | None = None) -> list[SmtpAccount]:
        query = _account_query().order_by(mailboxes.c.address)
        if state is not None:
            query = query.where(mailboxes.c.smtp_state == SmtpState(state).value)
        with self.engine.connect() as conn:
            return [_account(row) for row in conn.execute(query)]

    def authenticate(self, username: str, password: str) -> AuthOutcome:
        """AUTH of an app (see module docstring). Blocking."""
        login = login_address(username)
        row = None
        if login is not None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    _account_query().where(
                        mailboxes.c.address == login,
                        domains.c.state == DomainState.VERIFIED.value,
                    )
                ).first()
        if row is None:
            # The same argon2 work as a real check: timing must not tell who exists.
            verify_password(dummy_hash(), password)
            return AuthOutcome(None, BAD_CREDENTIALS)
        if not verify_password(row.password_hash, password):
            return AuthOutcome(None, BAD_CREDENTIALS)
        account = _account(row)
        if account.state is not SmtpState.APPROVED:
            # Only said to whoever knows the password: it reveals nothing to a guesser.
            return AuthOutcome(None, f"not approved ({account.state.value})")
        return AuthOutcome(account, "")

    # -- one compare-and-set transaction per change -------------------------------

    def _transition(self, address: str, refusal: Refusal, **values: object) -> SmtpAccount:
        """Apply `values` unless `refusal(address, state, row)` names a reason not to;
        the UPDATE only matches the state that was checked, so a concurrent change
        between the read and the write is refused instead of overwritten."""
        address = _stored_form(address)
        with self.engine.begin() as conn:
            row = _existing_row(conn, address)
            state = SmtpState(row.smtp_state)
            problem = refusal(address, state, row)
            if problem is not None:
                raise SmtpAccessError(problem)
            if values:
                done = conn.execute(
                    update(mailboxes)
                    .where(mailboxes.c.id == row.id, mailboxes.c.smtp_state == state.value)
                    .values(**values, updated_at=time.time())
                )
                if done.rowcount != 1:
                    raise SmtpAccessError(
                        f"SMTP access of {address} changed meanwhile; nothing changed, try again"
                    )
                row = _existing_row(conn, address)
        return _account(row)


def _not_requested(address: str) -> str:
    return f"{address} has not requested SMTP access (state none; see `postroom smtp request`)"


def _text(value: str, name: str) -> str:
    """A purpose or reason: one line of printable text, surrounding spaces dropped."""
    text = value.strip()
    if not text:
        raise SmtpAccessError(f"{name}: must not be empty")
    if not text.isprintable():
        raise SmtpAccessError(f"{name}: printable text on one line only")
    if len(text) > MAX_TEXT:
        raise SmtpAccessError(f"{name}: at most {MAX_TEXT} characters (got {len(text)})")
    return text


def _stored_form(address: str) -> str:
    try:
        local, domain = normalise_address(address)
    except InvalidName as error:
        raise SmtpAccessError(str(error)) from None
    return f"{local}@{domain}"


def _account_query():  # type: ignore[no-untyped-def]
    return mailbox_query().add_columns(domains.c.project_id)


def _existing_row(conn: Connection, address: str) -> Row[Any]:
    row = conn.execute(_account_query().where(mailboxes.c.address == address)).first()
    if row is None:
        raise SmtpAccessError(f"no mailbox {address} (see `postroom mailbox add`)")
    return row


def _account(row: Row[Any]) -> SmtpAccount:
    return SmtpAccount(
        address=row.address,
        project=row.project,
        project_id=int(row.project_id),
        domain=row.domain,
        state=SmtpState(row.smtp_state),
        purpose=row.smtp_purpose,
        volume=row.smtp_volume,
        reason=row.smtp_reason,
        requested_at=row.smtp_requested_at,
        decided_at=row.smtp_decided_at,
        domain_senders=bool(row.smtp_domain_senders),
        per_minute=row.smtp_per_minute,
        per_day=row.smtp_per_day,
    )
