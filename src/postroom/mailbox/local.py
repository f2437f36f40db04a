"""Local delivery: which recipients are ours, quotas, and Maildir storage.

`LocalMail` is what the SMTP session asks at RCPT (`is_local_domain`, then
`resolve`, `quota_refusal`) and what the router calls at the end of DATA
(`store`). `is_local_domain` answers from memory: the set of verified domain
names, re-read by `load_domains` every `core.refresh.REFRESH_S` (so a `domain verify`
counts within a quarter second, on every node sharing the database), because asking
the database at every RCPT of relayed mail cost 40 % of the relay path's CPU.
The rest is blocking (database, files): callers run it in a thread. `store` returns only after every
copy is fsynced into `new/` (see `maildir.deliver`), so a 250 that follows it
means the mail is on disk.

Quota rules (Maildir++ accounting, `maildir.usage`): a mailbox at or over its
quota refuses new mail with 452 4.2.2 (temporary: the owner may make room); a
message that alone is larger than the quota is refused with 552 5.2.2 at RCPT
(when MAIL FROM declared SIZE=) or at DATA.

Untrusted input: envelope addresses and message bytes (stored as received).
RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender.
"""

from __future__ import annotations

from collections.abc import Iterable

from postroom.core.reply import Reply
from postroom.mailbox.accounts import NOT_LOCAL, Accounts, LocalTarget, Resolution
from postroom.mailbox.maildir import deliver, ensure_maildir, usage
from postroom.mailbox.names import lookup_form


class LocalMail:
    def __init__(self, accounts: Accounts, hostname: str) -> None:
        self.accounts = accounts
        self.hostname = hostname
        self.domains: dict[str, int] = {}  # verified domain → project id

    def load_domains(self) -> None:
        self.domains = self.accounts.verified_domains()

    def is_local_domain(self, address: str) -> bool:
        """True when `address` is on a verified domain (cheap: no I/O)."""
        return self.project_of(address) is not None

    def project_of(self, address: str) -> int | None:
        """The project owning `address`'s domain, when it is a verified linked domain."""
        domain = lookup_form(address.rpartition("@")[2])
        return None if domain is None else self.domains.get(domain)

    def resolve(self, address: str) -> Resolution:
        local, _, domain = address.rpartition("@")
        ascii_domain = lookup_form(domain)
        if ascii_domain is None:
            return NOT_LOCAL
        return self.accounts.resolve(f"{local.lower()}@{ascii_domain}")

    def quota_refusal(self, targets: Iterable[LocalTarget], size_bytes: int = 0) -> Reply | None:
        """452 4.2.2 for a full mailbox, 552 5.2.2 for a message bigger than a quota."""
        for target in targets:
            if not target.quota_bytes:
                continue
            if size_bytes > target.quota_bytes:
                return Reply(
                    552, "5.2.2", f"<{target.address}>: message is larger than the mailbox quota"
                )
            used = usage(target.maildir).bytes_used
            if used >= target.quota_bytes or used + size_bytes > target.quota_bytes:
                return Reply(452, "4.2.2", f"<{target.address}>: mailbox is full")
        return None

    def store(self, content: bytes, targets: Iterable[LocalTarget], folder: str = "") -> list[str]:
        """One copy per distinct mailbox (into `folder`, e.g. ".Junk", when given);
        returns the file names written."""
        written = []
        seen = set()
        for target in targets:
            if target.address in seen:
                continue
            seen.add(target.address)
            ensure_maildir(target.maildir)
            written.append(
                deliver(
                    target.maildir,
                    content,
                    hostname=self.hostname,
                    quota_bytes=target.quota_bytes,
                    folder=folder,
                )
            )
        return written
