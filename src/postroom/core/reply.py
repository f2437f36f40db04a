"""SMTP replies as values.

A `Reply` is a reply code, an RFC 3463 enhanced status code and a text. The
constructor refuses a mismatched pair (a 550 with a 4.x.x code), so a wrong
reply cannot be built, let alone sent. Replies become wire text only in the
SMTP session (`Reply.wire()`), which is the single place where internal errors
are translated for the remote side.

Untrusted input: none; texts come from our own code or, for `Reply.parse`,
from a remote server's reply (kept verbatim, never interpreted beyond its codes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_REMOTE_REPLY = re.compile(r"^\s*(\d{3})(?:[ -]+([245]\.\d{1,3}\.\d{1,3}))?\s*(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: `code` (e.g. 550), `enhanced` (e.g. "5.1.1"), `text`."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        match = _ENHANCED.match(self.enhanced)
        if match is None:
            raise ValueError(f"not an enhanced status code: {self.enhanced!r}")
        if self.code // 100 in (2, 4, 5) and int(match.group(1)) != self.code // 100:
            raise ValueError(f"class mismatch: {self.code} with {self.enhanced}")
        if self.code // 100 == 3 and match.group(1) != "2":
            raise ValueError(f"3xx replies carry a 2.x.x code, not {self.enhanced}")

    @property
    def is_success(self) -> bool:
        return self.code < 400

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def wire(self) -> str:
        """The reply as SMTP text, multi-line when the text has several lines."""
        lines = self.text.splitlines() or [""]
        head = [f"{self.code}-{self.enhanced} {line}" for line in lines[:-1]]
        return "\r\n".join([*head, f"{self.code} {self.enhanced} {lines[-1]}"])

    def __str__(self) -> str:
        return self.wire()

    # Named constructors for the replies our own sessions give most often.
    @classmethod
    def ok(cls, text: str = "Ok") -> Reply:
        return cls(250, "2.0.0", text)

    @classmethod
    def temporary_failure(cls, text: str = "Temporary local problem, try again later") -> Reply:
        return cls(451, "4.3.0", text)

    @classmethod
    def relay_denied(cls, text: str = "Relay access denied") -> Reply:
        return cls(554, "5.7.1", text)

    @classmethod
    def parse(cls, code: int, message: str) -> Reply:
        """A remote server's reply, with the enhanced code it gave or one derived from the class.

        RFC 3463 codes are optional for remote servers; where absent we use the
        generic X.0.0 of the reply class so that the value stays consistent.
        """
        match = _REMOTE_REPLY.match(f"{code} {message}")
        enhanced = match.group(2) if match else None
        text = (match.group(3) if match else message).strip()
        if enhanced is None or int(enhanced[0]) != code // 100 or code // 100 == 3:
            enhanced = f"{code // 100 if code // 100 in (2, 4, 5) else 2}.0.0"
        return cls(code, enhanced, text)
