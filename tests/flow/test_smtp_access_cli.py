"""SMTP access for apps through the `postroom` CLI, on a domain linked for real.

A private NSD serves the domain's proof so that `domain verify` links it the way an
operator would; the mailbox is created with `mailbox add`. Then the moderation
round trip an app developer and an operator go through: request → pending → reject
(the reason shown) → request again → approve → `smtp info --json` with everything
the app needs; `smtp list --state`; per-mailbox limits and senders; the project's
monthly message limit and its usage in `project list`; and bad input (one line,
exit 2, nothing changed).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.flow.linking import EGRESS, MAIL_HOST, ApplianceZones, link_domain
from tests.peers.dns import NsdServer, make_zone
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

from postroom.config import load_config
from postroom.db.engine import make_engine
from postroom.mailbox.directory import Directory
from postroom.mailbox.usage import ProjectUsage

pytestmark = pytest.mark.flow

DOMAIN = "apps.test"
APP = f"app@{DOMAIN}"
OTHER = f"alerts@{DOMAIN}"
PASSWORD = "copper-kettle-77-window"


@pytest.fixture(scope="module")
def nsd() -> Iterator[tuple[NsdServer, ApplianceZones]]:
    zones = ApplianceZones()
    zones.records[DOMAIN] = []
    with NsdServer({**zones.texts(), DOMAIN: make_zone(DOMAIN, [])}) as server:
        yield server, zones


@pytest.fixture(scope="module")
def appliance(
    tmp_path_factory: pytest.TempPathFactory, nsd: tuple[NsdServer, ApplianceZones]
) -> PostroomServer:
    """Config and state for CLI commands (no `serve` needed: nothing is sent here)."""
    server_dns, zones = nsd
    directory = tmp_path_factory.mktemp("smtp-access")
    submission = (
        "\n[smtp.submission]\n"
        # Two addresses on 587 are one port for the app; 465 is implicit TLS.
        'listen = ["127.0.0.1:587", "[::1]:587"]\n'
        'tls_listen = ["127.0.0.1:465"]\n'
    )
    text = flow_config(
        state_dir=directory / "state",
        smtp_port=free_tcp_port(),
        nameserver=server_dns.nameserver(),
        delivery_port=25,
        hostname=MAIL_HOST,
        extra=EGRESS + submission,
    )
    server = PostroomServer(directory, text, 0)
    server.cli("project", "add", "acme", "--message-limit", "5000")
    link_domain(server, server_dns, zones, DOMAIN)
    for address in (APP, OTHER):
        server.cli("mailbox", "add", address, "--password-stdin", stdin=PASSWORD)
    return server


def refused(appliance: PostroomServer, *args: str) -> str:
    """The one-line error of a command that must exit 2."""
    result = appliance.cli(*args, check=False)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr.strip()


def test_request_reject_request_approve_info(appliance: PostroomServer) -> None:
    before = appliance.cli_json("smtp", "info", APP)
    assert before["state"] == "none" and before["host"] is None

    requested = appliance.cli(
        "smtp", "request", APP.upper(), "--purpose", "newsletters", "--volume", "20000"
    )
    assert "under moderation" in requested.stdout and "pending" in requested.stdout
    pending = appliance.cli_json("smtp", "info", APP)
    assert pending["state"] == "pending"
    assert (pending["purpose"], pending["volume"]) == ("newsletters", 20000)
    assert pending["host"] is None and pending["ports"] is None and pending["username"] is None
    listed = appliance.cli_json("smtp", "list", "--state", "pending")
    assert [row["address"] for row in listed] == [APP]
    assert appliance.cli_json("smtp", "list", "--state", "approved") == []

    again = refused(appliance, "smtp", "request", APP, "--purpose", "x", "--volume", "1")
    assert "already under moderation" in again

    reason = "newsletters go through campaigns, not SMTP"
    appliance.cli("smtp", "reject", APP, "--reason", reason)
    rejected = appliance.cli("smtp", "info", APP).stdout
    assert "rejected" in rejected and reason in rejected
    assert appliance.cli_json("smtp", "info", APP)["reason"] == reason

    appliance.cli("smtp", "request", APP, "--purpose", "order confirmations", "--volume", "300")
    resubmitted = appliance.cli_json("smtp", "info", APP)
    # The operator still sees why the last request was refused.
    assert resubmitted["state"] == "pending" and resubmitted["reason"] == reason

    approved = appliance.cli("smtp", "approve", APP)
    assert "approved" in approved.stdout and MAIL_HOST in approved.stdout
    info = appliance.cli_json("smtp", "info", APP)
    assert info["state"] == "approved" and info["reason"] == ""
    assert info["purpose"] == "order confirmations" and info["volume"] == 300
    assert info["host"] == MAIL_HOST
    assert info["ports"] == [
        {"port": 587, "security": "STARTTLS"},
        {"port": 465, "security": "implicit TLS (SMTPS)"},
    ]
    assert info["username"] == APP
    assert f"postroom mailbox passwd {APP}" in info["password"]
    assert info["senders"] == [APP]
    config = load_config(str(appliance.config_path))
    assert info["limits"] == {
        "per_minute": getattr(config.smtp.submission, "max_per_minute", 100) or None,
        "per_day": getattr(config.smtp.submission, "max_per_day", 10_000) or None,
    }
    assert info["project"] == "acme"
    assert info["message_limit"] == {"used": 0, "limit": 5000}
    assert info["requested_at"] <= info["decided_at"]

    text = appliance.cli("smtp", "info", APP).stdout
    for expected in (MAIL_HOST, "587", "STARTTLS", "465", "implicit TLS", APP, "mailbox passwd"):
        assert expected in text


def test_limits_and_senders(appliance: PostroomServer) -> None:
    appliance.cli("smtp", "limits", OTHER, "--per-minute", "5", "--per-day", "50")
    limits = appliance.cli_json("smtp", "info", OTHER)["limits"]
    assert limits == {"per_minute": 5, "per_day": 50}
    appliance.cli("smtp", "limits", OTHER, "--per-minute", "0")  # back to the default
    info = appliance.cli_json("smtp", "info", OTHER)
    assert info["limits"]["per_day"] == 50 and info["limits"]["per_minute"] != 5
    assert "set for this mailbox" in appliance.cli("smtp", "limits", OTHER).stdout

    assert "any address @apps.test" in appliance.cli("smtp", "senders", OTHER, "--domain").stdout
    assert appliance.cli_json("smtp", "info", OTHER)["senders"] == [f"@{DOMAIN}"]
    appliance.cli("smtp", "senders", OTHER, "--own")
    assert appliance.cli_json("smtp", "info", OTHER)["senders"] == [OTHER]

    # Approval may set it at once; listing shows the setting.
    appliance.cli("smtp", "request", OTHER, "--purpose", "alerts", "--volume", "10")
    appliance.cli("smtp", "approve", OTHER, "--domain-senders")
    listed = {row["address"]: row for row in appliance.cli_json("smtp", "list")}
    assert listed[OTHER]["senders"] == [f"@{DOMAIN}"] and listed[OTHER]["state"] == "approved"
    revoked = appliance.cli_json("smtp", "reject", OTHER, "--reason", "abuse report")
    assert revoked["state"] == "rejected" and revoked["host"] is None


def test_project_limit_and_usage(appliance: PostroomServer) -> None:
    # What the submission listener does per accepted recipient, on the same database.
    [acme] = appliance.cli_json("project", "list")
    assert acme["used"] == 0
    engine = make_engine(load_config(str(appliance.config_path)).database_url)
    try:
        project_id = Directory(engine).project("acme").id
        assert ProjectUsage(engine).reserve(project_id, 7) is not None
    finally:
        engine.dispose()

    [acme] = appliance.cli_json("project", "list")
    assert (acme["used"], acme["message_limit"]) == (7, 5000)
    table = appliance.cli("project", "list").stdout
    assert "USED" in table.splitlines()[0] and " 7 " in table

    limited = appliance.cli_json("project", "limit", "acme", "10")
    assert limited == {"name": "acme", "message_limit": 10, "used": 7}
    assert appliance.cli_json("smtp", "info", APP)["message_limit"] == {"used": 7, "limit": 10}
    assert "message limit none" in appliance.cli("project", "limit", "acme", "none").stdout
    assert appliance.cli_json("project", "list")[0]["message_limit"] is None
    appliance.cli("project", "limit", "acme", "0")
    assert appliance.cli_json("project", "list")[0]["message_limit"] == 0


def test_bad_input_is_one_line_exit_2_and_changes_nothing(appliance: PostroomServer) -> None:
    before = appliance.cli_json("smtp", "list")
    projects = appliance.cli_json("project", "list")
    unknown = refused(appliance, "smtp", "info", f"nobody@{DOMAIN}")
    assert f"no mailbox nobody@{DOMAIN}" in unknown
    assert f"nobody@{DOMAIN}" in refused(
        appliance, "smtp", "request", f"nobody@{DOMAIN}", "--purpose", "x", "--volume", "1"
    )
    assert "not an address" in refused(appliance, "smtp", "info", "not-an-address")
    assert "--volume 'lots'" in refused(
        appliance, "smtp", "request", APP, "--purpose", "x", "--volume", "lots"
    )
    assert "1 to 10,000,000" in refused(
        appliance, "smtp", "request", APP, "--purpose", "x", "--volume", "0"
    )
    # APP is approved: a new request, an approval or an empty reason are refused by state.
    assert "already approved" in refused(
        appliance, "smtp", "request", APP, "--purpose", "x", "--volume", "5"
    )
    assert "already approved" in refused(appliance, "smtp", "approve", APP)
    assert "reason: must not be empty" in refused(appliance, "smtp", "reject", APP, "--reason", " ")
    assert "already rejected" in refused(appliance, "smtp", "reject", OTHER, "--reason", "again")
    assert "--per-day -3" in refused(appliance, "smtp", "limits", APP, "--per-day", "-3")
    fast = refused(appliance, "smtp", "limits", APP, "--per-minute", "fast")
    assert "--per-minute 'fast'" in fast
    assert "one of none, pending" in refused(appliance, "smtp", "list", "--state", "bogus")
    assert "'none'" in refused(appliance, "project", "limit", "acme", "-1")
    assert "'none'" in refused(appliance, "project", "limit", "acme", "plenty")
    assert "no project named 'ghost'" in refused(appliance, "project", "limit", "ghost", "5")
    assert appliance.cli_json("smtp", "list") == before
    assert appliance.cli_json("project", "list") == projects
