"""Classification of delivery outcomes: by scope, by temporary/permanent, by stage.

Every attempt to deliver a message ends in one `Outcome`: the verdict
(delivered, deferred, failed), the scope that pays for it (the connection /
destination site, the whole message, or one recipient), the SMTP stage that
produced it, the remote reply when there was one and the RFC 3463 status to
record. The rules follow Postfix's `smtp_trouble.c` (STYLE.md #9):

- A remote reply's class decides the verdict: 2xx delivered, 4xx deferred,
  5xx failed. The reply's own enhanced code is kept; where the remote gave
  none, the generic X.0.0 of its class is recorded.
- The stage decides the scope: DNS, CONNECT, GREETING, EHLO and STARTTLS are
  connection scope (the caller tries the next MX host); MAIL and DATA are
  message scope; RCPT is recipient scope. A 421 at any stage is connection
  scope: the server is closing the session (RFC 5321 section 3.8).
- Local and network errors (refused connections, timeouts, lost connections,
  TLS handshake failures) are temporary unless the caller says otherwise, and
  connection scope at every stage: a connection lost during RCPT says
  nothing about that recipient (Postfix's `smtp_stream_except` fails the site).
- A recipient domain that does not exist (NXDOMAIN, 5.1.2) or accepts no mail
  (null MX, RFC 7505, 5.1.10) is a fact about the address: recipient scope.

Inputs: reply codes and texts from remote servers (untrusted; kept verbatim in
the value, never interpreted beyond the code) or our own error texts. Output:
frozen values. No I/O, no configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from postroom.core.reply import Reply
from postroom.mta.delivery.mx import DestinationError

__all__ = [
    "Outcome",
    "Scope",
    "Stage",
    "Verdict",
    "delivered",
    "from_destination_error",
    "from_error",
    "from_reply",
    "reaches_recipient",
    "try_next_mx",
]


class Scope(StrEnum):
    """Who pays for an outcome: the lane (connection), the message, or one recipient."""

    CONNECTION = "connection"
    MESSAGE = "message"
    RECIPIENT = "recipient"


class Verdict(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


class Stage(StrEnum):
    """The step of the SMTP transaction (or the lookup before it) that produced an outcome."""

    DNS = "dns"
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


_STAGE_SCOPE: dict[Stage, Scope] = {
    Stage.DNS: Scope.CONNECTION,
    Stage.CONNECT: Scope.CONNECTION,
    Stage.GREETING: Scope.CONNECTION,
    Stage.EHLO: Scope.CONNECTION,
    Stage.STARTTLS: Scope.CONNECTION,
    Stage.MAIL: Scope.MESSAGE,
    Stage.RCPT: Scope.RECIPIENT,
    Stage.DATA: Scope.MESSAGE,
}

# Subject.detail of the status we derive for a local error at each stage
# (RFC 3463): X.4.3 directory server failure, X.4.1 no answer from host,
# X.7.5 cryptographic failure (as Postfix reports TLS handshake failures),
# X.4.2 bad connection (lost connection or timeout inside the session).
_LOCAL_ERROR_DETAIL: dict[Stage, str] = {
    Stage.DNS: "4.3",
    Stage.CONNECT: "4.1",
    Stage.GREETING: "4.2",
    Stage.EHLO: "4.2",
    Stage.STARTTLS: "7.5",
    Stage.MAIL: "4.2",
    Stage.RCPT: "4.2",
    Stage.DATA: "4.2",
}
# A permanent DNS error that is not NXDOMAIN or null MX (e.g. no address
# records at all) means the destination cannot be routed to: X.4.4.
_PERMANENT_DNS_DETAIL = "4.4"

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_VERDICT_CLASS = {Verdict.DELIVERED: "2", Verdict.DEFERRED: "4", Verdict.FAILED: "5"}
# Texts of remote replies may hold CR, LF and other controls; a DSN field or a
# log line must not, so the diagnostic folds them into spaces.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt (for one recipient, the message, or the site).

    `local_status` is the RFC 3463 status we assign ourselves: for local errors,
    and for remote replies that carried no enhanced code of their own. It is
    empty when the remote reply's own code stands.
    """

    verdict: Verdict
    scope: Scope
    stage: Stage
    reply: Reply | None
    detail: str
    remote_host: str = ""
    local_status: str = ""

    def __post_init__(self) -> None:
        if self.local_status and _STATUS.match(self.local_status) is None:
            raise ValueError(f"not an RFC 3463 status: {self.local_status!r}")
        if self.reply is None and not self.local_status:
            raise ValueError("an outcome without a reply needs a local status")
        if self.status[0] != _VERDICT_CLASS[self.verdict]:
            raise ValueError(f"status {self.status} does not fit verdict {self.verdict}")

    @property
    def status(self) -> str:
        """The RFC 3463 status to record (and to put in a DSN)."""
        if self.local_status:
            return self.local_status
        assert self.reply is not None  # guaranteed by __post_init__
        return self.reply.enhanced

    @property
    def is_temporary(self) -> bool:
        return self.verdict is Verdict.DEFERRED

    @property
    def is_permanent(self) -> bool:
        return self.verdict is Verdict.FAILED

    @property
    def diagnostic(self) -> str:
        """The DSN Diagnostic-Code value: "smtp; <reply>" or "X-Postroom; <detail>".

        Multi-line replies become one line; the enhanced code appears only when
        the remote gave one, so the diagnostic stays what the remote said.
        """
        if self.reply is None:
            return f"X-Postroom; {_one_line(self.detail)}"
        code = (
            f"{self.reply.code} {self.reply.enhanced}"
            if not self.local_status
            else (f"{self.reply.code}")
        )
        text = _one_line(self.reply.text)
        return f"smtp; {code} {text}" if text else f"smtp; {code}"

    @property
    def remote_mta(self) -> str:
        """The remote host's name for a DSN's Remote-MTA ("mx.example.test[127.0.0.5]" → name).

        Falls back to the address when the host has no name ("[127.0.0.5]" → "127.0.0.5").
        """
        name, _, address = self.remote_host.partition("[")
        return name.strip() or address.rstrip("]").strip()


def from_reply(stage: Stage, code: int, message: str, remote_host: str = "") -> Outcome:
    """The outcome of a remote reply `code message` received at `stage`.

    A reply outside 2xx/4xx/5xx where a final reply was due (a 3xx to RCPT, or
    a code outside 200-599) is a protocol error: temporary, 4.5.0, with the
    reply kept in the detail when it cannot be held as a `Reply`.
    """
    if not 200 <= code <= 599:
        return from_error(
            stage,
            f"unexpected reply: {code} {_one_line(message)}",
            status="4.5.0",
            remote_host=remote_host,
        )
    reply = Reply.parse(code, message)
    reply_class = code // 100
    if reply_class == 3:
        verdict, local_status = Verdict.DEFERRED, "4.5.0"
    else:
        verdict = {2: Verdict.DELIVERED, 4: Verdict.DEFERRED, 5: Verdict.FAILED}[reply_class]
        local_status = "" if _gave_enhanced(message, reply) else reply.enhanced
    scope = Scope.CONNECTION if code == 421 else _STAGE_SCOPE[stage]
    return Outcome(
        verdict=verdict,
        scope=scope,
        stage=stage,
        reply=reply,
        detail=reply.text,
        remote_host=remote_host,
        local_status=local_status,
    )


def from_error(
    stage: Stage,
    detail: str,
    *,
    permanent: bool = False,
    status: str | None = None,
    remote_host: str = "",
    scope: Scope = Scope.CONNECTION,
) -> Outcome:
    """A local or network error at `stage`: temporary unless `permanent`, connection scope.

    `status` overrides the status derived from the stage (connect → X.4.1,
    DNS → X.4.3, STARTTLS → X.7.5, lost connection or timeout in the session →
    X.4.2); its class must agree with `permanent`. `scope` is for local
    decisions about the message or a recipient (e.g. the message exceeds the
    remote's SIZE: MESSAGE, 5.3.4), not for network trouble.
    """
    if status is None:
        if permanent and stage is Stage.DNS:
            subject_detail = _PERMANENT_DNS_DETAIL
        else:
            subject_detail = _LOCAL_ERROR_DETAIL[stage]
        status = f"{5 if permanent else 4}.{subject_detail}"
    elif _STATUS.match(status) is None or status[0] != ("5" if permanent else "4"):
        kind = "permanent" if permanent else "temporary"
        raise ValueError(f"status {status!r} is not a {kind} failure status")
    return Outcome(
        verdict=Verdict.FAILED if permanent else Verdict.DEFERRED,
        scope=scope,
        stage=stage,
        reply=None,
        detail=detail,
        remote_host=remote_host,
        local_status=status,
    )


def delivered(remote_host: str, reply: Reply) -> Outcome:
    """The remote accepted the message: its 2xx reply to the end of DATA."""
    if not reply.is_success or reply.code >= 300:
        raise ValueError(f"not a success reply: {reply.code}")
    return Outcome(
        verdict=Verdict.DELIVERED,
        scope=Scope.MESSAGE,
        stage=Stage.DATA,
        reply=reply,
        detail=reply.text,
        remote_host=remote_host,
    )


def from_destination_error(error: DestinationError) -> Outcome:
    """Where mail for a domain cannot go, as `resolve_destination` found it.

    Permanent ones (NXDOMAIN 5.1.2, null MX 5.1.10, no MX host with an address)
    are facts about the address: recipient scope, so they may reach its rating.
    Temporary DNS trouble (4.4.3) is connection scope: it says nothing of the address.
    """
    return from_error(
        Stage.DNS,
        str(error),
        permanent=error.permanent,
        status=error.enhanced_status,
        scope=Scope.RECIPIENT if error.permanent else Scope.CONNECTION,
    )


def try_next_mx(outcome: Outcome) -> bool:
    """Whether the caller should try the next MX host: a connection-scope failure.

    A 5xx greeting from one MX says nothing about the others; the caller keeps
    the last such outcome when no host is left, and its verdict then stands.
    """
    return outcome.scope is Scope.CONNECTION and outcome.verdict is not Verdict.DELIVERED


def reaches_recipient(outcome: Outcome) -> bool:
    """Whether the outcome is about the recipient itself (and so may reach its rating)."""
    return outcome.scope is Scope.RECIPIENT and outcome.verdict is not Verdict.DELIVERED


def _gave_enhanced(message: str, reply: Reply) -> bool:
    # Reply.parse falls back to X.0.0 when the remote gave no (or a mismatched)
    # enhanced code; only a code the remote really sent belongs in the diagnostic.
    return message.lstrip(" -").startswith(reply.enhanced)


def _one_line(text: str) -> str:
    return _CONTROLS.sub(" ", text).strip()
