"""DKIM keyring over a real directory (SQLite) and a real secret file: first keys, rotation,
and activation once DNS publishes the new selector."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import Engine

from postroom.config.loader import Duration
from postroom.config.schema import DkimConfig
from postroom.core.dns import DnsNotFound, DnsTemporaryError
from postroom.core.secretbox import SecretBox
from postroom.mailbox.directory import Directory, DirectoryError
from postroom.mailbox.dkim_keys import KeyAlgorithm, KeyState, dkim_txt_value
from postroom.mailbox.keyring import Keyring, key_host

DOMAIN = "example.com"
RETIRE_AFTER_S = 3600.0


class ZoneResolver:
    """TXT answers from a dict; names it does not hold are NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[str] | Exception] = {}

    def publish(self, directory: Directory, selector: str) -> None:
        key = next(k for k in directory.dkim_keys(DOMAIN) if k.selector == selector)
        value = dkim_txt_value(KeyAlgorithm(key.algorithm), key.public_key)
        self.records[key_host(selector, DOMAIN)] = [value]

    async def txt(self, name: str) -> list[str]:
        answer = self.records.get(name, DnsNotFound(name, "TXT", "NXDOMAIN"))
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def directory(engine: Engine) -> Directory:
    directory = Directory(engine)
    directory.add_project("acme")
    directory.add_domain(DOMAIN, "acme")
    return directory


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    return tmp_path / "secret.key"


@pytest.fixture
def keyring(directory: Directory, secret_file: Path) -> Keyring:
    config = DkimConfig(
        algorithms=("rsa", "ed25519"), rsa_bits=1024, retire_after=Duration(RETIRE_AFTER_S)
    )
    return Keyring(directory, config, secret_file, secret_file.parent)


@pytest.fixture
def verified(keyring: Keyring, directory: Directory) -> Keyring:
    directory.mark_verified(DOMAIN, keyring.first_keys(DOMAIN))
    return keyring


def states(directory: Directory) -> dict[str, str]:
    return {key.selector: key.state for key in directory.dkim_keys(DOMAIN)}


def test_first_keys_one_active_key_per_algorithm(keyring: Keyring, secret_file: Path) -> None:
    keys = keyring.first_keys(DOMAIN)
    assert [(k.algorithm, k.state) for k in keys] == [("rsa", "active"), ("ed25519", "active")]
    assert len({k.selector for k in keys}) == 2
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    box = SecretBox.load(secret_file, create=False)
    for key in keys:
        assert b"PRIVATE KEY" not in key.private_key
        pem = box.decrypt(key.private_key)
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert load_pem_private_key(pem, password=None) is not None
    # RSA at the configured size, to keep this test fast.
    rsa_private = load_pem_private_key(box.decrypt(keys[0].private_key), password=None)
    assert rsa_private.key_size == 1024  # type: ignore[union-attr]


def test_first_keys_are_not_stored_by_themselves(keyring: Keyring, directory: Directory) -> None:
    keyring.first_keys(DOMAIN)
    assert directory.dkim_keys(DOMAIN) == []


def test_rotate_is_refused_before_verification(keyring: Keyring, directory: Directory) -> None:
    with pytest.raises(DirectoryError, match="not verified yet"):
        keyring.rotate(DOMAIN)
    assert directory.dkim_keys(DOMAIN) == []


def test_rotate_adds_pending_keys_with_fresh_selectors(
    verified: Keyring, directory: Directory
) -> None:
    first = states(directory)
    new = verified.rotate(DOMAIN)
    assert [(k.algorithm, k.state) for k in new] == [("rsa", "pending"), ("ed25519", "pending")]
    assert not {k.selector for k in new} & set(first)
    assert states(directory) == {**first, **{k.selector: "pending" for k in new}}


def test_rotate_is_refused_while_a_rotation_is_pending(
    verified: Keyring, directory: Directory
) -> None:
    verified.rotate(DOMAIN)
    before = states(directory)
    with pytest.raises(DirectoryError, match="rotation already pending"):
        verified.rotate(DOMAIN)
    assert states(directory) == before


async def test_refresh_activates_what_dns_publishes(
    verified: Keyring, directory: Directory
) -> None:
    old_rsa, old_ed = (k.selector for k in directory.dkim_keys(DOMAIN))
    new_rsa, new_ed = (k.selector for k in verified.rotate(DOMAIN))
    resolver = ZoneResolver()

    assert await verified.refresh(DOMAIN, resolver) == []  # type: ignore[arg-type]

    resolver.publish(directory, new_rsa)
    changes = await verified.refresh(DOMAIN, resolver)  # type: ignore[arg-type]
    assert {(t.selector, t.to_state) for t in changes} == {
        (old_rsa, KeyState.RETIRING),
        (new_rsa, KeyState.ACTIVE),
    }
    assert states(directory) == {
        old_rsa: "retiring",
        old_ed: "active",
        new_rsa: "active",
        new_ed: "pending",
    }

    resolver.publish(directory, new_ed)
    await verified.refresh(DOMAIN, resolver)  # type: ignore[arg-type]
    assert states(directory) == {
        old_rsa: "retiring",
        old_ed: "retiring",
        new_rsa: "active",
        new_ed: "active",
    }


async def test_refresh_ignores_another_key_at_the_selector(
    verified: Keyring, directory: Directory
) -> None:
    old_rsa = directory.dkim_keys(DOMAIN)[0]
    new_rsa = verified.rotate(DOMAIN)[0]
    resolver = ZoneResolver()
    # The old public key published under the new selector, and a malformed record.
    resolver.records[key_host(new_rsa.selector, DOMAIN)] = [
        dkim_txt_value(KeyAlgorithm.RSA, old_rsa.public_key),
        "v=DKIM1; p=not base64!",
    ]
    assert await verified.refresh(DOMAIN, resolver) == []  # type: ignore[arg-type]
    assert states(directory)[new_rsa.selector] == "pending"


async def test_refresh_waits_out_a_dns_failure(verified: Keyring, directory: Directory) -> None:
    new_rsa = verified.rotate(DOMAIN)[0]
    resolver = ZoneResolver()
    host = key_host(new_rsa.selector, DOMAIN)
    resolver.records[host] = DnsTemporaryError(host, "TXT", "timeout")
    assert await verified.refresh(DOMAIN, resolver) == []  # type: ignore[arg-type]
    assert states(directory)[new_rsa.selector] == "pending"


async def test_refresh_retires_a_replaced_key_after_the_grace_period(
    verified: Keyring, directory: Directory
) -> None:
    old_rsa, old_ed = (k.selector for k in directory.dkim_keys(DOMAIN))
    new_rsa, new_ed = (k.selector for k in verified.rotate(DOMAIN))
    resolver = ZoneResolver()
    resolver.publish(directory, new_rsa)
    resolver.publish(directory, new_ed)
    await verified.refresh(DOMAIN, resolver)  # type: ignore[arg-type]

    soon = time.time() + RETIRE_AFTER_S / 2
    assert await verified.refresh(DOMAIN, resolver, now=soon) == []  # type: ignore[arg-type]

    later = time.time() + RETIRE_AFTER_S + 1
    changes = await verified.refresh(DOMAIN, resolver, now=later)  # type: ignore[arg-type]
    assert {(t.selector, t.to_state) for t in changes} == {
        (old_rsa, KeyState.RETIRED),
        (old_ed, KeyState.RETIRED),
    }
    assert states(directory) == {
        old_rsa: "retired",
        old_ed: "retired",
        new_rsa: "active",
        new_ed: "active",
    }


async def test_a_second_rotation_never_reuses_a_selector(
    verified: Keyring, directory: Directory
) -> None:
    resolver = ZoneResolver()
    for _ in range(2):
        for key in verified.rotate(DOMAIN):
            resolver.publish(directory, key.selector)
        await verified.refresh(DOMAIN, resolver)  # type: ignore[arg-type]
    selectors = [k.selector for k in directory.dkim_keys(DOMAIN)]
    assert len(selectors) == 6 == len(set(selectors))
    assert sorted(states(directory).values()).count("active") == 2


class GatheredResolver(ZoneResolver):
    """Answers only once `parties` lookups are waiting: every refresh has read the keys
    before any of them writes (two worker processes refreshing at the same moment)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.parties = parties
        self.waiting = 0
        self.all_read = asyncio.Event()

    async def txt(self, name: str) -> list[str]:
        self.waiting += 1
        if self.waiting >= self.parties:
            self.all_read.set()
        await asyncio.wait_for(self.all_read.wait(), 10)
        return await super().txt(name)


async def test_two_refreshes_at_once_make_each_transition_once(
    verified: Keyring, directory: Directory
) -> None:
    other_worker = Keyring(
        Directory(directory.engine), verified.config, verified.secret_file, verified.state_dir
    )
    old_rsa = directory.dkim_keys(DOMAIN)[0].selector
    new_rsa = verified.rotate(DOMAIN)[0].selector
    resolver = GatheredResolver(parties=2)  # the first lookup of each refresh
    for key in directory.dkim_keys(DOMAIN):
        if key.state == KeyState.PENDING:
            resolver.publish(directory, key.selector)

    first, second = await asyncio.gather(
        verified.refresh(DOMAIN, resolver),  # type: ignore[arg-type]
        other_worker.refresh(DOMAIN, resolver),  # type: ignore[arg-type]
    )

    made = [(t.selector, t.to_state) for t in first + second]
    assert len(made) == len(set(made)) == 4  # two activated, two retiring: once each
    assert (old_rsa, KeyState.RETIRING) in made and (new_rsa, KeyState.ACTIVE) in made
    assert not first or not second  # one transaction made the plan, the other nothing
