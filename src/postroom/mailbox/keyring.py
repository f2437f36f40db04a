"""DKIM keys of linked domains: first keys, rotation, and activation seen in DNS.

- `Keyring.first_keys()`: when a domain is verified it gets one ACTIVE key per
  algorithm of `[dkim] algorithms`, so it can sign at once (its TXT record goes
  into `postroom domain dns`; until published, receivers see a DKIM failure,
  never a missing signature — the audit says so).
- `Keyring.rotate(domain)`: a new PENDING key (fresh selector) per algorithm of
  `[dkim] algorithms`; refused while a rotation is still pending. (A key of an
  algorithm dropped from the config stays active until rotated by hand.)
- `Keyring.refresh(domain, resolver)`: looks up every pending selector and
  applies `dkim_keys.plan_transitions`: a pending key DNS shows becomes ACTIVE
  (the previous one RETIRING), a retiring key past `[dkim] retire_after` becomes
  RETIRED. `serve` runs it every `[dkim] check_interval` (in worker 0 only; a
  key moves only from the state the plan was made from, so a CLI refresh at
  the same moment still makes each transition once); the CLI on demand.

Private keys are encrypted with the appliance secret (`SecretBox`) before they
reach the database. Network input: TXT records (parsed by `dkim_keys`).
Config keys: [dkim] algorithms, rsa_bits, retire_after; [secrets] key_file.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from postroom.config.schema import DkimConfig
from postroom.core.dns import DnsError, Resolver
from postroom.core.ownership import hand_to_state_owner
from postroom.core.secretbox import SecretBox
from postroom.mailbox.directory import Directory, DirectoryError, DkimKey, NewKey
from postroom.mailbox.dkim_keys import (
    DkimRecordError,
    KeyAlgorithm,
    KeyState,
    KeyView,
    Transition,
    generate_key,
    next_selector,
    plan_transitions,
    public_key_matches,
)

log = logging.getLogger("postroom.dkim")

PUBLISHED_STATES = (KeyState.PENDING, KeyState.ACTIVE, KeyState.RETIRING)


def key_host(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


class Keyring:
    def __init__(
        self, directory: Directory, config: DkimConfig, secret_file: Path, state_dir: Path
    ) -> None:
        self.directory = directory
        self.config = config
        self.secret_file = secret_file
        self.state_dir = state_dir

    def first_keys(self, domain: str) -> list[NewKey]:
        taken = [key.selector for key in self.directory.dkim_keys(domain)]
        return self._new_keys(self.config.algorithms, taken, KeyState.ACTIVE)

    def rotate(self, domain: str) -> list[NewKey]:
        """Creates and stores the next (pending) key of each configured algorithm."""
        if not self.directory.domain(domain).verified:
            raise DirectoryError(f"domain {domain} is not verified yet: it has no key to rotate")
        keys = self.directory.dkim_keys(domain)
        pending = [key.selector for key in keys if key.state == KeyState.PENDING]
        if pending:
            raise DirectoryError(
                f"domain {domain}: rotation already pending ({', '.join(pending)} waits for "
                "DNS; publish it, then `postroom domain dkim refresh`)"
            )
        # The configured algorithms, not those in use: rotating is also how a domain
        # takes up an algorithm added to [dkim] algorithms.
        new = self._new_keys(
            self.config.algorithms, [key.selector for key in keys], KeyState.PENDING
        )
        self.directory.add_keys(domain, new)
        return new

    async def refresh(
        self, domain: str, resolver: Resolver, now: float | None = None
    ) -> list[Transition]:
        """Applies the transitions DNS and time allow; returns those this call made
        (another process refreshing at the same moment makes each only once)."""
        keys = await asyncio.to_thread(self.directory.dkim_keys, domain)
        published = {
            key.selector: await is_published(resolver, domain, key)
            for key in keys
            if key.state == KeyState.PENDING
        }
        views = [
            KeyView(
                selector=key.selector,
                algorithm=KeyAlgorithm(key.algorithm),
                state=KeyState(key.state),
                created_at=key.created_at,
                state_since=key.state_since,
            )
            for key in keys
        ]
        transitions = plan_transitions(
            views, published, time.time() if now is None else now, self.config.retire_after
        )
        if not transitions:
            return []
        moved = await asyncio.to_thread(
            self.directory.set_key_states,
            domain,
            {t.selector: t.to_state.value for t in transitions},
            only_from={t.selector: t.from_state.value for t in transitions},
        )
        return [t for t in transitions if t.selector in moved]

    async def refresh_all(self, resolver: Resolver) -> None:
        """One pass over every verified domain (what `serve` runs periodically)."""
        for domain in await asyncio.to_thread(self.directory.domains):
            if not domain.verified:
                continue
            try:
                transitions = await self.refresh(domain.name, resolver)
            except Exception:  # one domain's trouble must not stop the others
                log.exception("DKIM refresh failed domain=%s", domain.name)
                continue
            for t in transitions:
                log.info(
                    "DKIM selector %s of %s: %s -> %s (%s)",
                    t.selector,
                    domain.name,
                    t.from_state,
                    t.to_state,
                    t.reason,
                )

    def _new_keys(
        self, algorithms: Iterable[str], taken: list[str], state: KeyState
    ) -> list[NewKey]:
        created = not self.secret_file.exists()
        box = SecretBox.load(self.secret_file, create=True)
        if created:
            # Made by a root CLI, it must still be readable by `serve` (which signs).
            hand_to_state_owner([self.secret_file], self.state_dir)
        today = datetime.datetime.now(datetime.UTC).date()
        new = []
        for name in algorithms:
            algorithm = KeyAlgorithm(name)
            selector = next_selector(taken, algorithm, today)
            taken.append(selector)
            key = generate_key(algorithm, self.config.rsa_bits)
            new.append(
                NewKey(
                    selector=selector,
                    algorithm=algorithm.value,
                    state=state.value,
                    public_key=key.public_b64,
                    private_key=box.encrypt(key.private_pem),
                )
            )
        return new


async def is_published(resolver: Resolver, domain: str, key: DkimKey) -> bool:
    """True when DNS serves this key's public key at its selector."""
    try:
        records = await resolver.txt(key_host(key.selector, domain))
    except DnsError:
        return False
    for record in records:
        try:
            if public_key_matches(record, KeyAlgorithm(key.algorithm), key.public_key):
                return True
        except DkimRecordError:
            continue
    return False


async def refresh_periodically(keyring: Keyring, resolver: Resolver) -> None:
    """`serve`'s rotation worker: a pass at start, then every [dkim] check_interval."""
    while True:
        await keyring.refresh_all(resolver)
        await asyncio.sleep(keyring.config.check_interval)
