"""Transactional mail to a blocked contact: send anyway, hold, or refuse.

Campaign producers skip blocked contacts outright. Mail an app submits (or a
relay client sends) on behalf of a project is often expected — a password
reset, a receipt — so `[rating] blocked_transactional` decides: "send" (the
default: delivered, and logged so an operator can see it), "hold" (queued as
held: `postroom queue release` lets it go) or "refuse" (550 5.7.1 at RCPT).
`check` is asked at RCPT only for senders on a project's linked domain, and
only under "hold" and "refuse" (`at_rcpt`): under "send" nothing changes for
the message, so the per-recipient database query is skipped and the queue's
observer logs the blocked recipients of each group commit in one query
(`RatingObserver`, same log line).
"""

from __future__ import annotations

import asyncio
import logging

from postroom.core.reply import Reply
from postroom.rating.contacts import Contacts

log = logging.getLogger("postroom.rating")

BLOCKED_LOG = "queue_id=%s rcpt=<%s> is a blocked contact: %s"


class Suppression:
    def __init__(self, contacts: Contacts, policy: str) -> None:
        self.contacts = contacts
        self.policy = policy

    @property
    def at_rcpt(self) -> bool:
        return self.policy != "send"

    async def check(self, project_id: int, address: str, queue_id: str) -> bool | Reply:
        """False: send; True: hold; a Reply: refuse."""
        if not await asyncio.to_thread(self.contacts.is_blocked, project_id, address):
            return False
        log.info(BLOCKED_LOG, queue_id, address, self.policy)
        if self.policy == "refuse":
            return Reply(550, "5.7.1", f"<{address}>: recipient is blocked for this sender")
        return self.policy == "hold"
