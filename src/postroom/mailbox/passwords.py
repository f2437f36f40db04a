"""Mailbox passwords: argon2id hashes and a strength rule.

Hashes are argon2id PHC strings ("$argon2id$v=19$m=65536,t=3,p=1$salt$hash")
from argon2-cffi. Parallelism is 1 because Dovecot verifies these hashes with
libsodium, which only accepts p=1; memory 64 MiB and 3 passes follow RFC 9106's
second recommended option. `dummy_hash()` is what a login of an unknown user is
verified against (same cost as a real check). `weakness(password, address,
min_length)` follows NIST SP 800-63B 5.1.1.2: a minimum length and a check against
commonly used passwords and the account's own name, no composition rules.

Untrusted input: passwords (never logged, never echoed).
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# The most common passwords of public breach corpora, and this product's own name.
_COMMON = frozenset(
    {
        "password",
        "12345678",
        "123456789",
        "iloveyou1",
        "sunshine1",
        "football",
        "baseball",
        "princess",
        "qwertyui",
        "11111111",
        "88888888",
        "abcd1234",
        "password1",
        "qwerty123",
        "1q2w3e4r",
        "zaq12wsx",
        "welcome1",
        "letmein1",
        "123456789012",
        "1234567890",
        "12345678910",
        "0123456789",
        "1q2w3e4r5t6y",
        "qwertyuiop",
        "qwerty123456",
        "password123",
        "password1234",
        "passw0rd123",
        "iloveyou123",
        "letmein123",
        "welcome123",
        "admin12345",
        "administrator",
        "1qaz2wsx3edc",
        "qazwsxedcrfv",
        "1234qwerty",
        "qwerty1234",
        "abcdefghij",
        "abc1234567",
        "aaaaaaaaaa",
        "1111111111",
        "0000000000",
        "changeme123",
        "trustno1234",
        "superman123",
        "dragon1234",
        "postroom123",
        "postroompassword",
        "mailserver",
        "passwordpassword",
    }
)


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """The hash of a random password nobody knows, with the parameters of every stored
    hash: a login for an unknown user is verified against it, so that it costs what a
    wrong password costs and response time does not reveal which users exist. Made on
    first use (one hashing, once per process)."""
    return hash_password(secrets.token_urlsafe(24))


def weakness(password: str, address: str, min_length: int) -> str | None:
    """Why `password` is refused for `address`, or None when it is acceptable."""
    if not password:
        return "the password is empty"
    if password != password.strip() or "\n" in password:
        return "the password starts or ends with white space or spans lines"
    if len(password) < min_length:
        return f"the password is shorter than {min_length} characters"
    folded = password.casefold()
    local = address.partition("@")[0].casefold()
    if folded in _COMMON or folded.rstrip("!.1") in _COMMON:
        return "the password is one of the most commonly used passwords"
    if local and len(local) >= 4 and local in folded:
        return "the password contains the mailbox's own name"
    if len(set(password)) < 4:
        return "the password repeats too few different characters"
    return None
