"""The one address validator of postroom: every address that enters goes through it.

Purpose: for each input, the normalised address, a verdict (`valid`,
`invalid`, `risky`, `duplicate`), every reason that applies (reasons.py lists
them and the precedence) and a suggestion where one exists. The stages, in
order: junk.py (trim), syntax.py (email-validator and campaign rules),
domain_checks.py (TLD, typos, lookalikes, disposable), roles.py (role local
parts), then, for a whole list, dedupe.py and dns_step.py.

- `Validator.check_syntax(text)`: everything except DNS and duplicates;
  synchronous, pure, fast (domain results are cached per validator);
  `check_with_mailbox(text)` adds the mailbox key duplicates compare by.
- `await Validator.validate(inputs)`: verdicts in input order, with duplicates
  (the first occurrence wins) and, when `policy.dns` is on and a resolver was
  given, the DNS step once per distinct domain. Domains already invalid for a
  DNS-free reason (unknown TLD, sure typo, disposable, ...) are not looked up.

The suggestion is the whole corrected address: the local part as written, at
the meant domain. `address` is None only when the input is not an address at
all (reason `empty` or `syntax`).

Inputs: untrusted strings from lists, forms and imports; one longer than
`MAX_INPUT_CHARS` is refused (`syntax`) unread, so the work per input stays bounded. Outputs:
`AddressVerdict` values. I/O: DNS only, through the resolver given.
Config read: `ValidationPolicy` (model.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

from publicsuffixlist import PublicSuffixList

from postroom.campaign.addresses.catalog import Catalog
from postroom.campaign.addresses.dedupe import find_duplicates, mailbox_key
from postroom.campaign.addresses.dns_step import MailDomainChecker, MailDomainResolver
from postroom.campaign.addresses.domain_checks import DomainInspector
from postroom.campaign.addresses.junk import clean
from postroom.campaign.addresses.model import AddressVerdict, ValidationPolicy
from postroom.campaign.addresses.reasons import INVALID, REASONS, verdict_for
from postroom.campaign.addresses.roles import RoleMatcher
from postroom.campaign.addresses.scripts import mixes_scripts
from postroom.campaign.addresses.syntax import ParsedAddress, parse_address

__all__ = ["MAX_INPUT_CHARS", "Validator"]

# An address is at most 254 octets; room is left for junk around it.
MAX_INPUT_CHARS = 1024
PROGRESS_EVERY = 1000
_REASON_ORDER = MappingProxyType({code: rank for rank, code in enumerate(REASONS)})


@dataclass(frozen=True, slots=True)
class _Checked:
    """One input after the DNS-free checks, before duplicates and DNS."""

    verdict: AddressVerdict
    parsed: ParsedAddress | None


class Validator:
    """Validates addresses under a policy (see module docstring)."""

    def __init__(
        self,
        policy: ValidationPolicy | None = None,
        resolver: MailDomainResolver | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        self.policy = policy if policy is not None else ValidationPolicy()
        self._catalog = catalog if catalog is not None else Catalog.load()
        suffixes = PublicSuffixList(accept_unknown=False)
        self._domains = DomainInspector(
            self._catalog, suffixes.is_public, self.policy.extra_disposable
        )
        self._roles = RoleMatcher(self._catalog.roles, self.policy.extra_roles)
        self._dns = (
            MailDomainChecker(
                resolver,
                concurrency=self.policy.dns_concurrency,
                timeout_s=self.policy.dns_timeout_s,
            )
            if resolver is not None
            else None
        )

    def check_syntax(self, text: str) -> AddressVerdict:
        """The verdict for one input without DNS and without duplicates."""
        return self._check(text).verdict

    def check_with_mailbox(self, text: str) -> tuple[AddressVerdict, str | None]:
        """`check_syntax`'s verdict and the key of the mailbox the address reaches
        (dedupe.py; None when the input is not an address): what a caller streaming
        a large set needs to find duplicates across batches itself."""
        checked = self._check(text)
        if checked.parsed is None:
            return checked.verdict, None
        key = mailbox_key(checked.parsed.local_part, checked.parsed.ascii_domain, self._catalog)
        return checked.verdict, key

    async def validate(
        self, inputs: Iterable[str], progress: Callable[[int], None] | None = None
    ) -> list[AddressVerdict]:
        """Verdicts for `inputs`, in order, with duplicates and (if on) the DNS step.
        `progress(done)` is told every `PROGRESS_EVERY` inputs (an import's progress bar)."""
        checked = []
        for text in inputs:
            checked.append(self._check(text))
            if progress is not None and len(checked) % PROGRESS_EVERY == 0:
                progress(len(checked))
        if progress is not None:
            progress(len(checked))
        dns_reasons: dict[str, tuple[str, ...]] = {}
        if self.policy.dns and self._dns is not None:
            wanted = [
                item.parsed.ascii_domain
                for item in checked
                if item.parsed is not None
                and not item.parsed.ip_literal
                and item.verdict.verdict != INVALID
            ]
            dns_reasons = await self._dns.check(wanted)
        keys = [
            mailbox_key(item.parsed.local_part, item.parsed.ascii_domain, self._catalog)
            if item.parsed is not None
            else None
            for item in checked
        ]
        first_indexes = find_duplicates(keys)
        verdicts: list[AddressVerdict] = []
        for item, first_index in zip(checked, first_indexes, strict=True):
            extra: tuple[str, ...] = ()
            if item.parsed is not None:
                extra = dns_reasons.get(item.parsed.ascii_domain, ())
            duplicate_of = None
            if first_index is not None:
                extra += ("duplicate",)
                duplicate_of = checked[first_index].verdict.address
            verdicts.append(_with_reasons(item.verdict, extra, duplicate_of))
        return verdicts

    def _check(self, raw: str) -> _Checked:
        if len(raw) > MAX_INPUT_CHARS:
            verdict = AddressVerdict(raw, None, INVALID, ("syntax",), None, None)
            return _Checked(verdict, None)
        cleaned = clean(raw)
        reasons: list[str] = []
        if cleaned.trimmed:
            reasons.append("junk_trimmed")
        if cleaned.display_name:
            reasons.append("display_name")
        result = parse_address(
            cleaned.text,
            allow_quoted=self.policy.allow_quoted,
            allow_ip_literal=self.policy.allow_ip_literal,
            accepted_reserved_tlds=self.policy.accepted_reserved_tlds,
        )
        reasons.extend(result.reasons)
        parsed = result.parsed
        suggestion = None
        if parsed is not None:
            if not parsed.ip_literal:
                findings = self._domains.inspect(parsed.domain, parsed.ascii_domain)
                reasons.extend(findings.reasons)
                if findings.suggestion is not None:
                    suggestion = parsed.local_part + "@" + findings.suggestion
            reasons.extend(self._roles.reasons(parsed.local_part))
            if mixes_scripts(parsed.local_part):
                reasons.append("mixed_script_local_part")
        ordered = _ordered(reasons)
        verdict = AddressVerdict(
            input=raw,
            address=parsed.address if parsed is not None else None,
            verdict=verdict_for(ordered),
            reasons=ordered,
            suggestion=suggestion,
            duplicate_of=None,
        )
        return _Checked(verdict, parsed)


def _ordered(reasons: Iterable[str]) -> tuple[str, ...]:
    """Reasons without repeats, in the order reasons.py lists them."""
    return tuple(sorted(set(reasons), key=_REASON_ORDER.__getitem__))


def _with_reasons(
    verdict: AddressVerdict, extra: tuple[str, ...], duplicate_of: str | None
) -> AddressVerdict:
    if not extra:
        return verdict
    reasons = _ordered((*verdict.reasons, *extra))
    return AddressVerdict(
        input=verdict.input,
        address=verdict.address,
        verdict=verdict_for(reasons),
        reasons=reasons,
        suggestion=verdict.suggestion,
        duplicate_of=duplicate_of,
    )
