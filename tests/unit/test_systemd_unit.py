"""The systemd unit, sysusers and tmpfiles files: systemd accepts them, hardening is present.

`systemd-analyze verify` checks that ExecStart binaries exist, so it runs on a copy
of the unit in a temp dir with /usr/bin/postroom rewritten to the console script
of this environment. It exits 0 even for unknown keys, so any output line that
names the unit fails the test. A missing systemd-analyze fails (never skips).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD_DIR / "postroom.service"
INSTALLED_BINARY = "/usr/bin/postroom"
CONFIG = "/etc/postroom/postroom.toml"


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section → key → values in order (a key may repeat, e.g. ExecStartPre)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def local_postroom_binary() -> str:
    """The console script next to this interpreter, else the interpreter as a stand-in."""
    candidate = Path(sys.executable).parent / "postroom"
    return str(candidate) if candidate.exists() else sys.executable


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd"
    copy = tmp_path / "postroom.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, local_postroom_binary()))

    result = subprocess.run(
        [analyze, "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    output = result.stdout + result.stderr
    complaints = [line for line in output.splitlines() if "postroom" in line]
    assert result.returncode == 0, output
    assert complaints == [], output


SERVICE_EXPECTED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "User": "postroom",
    "Group": "postroom",
    "ExecStart": f"{INSTALLED_BINARY} serve -c {CONFIG}",
    "ExecStartPre": f"{INSTALLED_BINARY} db upgrade -c {CONFIG}",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "90",
    "Restart": "on-failure",
    "LimitNOFILE": "65536",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "StateDirectory": "postroom",
    "ConfigurationDirectory": "postroom",
}


@pytest.mark.parametrize(("key", "expected"), sorted(SERVICE_EXPECTED.items()))
def test_service_directive(key: str, expected: str) -> None:
    service = unit_directives(UNIT.read_text())["Service"]
    assert service.get(key) == [expected], f"{key}: {service.get(key)}"


def test_unit_is_installable() -> None:
    sections = unit_directives(UNIT.read_text())
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in sections["Unit"]["After"][0].split()


def test_sysusers_declares_the_postroom_user() -> None:
    entries = [
        line.split()
        for line in (SYSTEMD_DIR / "postroom.sysusers").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert [entry[:2] for entry in entries] == [["u", "postroom"]]


def test_tmpfiles_keeps_the_config_directory_private() -> None:
    entries = [
        line.split()
        for line in (SYSTEMD_DIR / "postroom.tmpfiles").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ["d", "/etc/postroom", "0750", "root", "postroom", "-", "-"] in entries


def test_sysusers_and_tmpfiles_parse(tmp_path: Path) -> None:
    """systemd's own parsers accept both files (dry runs into an empty root)."""
    sysusers = shutil.which("systemd-sysusers")
    tmpfiles = shutil.which("systemd-tmpfiles")
    assert sysusers is not None and tmpfiles is not None, "systemd tools missing"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    users = subprocess.run(
        [sysusers, f"--root={root}", str(SYSTEMD_DIR / "postroom.sysusers")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert users.returncode == 0, users.stderr
    assert "postroom:" in (root / "etc" / "passwd").read_text()
    files = subprocess.run(
        [tmpfiles, f"--root={root}", "--create", str(SYSTEMD_DIR / "postroom.tmpfiles")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert files.returncode == 0, files.stderr
    assert (root / "etc" / "postroom").is_dir()
