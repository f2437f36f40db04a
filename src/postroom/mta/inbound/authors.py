"""What From and Sender of a submitted message must say (RFC 5322 3.6.2, RFC 6409).

`author_refusal(from_values, sender_values, mailbox, may_send_as)` judges the
(unfolded) values of every From and Sender field of a message that the
authenticated `mailbox` submits, with its `may_send_as`; None means the message
may go, else the `Reply` to refuse it with. The fields are read by `core.address_list`, the
reader DMARC uses, so what is checked here is what receivers judge.

What we accept, and why:
- Exactly one From field (RFC 5322 3.6: required, at most one): none, or
  several — which a receiver cannot attribute and DMARC cannot evaluate — is
  550 5.6.0.
- From names at least one mailbox (3.6.2: the author is a mailbox-list, one
  or more). Empty, a display name alone, an empty group
  ("undisclosed-recipients:;"), or a value that is no mailbox list (an
  unclosed quote, an "@" in an unquoted display name...) is 550 5.6.0.
- Several mailboxes in From are allowed, as 3.6.2 allows them, with the
  Sender field it then requires: without one, 550 5.6.0. Members of a group
  (RFC 6854) count as mailboxes.
- Sender, when present, is one field naming one mailbox (3.6.2); else
  550 5.6.0.
- Every From address and the Sender address must be one the mailbox may send
  as (its own address, or any of its domain when an operator allowed that):
  else 553 5.7.1 naming the first that is not.
- At most `MAX_AUTHORS` addresses in From (550 5.6.0 past it): no real author
  list is longer, and each address costs a lookup.

Untrusted input: the field values. Pure logic, no I/O. Config keys: none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from postroom.core.address_list import mailbox_addresses
from postroom.core.reply import Reply

MAX_AUTHORS = 100


def author_refusal(
    from_values: Sequence[str],
    sender_values: Sequence[str],
    mailbox: str,
    may_send_as: Callable[[str], bool],
) -> Reply | None:
    """None when From and Sender are acceptable, else the refusal (see the module)."""
    if len(from_values) != 1:
        found = "no From field" if not from_values else f"{len(from_values)} From fields"
        return _malformed(f"Message has {found}: RFC 5322 3.6 requires exactly one")
    authors = mailbox_addresses(from_values[0])
    if not authors:
        return _malformed(
            "From names no address: RFC 5322 3.6.2 requires at least one mailbox"
            if authors is not None
            else "From is not a list of mailboxes (RFC 5322 3.4)"
        )
    if len(authors) > MAX_AUTHORS:
        return _malformed(f"From names more than {MAX_AUTHORS} addresses")
    senders: list[str] = []
    if sender_values:
        if len(sender_values) == 1:
            senders = mailbox_addresses(sender_values[0]) or []
        if len(senders) != 1:
            return _malformed("Sender must be one field naming one mailbox (RFC 5322 3.6.2)")
    elif len(authors) > 1:
        return _malformed(
            "From names several addresses: RFC 5322 3.6.2 then requires a Sender field"
        )
    for field, address in [("From", author) for author in authors] + [
        ("Sender", sender) for sender in senders
    ]:
        if not may_send_as(address):
            return Reply(553, "5.7.1", f"{field} <{address}>: not an address {mailbox} may send as")
    return None


def _malformed(text: str) -> Reply:
    return Reply(550, "5.6.0", text)
