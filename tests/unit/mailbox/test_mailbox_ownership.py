"""Domain ownership proof: what `look_for_proof` says for each answer DNS can give."""

from __future__ import annotations

import pytest

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.db.models import DomainState
from postroom.mailbox.directory import Domain
from postroom.mailbox.ownership import look_for_proof

TOKEN = "0123456789abcdef0123456789abcdef"
DOMAIN = Domain(
    id=1,
    name="example.com",
    project="acme",
    state=DomainState.UNVERIFIED,
    verification_token=TOKEN,
    created_at=0.0,
    verified_at=None,
)
PROOF = f"postroom-verification={TOKEN}"
WANTED = f'example.com. TXT "{PROOF}"'


class ZoneResolver:
    """TXT answers from a dict; a name maps to its records or to the error DNS gives."""

    def __init__(self, answers: dict[str, list[str] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def txt(self, name: str) -> list[str]:
        self.asked.append(name)
        answer = self.answers.get(name, DnsNotFound(name, "TXT", "NXDOMAIN"))
        if isinstance(answer, Exception):
            raise answer
        return answer


async def proof(answer: list[str] | Exception):  # type: ignore[no-untyped-def]
    resolver = ZoneResolver({"example.com": answer})
    result = await look_for_proof(resolver, DOMAIN)  # type: ignore[arg-type]
    assert resolver.asked == ["example.com"]
    return result


async def test_found_among_other_records() -> None:
    result = await proof(["v=spf1 mx -all", f"  {PROOF} ", "google-site-verification=x"])
    assert result.found and not result.temporary
    assert PROOF in result.message


async def test_no_such_domain() -> None:
    result = await proof(DnsNotFound("example.com", "TXT", "NXDOMAIN"))
    assert not result.found and not result.temporary
    assert "does not exist in DNS (NXDOMAIN)" in result.message
    assert WANTED in result.message


async def test_no_txt_records() -> None:
    result = await proof(DnsNoData("example.com", "TXT", "no answer"))
    assert not result.found and not result.temporary
    assert "has no TXT records" in result.message and WANTED in result.message


async def test_other_txt_records_only() -> None:
    result = await proof(["v=spf1 mx -all", "x" * 200])
    assert not result.found and not result.temporary
    assert "2 TXT record(s), none is the proof" in result.message
    assert "'v=spf1 mx -all'" in result.message
    # Untrusted record text is shortened, not echoed whole.
    assert "x" * 81 not in result.message and "x" * 80 + "…" in result.message
    assert WANTED in result.message


async def test_many_other_records_are_summarised() -> None:
    result = await proof([f"record-{n}" for n in range(8)])
    assert "'record-4'" in result.message and "'record-5'" not in result.message
    assert "and 3 more" in result.message


async def test_a_different_token() -> None:
    old = "postroom-verification=ffffffffffffffffffffffffffffffff"
    result = await proof(["v=spf1 -all", old])
    assert not result.found and not result.temporary
    assert repr(old) in result.message
    assert "an older `domain add`?" in result.message
    assert repr(PROOF) in result.message and WANTED in result.message


@pytest.mark.parametrize("reason", ["timeout", "SERVFAIL"])
async def test_temporary_failure_is_no_verdict(reason: str) -> None:
    result = await proof(DnsTemporaryError("example.com", "TXT", reason))
    assert not result.found and result.temporary
    assert f"failed ({reason}); try again" in result.message


async def test_the_token_must_match_exactly() -> None:
    result = await proof([PROOF + "0", PROOF[:-1], PROOF.upper()])
    assert not result.found
