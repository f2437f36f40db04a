"""Address validation for campaigns and imports: one validator for every address.

Purpose: every address that enters postroom (a campaign list, an import, a
form, `postroom address check`) goes through `Validator`, which returns an
`AddressVerdict` per input: the normalised address, `valid` / `invalid` /
`risky` / `duplicate`, every reason that applies (codes and precedence in
reasons.py) and a suggested correction where one exists.

Modules, in the order an address meets them: junk.py (trimming), syntax.py
(email-validator plus campaign rules), domain_checks.py with typos.py and
scripts.py (TLDs, misspellings, lookalikes, disposable domains), roles.py,
dedupe.py, dns_step.py; validator.py ties them together. The knowledge is data:
providers.toml, roles.toml, lookalikes.toml (loaded by catalog.py).

Untrusted input: all of it. I/O: DNS only, through `postroom.core.dns.Resolver`.
Config read: `ValidationPolicy` (model.py).
"""

from postroom.campaign.addresses.model import AddressVerdict, ValidationPolicy
from postroom.campaign.addresses.reasons import REASONS, ReasonInfo
from postroom.campaign.addresses.validator import Validator

__all__ = ["REASONS", "AddressVerdict", "ReasonInfo", "ValidationPolicy", "Validator"]
