"""The appliance secret: one file of 32 random bytes, and what is derived from it.

`SecretBox.load(path, create=...)` reads `[secrets] key_file` (default
`<state.dir>/secret.key`): base64 text on one line, mode 0600 — a file that
grants group or others any access is refused. With `create`, a missing file is
written first, atomically, and a concurrent creator's file is never replaced.
`derive(info)` gives a 32-byte sub-key per purpose (HKDF-SHA256), so one
secret serves several uses without one use's key revealing another's:
`encrypt`/`decrypt` use the DKIM-keys sub-key (Fernet: AES-128-CBC + HMAC),
later token signing its own. Every node sharing the database needs the same file.

Errors are `SecretKeyError` with one line naming the file and the problem.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from postroom.core.errors import cannot
from postroom.core.statefiles import make_directories

DKIM_KEYS_INFO = b"postroom dkim keys"
"""HKDF info string of the sub-key that encrypts DKIM private keys."""

SECRET_SIZE_BYTES = 32
# A valid secret file is 45 bytes; reading a bounded amount keeps a wrong path harmless.
_MAX_SECRET_FILE_BYTES = 1024


class SecretKeyError(Exception):
    """The secret key file is missing, unreadable, too open or malformed, or does not fit."""


class SecretBox:
    """The appliance secret: encrypts and decrypts DKIM private keys, derives sub-keys."""

    __slots__ = ("_fernet", "_path", "_secret")

    def __init__(self, path: Path, secret: bytes) -> None:
        if len(secret) != SECRET_SIZE_BYTES:
            raise SecretKeyError(f"{path}: the secret must be {SECRET_SIZE_BYTES} bytes")
        self._path = path
        self._secret = secret
        self._fernet = Fernet(base64.urlsafe_b64encode(self.derive(DKIM_KEYS_INFO)))

    @classmethod
    def load(cls, path: Path, *, create: bool) -> SecretBox:
        """Read the secret file; with `create`, first write a new one if it is missing.

        The file must not grant any permission to group or others. Creation is atomic and
        safe against a concurrent creator: whichever file lands first is the one used.
        """
        path = Path(path)
        if create and not path.exists():
            _create_secret_file(path)
        return cls(path, _read_secret_file(path))

    @property
    def path(self) -> Path:
        return self._path

    def derive(self, info: bytes) -> bytes:
        """A 32-byte sub-key for one purpose, named by `info` (HKDF-SHA256, no salt)."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self._secret)

    def encrypt(self, data: bytes) -> bytes:
        """A Fernet token (URL-safe base64 bytes) holding `data`, authenticated."""
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """The data in a token from `encrypt`; `SecretKeyError` if this secret did not make it."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            # Fernet cannot tell a wrong key from an altered token: both fail the HMAC.
            raise SecretKeyError(
                f"cannot decrypt stored secret with {self._path}: wrong secret key "
                "(or the stored data was altered)"
            ) from None

    def __repr__(self) -> str:
        return f"SecretBox(path={str(self._path)!r})"


def _create_secret_file(path: Path) -> None:
    data = base64.b64encode(secrets.token_bytes(SECRET_SIZE_BYTES)) + b"\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # The state directory may not exist yet (PostgreSQL: nothing else made it).
        make_directories(path.parent)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # link, unlike rename, never replaces a file another process created meanwhile.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise SecretKeyError(cannot(path, "create the secret key file", error)) from error
    finally:
        with contextlib.suppress(OSError):  # e.g. the directory could not be made
            temporary.unlink(missing_ok=True)


def _read_secret_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & 0o077:
                raise SecretKeyError(
                    f"{path}: secret key file has mode {mode:04o}; it must not be readable "
                    f"or writable by group or others (chmod 600 {path})"
                )
            content = handle.read(_MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError as error:
        raise SecretKeyError(
            f"{path}: secret key file is missing (every node sharing the database needs a copy "
            "of the same file)"
        ) from error
    except OSError as error:
        raise SecretKeyError(cannot(path, "read the secret key file", error)) from error
    malformed = SecretKeyError(
        f"{path}: malformed secret key file: expected {SECRET_SIZE_BYTES} random bytes "
        "as base64 on one line"
    )
    line = content.strip(b" \t\r\n")
    if len(content) > _MAX_SECRET_FILE_BYTES or not line or b"\n" in line:
        raise malformed
    try:
        secret = base64.b64decode(line, validate=True)
    except binascii.Error:
        raise malformed from None
    if len(secret) != SECRET_SIZE_BYTES:
        raise malformed
    return secret
