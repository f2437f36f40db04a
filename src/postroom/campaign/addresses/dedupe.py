"""Duplicates among the inputs of one validation, after normalisation.

Purpose: `mailbox_key(local_part, ascii_domain)` names the mailbox an address
reaches, so that two spellings of one mailbox compare equal:

- the domain is compared in IDNA form, lower case, and a provider's domains
  that share one namespace (`canonical` in providers.toml) compare equal:
  googlemail.com = gmail.com, me.com = icloud.com, pm.me = proton.me;
- the local part is compared case-insensitively (Unicode case folding). RFC
  5321 lets a server treat case as significant, but practically none does, and
  a campaign that mails Ann@ and ann@ twice annoys the one person behind them.
  The `address` of a verdict keeps the case as written;
- for providers that document it (providers.toml): the part after a tag
  separator is dropped (`+` for Gmail, Outlook, iCloud, Fastmail, Proton,
  Yandex; `-` for Yahoo), and Gmail ignores dots. Other domains keep their tags:
  whether `ann+x@example.com` reaches ann@ is that server's business.

`find_duplicates(keys)` then walks the inputs in order: the first input with a
key wins; each later one is a duplicate of it, and names the first one's
normalised address (`duplicate_of`). Inputs without a key (unparseable) never
match.

Inputs: normalised parts from syntax.py. Outputs: keys and, per input, the
index of its first occurrence. Pure; no I/O; reads providers.toml through `Catalog`.
"""

from __future__ import annotations

from collections.abc import Sequence

from postroom.campaign.addresses.catalog import Catalog

__all__ = ["find_duplicates", "mailbox_key"]


def mailbox_key(local_part: str, ascii_domain: str, catalog: Catalog) -> str:
    """The mailbox `local_part@ascii_domain` reaches, as a comparable string."""
    domain = ascii_domain.lower()
    local = local_part
    provider = catalog.provider_by_domain.get(domain)
    if provider is not None:
        domain = provider.canonical or domain
    if provider is not None and not local.startswith('"'):
        for separator in provider.tag_separators:
            local = local.split(separator, 1)[0]
        if provider.ignore_dots:
            local = local.replace(".", "")
    return local.casefold() + "@" + domain


def find_duplicates(keys: Sequence[str | None]) -> list[int | None]:
    """For each key, the index of the first earlier input with the same key, or None."""
    first_seen: dict[str, int] = {}
    duplicate_of: list[int | None] = []
    for index, key in enumerate(keys):
        if key is None:
            duplicate_of.append(None)
        elif key in first_seen:
            duplicate_of.append(first_seen[key])
        else:
            first_seen[key] = index
            duplicate_of.append(None)
    return duplicate_of
