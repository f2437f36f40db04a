"""The submission listeners' TLS context: TLS 1.2+ from a PEM pair, or a one-line
startup error naming the file — before any socket is bound."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
import trustme

from postroom.core.errors import StartupError
from postroom.core.tls import server_context


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("mail.example.test")
    cert, key, other_key = directory / "cert.pem", directory / "key.pem", directory / "other.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.issue_cert("other.example.test").private_key_pem.write_to_path(str(other_key))
    return cert, key, other_key


def test_a_pem_pair_gives_a_tls_1_2_plus_server_context(pair: tuple[Path, Path, Path]) -> None:
    cert, key, _ = pair
    context = server_context(str(cert), str(key))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE  # apps authenticate with AUTH, not certificates


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("missing", "no such file"),
        ("mismatched", "not a usable PEM certificate and matching key"),
        ("unset", "set [tls] cert and [tls] key"),
    ],
)
def test_an_unusable_pair_is_a_startup_error(
    pair: tuple[Path, Path, Path], tmp_path: Path, which: str, expected: str
) -> None:
    cert, key, other_key = pair
    arguments = {
        "missing": (str(tmp_path / "nope.pem"), str(key)),
        "mismatched": (str(cert), str(other_key)),
        "unset": ("", ""),
    }[which]
    with pytest.raises(StartupError, match=re.escape(expected)):
        server_context(*arguments)
