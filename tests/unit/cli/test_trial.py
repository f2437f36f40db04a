"""`postroom config init`: the trial config it writes loads, its self-signed certificate
is valid and matches its key, and the notes `make run` prints tell what to export,
where it listens and how to send a first message (with --from)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postroom.cli.main import main
from postroom.cli.trial import trial_notes
from postroom.config import Config, load_config
from postroom.config.schema import InboundConfig, SmtpConfig


@pytest.fixture
def initialised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    config_path = tmp_path / "trial" / "postroom.toml"
    status = main(["-c", str(config_path), "config", "init", "--state-dir", str(tmp_path / "st")])
    assert status == 0
    return config_path, capsys.readouterr().out


def test_trial_config_listens_on_unprivileged_ports_with_a_certificate(
    initialised: tuple[Path, str], tmp_path: Path
) -> None:
    config_path, _ = initialised
    config = load_config(config_path)
    assert config.state.dir == str((tmp_path / "st").resolve())
    assert config.smtp.inbound.listen == ("127.0.0.1:2525",)
    assert config.smtp.submission.listen == ("127.0.0.1:5587",)
    assert config.smtp.submission.tls_listen == ("127.0.0.1:5465",)
    assert config.http.listen == ()  # nothing serves HTTP yet
    assert "trial-self-signed" in Path(config.tls.cert).name
    assert "SELF-SIGNED" in config_path.read_text()


def test_trial_certificate_is_self_signed_and_matches_its_key(
    initialised: tuple[Path, str],
) -> None:
    config = load_config(initialised[0])
    cert = x509.load_pem_x509_certificate(Path(config.tls.cert).read_bytes())
    key = serialization.load_pem_private_key(Path(config.tls.key).read_bytes(), password=None)

    assert key.public_key() == cert.public_key()
    cert.verify_directly_issued_by(cert)  # self-signed: raises unless its own key signed it
    assert cert.issuer == cert.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert config.server.hostname in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert cert.not_valid_before_utc < cert.not_valid_after_utc
    assert stat.S_IMODE(Path(config.tls.key).stat().st_mode) == 0o600


def test_notes_tell_what_to_export_where_it_listens_and_how_to_try(
    initialised: tuple[Path, str],
) -> None:
    config_path, out = initialised
    assert f"{config_path}: written" in out
    assert f"export POSTROOM_CONFIG={config_path}\n" in out
    assert config_path.is_absolute()
    for port in ("2525", "5587", "5465"):
        assert f"127.0.0.1:{port}" in out
    assert "swaks --server 127.0.0.1 --port 2525 --from you@example.test" in out
    assert "apt install swaks" in out


def test_an_existing_config_is_kept_and_still_explained(
    initialised: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, _ = initialised
    before = config_path.read_text()
    status = main(["-c", str(config_path), "config", "init", "--state-dir", str(tmp_path / "x")])
    out = capsys.readouterr().out
    assert status == 0
    assert "exists, left as it is" in out
    assert f"export POSTROOM_CONFIG={config_path}" in out
    assert config_path.read_text() == before


def test_notes_add_the_scripts_directory_to_path_when_given() -> None:
    notes = trial_notes(Path("/srv/postroom.toml"), Config(), Path("/srv/checkout/.venv/bin"))
    assert "  export PATH=/srv/checkout/.venv/bin:$PATH\n" in notes
    assert "export PATH" not in trial_notes(Path("/srv/postroom.toml"), Config(), None)


def test_notes_send_a_wildcard_listener_s_clients_to_loopback() -> None:
    config = Config(smtp=SmtpConfig(inbound=InboundConfig(listen=("0.0.0.0:25",))))
    notes = trial_notes(Path("/etc/postroom/postroom.toml"), config)
    assert "swaks --server 127.0.0.1 --port 25 --from" in notes
    assert "submission" not in notes  # none configured, none shown
