"""The DKIM keys that sign now, held in memory, decrypted and parsed once.

`SigningKeys.load()` (blocking; `serve` runs it through `core.refresh.keep_fresh`)
reads the ACTIVE keys of verified domains. Keys already held are kept as they
are: only a key row not seen before is decrypted (the appliance secret,
`SecretBox`) and parsed (`load_private_key`), because an RSA parse costs more
than a signature. `for_domain(domain)` answers from memory: the RSA key first,
then the Ed25519 one (RFC 8463 recommends signing with both while receivers
learn Ed25519).

A key that cannot be decrypted (another node's secret file) or parsed is
logged once and skipped: that domain's mail leaves unsigned rather than stuck,
and the log names the key. Config keys: [secrets] key_file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from postroom.core.secretbox import SecretBox, SecretKeyError
from postroom.mailbox.directory import ActiveKey, Directory
from postroom.mailbox.dkim_keys import KeyAlgorithm
from postroom.mta.signing.dkim import SigningKey, load_private_key

log = logging.getLogger("postroom.dkim")


class SigningKeys:
    def __init__(self, directory: Directory, secret_file: Path) -> None:
        self.directory = directory
        self.secret_file = secret_file
        self._by_id: dict[int, SigningKey] = {}
        self._unusable: set[int] = set()
        self._by_domain: dict[str, tuple[SigningKey, ...]] = {}

    def __bool__(self) -> bool:
        """False while no domain has a key: the signer need not even parse messages."""
        return bool(self._by_domain)

    def for_domain(self, domain: str) -> tuple[SigningKey, ...]:
        """The keys that sign for `domain` (its ASCII lookup form); empty when none."""
        return self._by_domain.get(domain, ())

    def load(self) -> None:
        rows = self.directory.active_keys()
        fresh = [row for row in rows if row.id not in self._by_id and row.id not in self._unusable]
        by_id = {row.id: self._by_id[row.id] for row in rows if row.id in self._by_id}
        if fresh:
            by_id.update(self._parse(fresh))
        by_domain: dict[str, list[SigningKey]] = {}
        for key in by_id.values():
            by_domain.setdefault(key.domain, []).append(key)
        self._by_id = by_id
        self._by_domain = {
            domain: tuple(sorted(keys, key=lambda key: key.algorithm is not KeyAlgorithm.RSA))
            for domain, keys in by_domain.items()
        }

    def _parse(self, rows: list[ActiveKey]) -> dict[int, SigningKey]:
        try:
            box = SecretBox.load(self.secret_file, create=False)
        except SecretKeyError as error:
            log.error("DKIM keys cannot be read, mail leaves unsigned: %s", error)
            self._unusable.update(row.id for row in rows)
            return {}
        parsed = {}
        for row in rows:
            try:
                algorithm = KeyAlgorithm(row.algorithm)
                private_key = load_private_key(algorithm, box.decrypt(row.private_key))
            except (SecretKeyError, ValueError) as error:
                log.error(
                    "DKIM key %s of %s unusable, its mail leaves unsigned: %s",
                    row.selector,
                    row.domain,
                    error,
                )
                self._unusable.add(row.id)
                continue
            parsed[row.id] = SigningKey(row.domain, row.selector, algorithm, private_key)
        return parsed
