"""Mailbox passwords: argon2id PHC strings Dovecot can verify, and the strength rule."""

from __future__ import annotations

import pytest

from postroom.mailbox.passwords import hash_password, verify_password, weakness

PASSWORD = "correct horse battery staple"
MIN_LENGTH = 10


@pytest.fixture(scope="module")
def password_hash() -> str:
    # One hash for the module: argon2id with 64 MiB and 3 passes takes ~0.1 s.
    return hash_password(PASSWORD)


def test_hash_is_an_argon2id_phc_string_with_the_agreed_parameters(password_hash: str) -> None:
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    salt, digest = password_hash.split("$")[4:]
    assert salt and digest
    assert PASSWORD not in password_hash


def test_verify_accepts_the_password_and_nothing_else(password_hash: str) -> None:
    assert verify_password(password_hash, PASSWORD)
    assert not verify_password(password_hash, PASSWORD.upper())
    assert not verify_password(password_hash, PASSWORD + " ")
    assert not verify_password(password_hash, "")


def test_verify_of_a_malformed_hash_is_false_not_an_error() -> None:
    assert not verify_password("not a hash", PASSWORD)
    assert not verify_password("", PASSWORD)


def test_two_hashes_of_one_password_differ_by_their_salt(password_hash: str) -> None:
    other = hash_password(PASSWORD)
    assert other != password_hash
    assert verify_password(other, PASSWORD)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty"),
        (" leading-space-secret", "white space"),
        ("trailing-space-secret ", "white space"),
        ("two\nlines-of-secret", "spans lines"),
        ("short-1", "shorter than 10"),
        ("QwertyUiop", "commonly used"),
        ("password123", "commonly used"),
        ("Password123!", "commonly used"),
        ("postroom123", "commonly used"),
        ("my-alice-password!", "own name"),
        ("xxALICExx-2024", "own name"),
        ("ababababababab", "too few different characters"),
        ("zzzzzzzzzzzz", "too few different characters"),
    ],
)
def test_weakness_names_the_problem(password: str, reason: str) -> None:
    problem = weakness(password, "alice@example.com", MIN_LENGTH)
    assert problem is not None
    assert reason in problem
    assert password.strip() not in problem or not password.strip()


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "tR7#kq2!Lm9x",
        "Ünïcødé-pässwörd",
        # The own-name rule needs four letters: "bob" in a password is not refused.
        "bobs-gr8-garden",
    ],
)
def test_weakness_accepts_a_good_password(password: str) -> None:
    address = "bob@example.com" if password.startswith("bob") else "alice@example.com"
    assert weakness(password, address, MIN_LENGTH) is None


def test_min_length_is_the_callers() -> None:
    assert weakness("tR7#kq2!Lm9x", "alice@example.com", 13) is not None
    assert weakness("tR7#kq2!Lm9x", "alice@example.com", 12) is None
