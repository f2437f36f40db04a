"""Config sections of tenants' mail: DKIM keys, mailboxes, bounces, ratings, addresses.

Part of the schema (see `schema.py` for the conventions: frozen, documented,
strict, `validate(path)` raising `ConfigError` naming the key path). Split
from `schema.py` by concern: these sections serve linked domains and their
contacts, the others the transport of mail.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass

from postroom.config.loader import ConfigError, Duration

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True, slots=True)
class DkimConfig:
    algorithms: tuple[str, ...] = ("rsa",)
    """Keys each verified domain gets: "rsa" (RSA-SHA256) and/or "ed25519" (RFC 8463)."""
    rsa_bits: int = 2048
    """RSA key size; 2048 fits in DNS and is what receivers expect (RFC 8301: at least 1024)."""
    retire_after: Duration = Duration(7 * 86400)
    """Grace period: a replaced key stays published this long so mail in flight still verifies."""
    check_interval: Duration = Duration(600)
    """How often `serve` looks for pending selectors in DNS to activate them."""
    sign_presigned: bool = False
    """Add our signature to outgoing mail the sender already signed for its From domain."""

    def validate(self, path: str) -> None:
        if not self.algorithms:
            raise ConfigError(f"{path}.algorithms", "name at least one: rsa, ed25519")
        for index, algorithm in enumerate(self.algorithms):
            if algorithm not in ("rsa", "ed25519"):
                raise ConfigError(f"{path}.algorithms[{index}]", "rsa or ed25519")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ConfigError(f"{path}.algorithms", "each algorithm once")
        if not 1024 <= self.rsa_bits <= 4096:
            raise ConfigError(f"{path}.rsa_bits", "between 1024 and 4096")


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    root: str = ""
    """Maildir root; empty = <state.dir>/mail."""
    dovecot_passwd_file: str = ""
    """Dovecot passwd-file kept in step with the mailboxes; empty = <state.dir>/dovecot/passwd."""
    dovecot_group: str = "dovecot"
    """Group of that file (mode 0640): Dovecot's auth process reads it as this group.
    Ignored while the group does not exist (Dovecot not installed)."""
    dovecot_mail_user: str = ""
    """User Dovecot's mail processes run as to read the Maildirs (`dovecot config` puts it
    in the userdb's uid); empty = the owner of the mail root (of the state directory
    before the mail root exists): the user postroom runs as."""
    dovecot_mail_group: str = ""
    """Their group; empty = the group of the mail root (or of the state directory)."""
    min_password_length: int = 10
    """Shortest password a mailbox may have (NIST SP 800-63B: length and a common-password
    list, no composition rules)."""

    def validate(self, path: str) -> None:
        if self.min_password_length < 8:
            raise ConfigError(f"{path}.min_password_length", "at least 8")
        for key in ("dovecot_group", "dovecot_mail_user", "dovecot_mail_group"):
            value = getattr(self, key)
            # Names go into dovecot.conf and chown: no room for spaces or syntax.
            if value and not _ACCOUNT_NAME.fullmatch(value):
                raise ConfigError(f"{path}.{key}", "a user or group name (letters, digits, . _ -)")


@dataclass(frozen=True, slots=True)
class BounceConfig:
    domain: str = ""
    """Where bounces come back: VERP return paths are bounce+TOKEN@<domain>; empty =
    [server] hostname. Its MX must point here; mail to it is processed, never stored."""
    verp: tuple[str, ...] = ("submission", "campaign")
    """Message origins sent with a per-recipient VERP return path (one transaction per
    recipient), so a late bounce names exactly one delivery: "submission", "campaign",
    "relay" (port 25 relay clients; off by default: they may expect their own bounces)."""
    feedback_local_part: str = "fbl"
    """<this>@<domain> takes ARF complaint reports; the VERP token inside names the delivery."""
    patterns: tuple[str, ...] = ()
    """Operator pattern files (TOML), read before the shipped ones, to classify replies."""
    worker_threads: int = 2
    """Threads that process what comes back (bounces, complaints, replies: parse, then the
    rating rules), apart from the threads RCPT lookups, AUTH and Maildir writes use."""
    worker_backlog: int = 32
    """Messages that may wait for those threads; past it port 25 answers 451 4.3.2 to a
    bounce or complaint (the sender retries) and a reply's rating update is skipped (logged)."""
    time_limit: Duration = Duration(5)
    """Longest one message is read: past it its verdict is undefined (logged, no rating
    change). The SMTP session waits at most this plus 5 s, then answers 451 4.4.5."""

    def validate(self, path: str) -> None:
        if self.worker_threads < 1:
            raise ConfigError(f"{path}.worker_threads", "must be at least 1")
        if self.worker_backlog < 0:
            raise ConfigError(f"{path}.worker_backlog", "must be 0 or more")
        if self.time_limit <= 0:
            raise ConfigError(f"{path}.time_limit", "must be more than 0")
        for index, origin in enumerate(self.verp):
            if origin not in ("submission", "campaign", "relay"):
                raise ConfigError(f"{path}.verp[{index}]", "submission, campaign or relay")
        if self.domain and ("@" in self.domain or any(c.isspace() for c in self.domain)):
            raise ConfigError(f"{path}.domain", "a domain name")
        if not self.feedback_local_part or "@" in self.feedback_local_part:
            raise ConfigError(f"{path}.feedback_local_part", "a local part without @")


@dataclass(frozen=True, slots=True)
class RatingConfig:
    """The client rating rules (ARCHITECTURE.md, "Client rating"); these are the defaults."""

    automatic: int = 7
    """Rating of a contact added automatically (campaign import, reply, submission traffic)."""
    manual: int = 10
    """Rating of a contact added by hand."""
    blocked_at: int = 1
    """At this rating the contact is blocked: campaigns skip it."""
    campaign_minimum: float = 6.0
    """A campaign whose audience averages below this does not launch."""
    reply: int = 10
    """Mail received from a contact raises its rating to this."""
    mailbox_full_step: int = 1
    """Each message undelivered because the mailbox is full lowers the rating by this."""
    suspicious: tuple[str, ...] = ("userunknown", "hostunknown", "suspend", "hasmoved", "notaccept")
    """Bounce reasons that mean the address is suspicious: rating to blocked_at, blocked."""
    blocked_transactional: str = "send"
    """Submitted (non-campaign) mail to a blocked contact: send | hold | refuse (550 5.7.1)."""

    def validate(self, path: str) -> None:
        for name in ("automatic", "manual", "reply"):
            value = getattr(self, name)
            if not self.blocked_at <= value <= 10:
                raise ConfigError(f"{path}.{name}", f"between blocked_at and 10, got {value}")
        if not 1 <= self.blocked_at <= 10:
            raise ConfigError(f"{path}.blocked_at", "between 1 and 10")
        if self.mailbox_full_step < 0:
            raise ConfigError(f"{path}.mailbox_full_step", "0 or more")
        # The closed vocabulary lives with the classifier (pure enum module, no cycle).
        from postroom.mta.bounce.reasons import Reason

        for index, reason in enumerate(self.suspicious):
            if reason not in {member.value for member in Reason}:
                raise ConfigError(
                    f"{path}.suspicious[{index}]", f"unknown bounce reason {reason!r}"
                )
        if self.blocked_transactional not in ("send", "hold", "refuse"):
            raise ConfigError(f"{path}.blocked_transactional", "send, hold or refuse")


@dataclass(frozen=True, slots=True)
class AddressesConfig:
    """The one address validator (address check, contact import, audiences)."""

    dns: bool = True
    """Look up MX (or A/AAAA) of every distinct domain: none or a null MX is invalid."""
    allow_quoted: bool = False
    """Accept quoted local parts ("john doe"@x): valid by RFC, unfit for most lists."""
    allow_ip_literal: bool = False
    """Accept IP-literal domains (user@[192.0.2.1])."""
    disposable_domains: tuple[str, ...] = ()
    """Temporary-mailbox domains to refuse besides the shipped list."""
    role_local_parts: tuple[str, ...] = ()
    """Local parts to treat as role accounts (risky) besides the shipped list."""


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    """Campaigns: senders' confirmation and the mail campaigns send."""

    transactional_pool: str = ""
    """Pool of one-off mail such as sender confirmation codes; empty = the pool named
    "transactional" when there is one, else [delivery] default_pool."""
    code_lifetime: Duration = Duration(24 * 3600)
    """How long a sender's confirmation code stays valid."""
    code_max_failures: int = 5
    """Wrong codes a sender may try; then only a new code (`sender resend-code`) helps."""
    pool: str = ""
    """Pool campaigns send through unless `campaign launch --pool` names another; empty =
    the pool named "mailings" when there is one, else [delivery] default_pool."""
    timezone: str = "UTC"
    """IANA zone of a `campaign launch --at` time written without an offset."""
    history: bool = True
    """Record each campaign message in the contact's history (`contact history`) unless
    `campaign launch --no-history`."""

    def validate(self, path: str) -> None:
        if self.code_lifetime <= 0:
            raise ConfigError(f"{path}.code_lifetime", "must be positive")
        if self.code_max_failures < 1:
            raise ConfigError(f"{path}.code_max_failures", "at least 1")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{path}.timezone", f"unknown time zone {self.timezone!r}") from None
