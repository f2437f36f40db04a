"""Proof that a project owns a domain: a TXT record at the domain's apex.

`domain add` gives the domain a random token; the owner publishes
`<domain>. TXT "postroom-verification=<token>"` (the form Google and Postal
use: an apex TXT record any DNS host can serve). `look_for_proof` reads the
apex TXT set through the process resolver (`[dns] nameservers`) and says
precisely what it found when the proof is not there: no such domain, no TXT
at all, other TXT records, a different token (an older `domain add`?), or a
temporary DNS failure (try again; never a verdict).

Untrusted input: TXT records from DNS (quoted with repr, shortened).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError, Resolver
from postroom.mailbox.directory import VERIFICATION_PREFIX, Domain

_SHOWN_RECORDS = 5
_SHOWN_LENGTH = 80


@dataclass(frozen=True, slots=True)
class ProofResult:
    found: bool
    message: str
    temporary: bool = False


async def look_for_proof(resolver: Resolver, domain: Domain) -> ProofResult:
    expected = domain.verification_text
    wanted = f'{domain.name}. TXT "{expected}"'
    try:
        records = await resolver.txt(domain.name)
    except DnsNotFound:
        return ProofResult(
            False, f"{domain.name} does not exist in DNS (NXDOMAIN); publish {wanted}"
        )
    except DnsNoData:
        return ProofResult(False, f"{domain.name} has no TXT records; publish {wanted}")
    except DnsTemporaryError as error:
        return ProofResult(
            False, f"DNS lookup of {domain.name} TXT failed ({error.reason}); try again", True
        )
    if any(record.strip() == expected for record in records):
        return ProofResult(True, f"found {expected!r} at {domain.name}")
    ours = [r for r in records if r.strip().startswith(VERIFICATION_PREFIX)]
    if ours:
        return ProofResult(
            False,
            f"{domain.name} publishes {_shown(ours)} but the token of this domain is "
            f"{expected!r} (an older `domain add`?); publish {wanted}",
        )
    return ProofResult(
        False,
        f"{domain.name} has {len(records)} TXT record(s), none is the proof "
        f"(found {_shown(records)}); publish {wanted}",
    )


def _shown(records: list[str]) -> str:
    shown = [repr(r if len(r) <= _SHOWN_LENGTH else r[:_SHOWN_LENGTH] + "…") for r in records]
    more = len(records) - _SHOWN_RECORDS
    return ", ".join(shown[:_SHOWN_RECORDS]) + (f" and {more} more" if more > 0 else "")
