"""The values of the address validator: its policy in, its verdicts out.

Purpose: `ValidationPolicy` holds what the operator decides (which RFC-valid
forms a campaign accepts, the DNS step and its limits, extra disposable
domains and role names); `AddressVerdict` is the answer for one input, in the
shape `postroom address check --json` prints (ARCHITECTURE.md):
`{"input", "address", "verdict", "reasons", "suggestion", "duplicate_of"}`.

Inputs and outputs: plain values; no I/O; no untrusted bytes are parsed here.
Config keys: the fields of `ValidationPolicy`, each documented below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_ACCEPTED_RESERVED_TLDS", "AddressVerdict", "ValidationPolicy"]

# `.test` and `.example` (RFC 2606/6761) pass so that tests and examples can use them.
DEFAULT_ACCEPTED_RESERVED_TLDS = frozenset({"test", "example"})


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """What the operator accepts; every field has a safe default."""

    allow_quoted: bool = False
    """Accept quoted local parts ("a b"@example.com); RFC-valid, rare, often refused."""
    allow_ip_literal: bool = False
    """Accept IP literal domains (a@[192.0.2.1]); no campaign list needs them."""
    dns: bool = True
    """Run the DNS step (MX, A/AAAA, null MX) when a resolver is given."""
    dns_concurrency: int = 20
    """At most this many domains are looked up at once."""
    dns_timeout_s: float = 10.0
    """Bound on one domain's DNS check; past it the reason is dns_temporary."""
    extra_disposable: frozenset[str] = frozenset()
    """Operator's disposable domains, added to the shipped blocklist."""
    extra_roles: frozenset[str] = frozenset()
    """Operator's non-human local parts, added to roles.toml's `non_human`."""
    accepted_reserved_tlds: frozenset[str] = DEFAULT_ACCEPTED_RESERVED_TLDS
    """Reserved TLDs accepted (test, example by default); others give reserved_tld."""


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    """The validator's answer for one input (see reasons.py for the codes)."""

    input: str
    address: str | None
    verdict: str
    reasons: tuple[str, ...]
    suggestion: str | None
    duplicate_of: str | None

    def as_json(self) -> dict[str, Any]:
        """The JSON object of `postroom address check --json` for this input."""
        return {
            "input": self.input,
            "address": self.address,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "suggestion": self.suggestion,
            "duplicate_of": self.duplicate_of,
        }
