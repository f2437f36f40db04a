"""Role and trap-like local parts: postmaster@, noreply@, abuse@ ... and info@.

Purpose: `RoleMatcher.reasons(local_part)` gives `role_account` (risky) for
mailboxes no person reads as a customer would, or that exist to catch mail,
and `shared_mailbox` (a note) for team mailboxes people do read (info@,
sales@). The lists live in roles.toml; the operator adds non-human ones with
the policy's `extra_roles`.

Matching ignores case, a `+tag`, and the separators `. - _`, so "No.Reply",
"no_reply" and "noreply+x" all match "noreply". A prefix from
`non_human_prefixes` also matches when followed by a separator or a digit
("noreply-billing", "bounce-1234"), not by a letter ("bouncer" is a person's
mailbox name as far as we know).

Inputs: a local part (untrusted, already syntax-checked). Outputs: reason codes.
Pure; no I/O. Config read: `ValidationPolicy.extra_roles`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from postroom.campaign.addresses.catalog import RoleLists, role_key

__all__ = ["RoleMatcher"]

_SEPARATOR = "[._-]?"


class RoleMatcher:
    """Classifies local parts by the role lists (see module docstring)."""

    def __init__(self, roles: RoleLists, extra_non_human: Iterable[str] = ()) -> None:
        self._non_human = roles.non_human | {role_key(item) for item in extra_non_human}
        self._shared = roles.shared
        prefixes = [
            _SEPARATOR.join(re.escape(char) for char in prefix)
            for prefix in roles.non_human_prefixes
            if prefix
        ]
        self._prefix = (
            re.compile(r"(?:" + "|".join(prefixes) + r")(?:$|[._\-0-9])", re.IGNORECASE)
            if prefixes
            else None
        )

    def reasons(self, local_part: str) -> tuple[str, ...]:
        key = role_key(local_part)
        if key in self._non_human:
            return ("role_account",)
        if self._prefix is not None and self._prefix.match(local_part.split("+", 1)[0]):
            return ("role_account",)
        if key in self._shared:
            return ("shared_mailbox",)
        return ()
