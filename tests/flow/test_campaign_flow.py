"""Campaigns end to end through the CLI, against a real serve, NSD, a sink and peers.

A private NSD serves news.test (linked to project acme and verified here: its
DKIM key is what `postroom domain dns` printed; its MX is the session's sink)
and dest.test (MX: the sink). The sender is confirmed with the code the sink
received. Then, as an operator would: a channel, a template with two buttons,
contacts from a CSV file, a draft campaign; its audience report; its preview as
.eml (DKIM verified by Mail::DKIM against NSD; read by Python's email package
and by Perl's Email::MIME: buttons and unsubscribe link in both parts) and as
HTML opened in headless Chromium; test copies delivered to the sink, signed;
drafts-only edits, copies, resends and the contact's history; and bad input
refused with one line, exit 2, nothing half-created.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.flow.conftest import DEST_IP, World, with_token
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain
from tests.flow.test_relay_flow import wait_token
from tests.peers.chromium import open_page
from tests.peers.dns import NsdServer
from tests.peers.email_mime import email_mime_parse
from tests.peers.mail_dkim import mail_dkim_verify
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

pytestmark = pytest.mark.flow

LINKED = "news.test"
SENDER = f"news@{LINKED}"
TO_SINK = ["@ IN MX 10 mx", f"mx IN A {DEST_IP}"]
# What every campaign module's serve has: links under news.test, no DNS step in
# address checks (nothing leaves loopback).
CAMPAIGN_CONFIG = """
[http]
public_url = "https://links.news.test"

[addresses]
dns = false
"""
SHOP_URL = "https://shop.news.test/spring?utm=mail&x=1"
CHANNEL_URL = "https://t.me/news_test_bot"
HTML = """<!doctype html>
<html><head><style>.lead { color: #333333; font-size: 18px; }</style></head>
<body>
<p class="lead">Hello {{ contact.first_name }}!</p>
<p>Spring news from {{ project.name }}, {{ contact.city | default("everywhere") }}.</p>
{{ button("shop") }}
</body></html>
"""
BUTTONS = f"""
[[button]]
name = "shop"
text = "Visit the shop"
url = "{SHOP_URL}"
colour = "#0a7d32"

[[button]]
name = "bot"
text = "Talk to our bot"
channel = "telegram"
"""
CONTACTS = (
    "email,name,first_name,city\r\n"
    "ann@dest.test,Ann Smith,Ann,Berlin\r\n"
    "bob@dest.test,Bob Brown,Bob,\r\n"
    "zoe@dest.test,Zoë Ünal,Zoë,Paris\r\n"
)


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    zones.records.update({"dest.test": TO_SINK, LINKED: []})
    return zones


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    with NsdServer(zones.texts()) as server:
        yield server


@pytest.fixture(scope="module")
def postroom(
    tmp_path_factory: pytest.TempPathFactory,
    nsd: NsdServer,
    zones: ApplianceZones,
    world: World,
) -> Iterator[PostroomServer]:
    directory = tmp_path_factory.mktemp("campaigns")
    with campaign_server(directory, nsd, zones, world) as server:
        server.cli("channel", "add", "telegram", CHANNEL_URL, "--project", "acme")
        (directory / "news.html").write_text(HTML)
        (directory / "buttons.toml").write_text(BUTTONS)
        server.cli(
            "template", "add", "spring", "--project", "acme",
            "--subject", "Spring news for {{ contact.first_name }}",
            "--html", str(directory / "news.html"),
            "--buttons", str(directory / "buttons.toml"),
        )  # fmt: skip
        (directory / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
        server.cli(
            "contact", "import", str(directory / "contacts.csv"),
            "--project", "acme", "--list", "customers",
        )  # fmt: skip
        yield server


@contextmanager
def campaign_server(
    directory: Path,
    nsd: NsdServer,
    zones: ApplianceZones,
    world: World,
    *,
    extra: str = "",
    delivery: str = "",
) -> Iterator[PostroomServer]:
    """A serve on the module's NSD, delivering to the session's sinks, with CAMPAIGN_CONFIG
    and `extra`, and project acme ready to send (`ready_to_send`)."""
    port = free_tcp_port()
    text = flow_config(
        state_dir=directory / "state",
        smtp_port=port,
        nameserver=nsd.nameserver(),
        delivery_port=world.sink_port,
        hostname=MAIL_HOST,
        extra=CAMPAIGN_CONFIG + extra,
        delivery=delivery,
    )
    with PostroomServer(directory, text, port) as server:
        ready_to_send(server, nsd, zones, world)
        yield server


def ready_to_send(
    server: PostroomServer, nsd: NsdServer, zones: ApplianceZones, world: World
) -> None:
    """Project acme with LINKED verified (its zone published, mail to the sink) and SENDER
    a mailbox and a confirmed sender: what every campaign of these modules sends from."""
    server.cli("project", "add", "acme")
    proof = link_domain(server, nsd, zones, LINKED)
    generated = server.cli("domain", "dns", LINKED, "--format", "bind").stdout.splitlines()
    kept = [line for line in generated if " MX " not in line]
    zones.publish(nsd, LINKED, [*kept, f'@ IN TXT "{proof}"', *TO_SINK])
    server.cli("mailbox", "add", SENDER, "--password-stdin", stdin="copper-meadow-lantern-61")
    confirm_sender(server, world, SENDER)


def add_hello_template(server: PostroomServer, html: str) -> None:
    """acme's template "hello": `html`, and a subject naming the contact's first_name."""
    path = server.directory / "news.html"
    path.write_text(html)
    server.cli(
        "template", "add", "hello", "--project", "acme",
        "--subject", "News for {{ contact.first_name }}", "--html", str(path),
    )  # fmt: skip


def confirm_sender(server: PostroomServer, world: World, address: str) -> None:
    def codes() -> list[str]:
        """The codes mailed to `address` so far, oldest first (other modules' servers
        may have mailed it a code, or a DSN, earlier in the session)."""
        subjects = [
            str(email.message_from_bytes(m.data, policy=email.policy.default)["Subject"])
            for m in with_token(world.dest.messages(), address)
            if address in m.rcpt_tos
        ]
        return [code.group(1) for s in subjects if (code := re.match(r"(\d{6}) is your", s))]

    before = len(codes())
    server.cli("sender", "add", address, "--project", "acme", "--name", "News Test")
    deadline = time.monotonic() + 60
    while len(codes()) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    mailed = codes()
    assert len(mailed) > before, "no confirmation code mailed"
    server.cli("sender", "confirm", address, mailed[-1])


def create(server: PostroomServer, *flags: str) -> int:
    done = server.cli(
        "campaign", "create", "--project", "acme", "--name", f"spring {uuid.uuid4().hex[:6]}",
        "--sender", SENDER, "--template", "spring", *flags,
    )  # fmt: skip
    return int(done.stdout.splitlines()[-1])


def delivered_to(world: World, address: str, token: str, timeout_s: float = 60) -> bool:
    """Whether the sink got a message to `address` containing `token` (waits for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(address in m.rcpt_tos for m in with_token(world.dest.messages(), token)):
            return True
        time.sleep(0.1)
    return False


def set_state(server: PostroomServer, campaign_id: int, state: str) -> None:
    """What launching (part 2) will do; until then, the test moves the state itself."""
    with sqlite3.connect(server.directory / "state" / "postroom.db") as db:
        db.execute("UPDATE campaigns SET state = ? WHERE id = ?", (state, campaign_id))


def parts(message: email.message.EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


def test_create_prints_the_id_and_show_and_list_describe_the_draft(
    postroom: PostroomServer,
) -> None:
    campaign_id = create(postroom, "--list", "customers", "--var", "city exists")
    as_json = postroom.cli_json(
        "campaign", "create", "--project", "acme", "--name", "json", "--sender", SENDER,
        "--template", "spring", "--json",
    )  # fmt: skip
    assert as_json == {"id": campaign_id + 1}
    shown = postroom.cli_json("campaign", "show", str(campaign_id))
    assert shown["state"] == "draft" and shown["sender"] == SENDER
    assert shown["template"] == "spring" and shown["project"] == "acme"
    listed = postroom.cli_json("campaign", "list", "--project", "acme", "--state", "draft")
    assert {campaign_id, campaign_id + 1} <= {c["id"] for c in listed}


def test_the_audience_report_counts_recipients_and_names_missing_variables(
    postroom: PostroomServer,
) -> None:
    campaign_id = create(postroom, "--list", "customers")
    report = postroom.cli_json("campaign", "audience", str(campaign_id))
    assert report["id"] == campaign_id
    assert report["audience"] == 3 and report["gate"]["ok"] is True
    assert report["missing_variables"] == {}  # city has a default; first_name everyone has
    narrowed = create(postroom, "--list", "customers", "--var", "city = Berlin")
    assert postroom.cli_json("campaign", "audience", str(narrowed))["audience"] == 1


def test_the_preview_is_the_signed_message_both_parsers_read(
    postroom: PostroomServer, nsd: NsdServer, tmp_path: Path
) -> None:
    campaign_id = create(postroom, "--list", "customers")
    out = tmp_path / "zoe.eml"
    postroom.cli(
        "campaign", "preview", str(campaign_id), "--contact", "zoe@dest.test",
        "--format", "eml", "--out", str(out),
    )  # fmt: skip
    data = out.read_bytes()
    report = mail_dkim_verify(nsd, data)
    assert [(v.domain, v.result) for v in report.signatures if v.algorithm == "rsa-sha256"] == [
        (LINKED, "pass")
    ]
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert str(message["Subject"]) == "Spring news for Zoë"
    assert message["To"].addresses[0].addr_spec == "zoe@dest.test"
    # Read as a header value: a parser unfolds the long field into one line.
    unsubscribe = re.fullmatch(
        r"<(https://[^>]+)>,\s*<mailto:([^>]+)>", " ".join(str(message["List-Unsubscribe"]).split())
    )
    assert unsubscribe is not None, message["List-Unsubscribe"]
    https, mailto = unsubscribe.groups()
    assert https.startswith("https://links.news.test/u/")
    assert mailto.startswith("unsubscribe+") and mailto.endswith(f"@{MAIL_HOST}")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk" and message["List-Id"] and message["Feedback-ID"]
    python_parts = parts(message)
    assert list(python_parts) == ["text/plain", "text/html"]
    perl = email_mime_parse(out)
    assert perl["subject"] == "Spring news for Zoë"
    perl_parts = {p["type"].split(";")[0]: p["body"] for p in perl["parts"]}
    for body in [*python_parts.values(), *perl_parts.values()]:
        assert https in body and CHANNEL_URL in body
        assert SHOP_URL in body or SHOP_URL.replace("&", "&amp;") in body
    assert "Hello Zoë!" in python_parts["text/plain"] and "Paris" in python_parts["text/plain"]


def test_the_preview_html_opens_in_chromium_with_buttons_and_footer(
    postroom: PostroomServer, tmp_path: Path
) -> None:
    campaign_id = create(postroom, "--list", "customers")
    page = tmp_path / "ann.html"
    postroom.cli(
        "campaign", "preview", str(campaign_id), "--contact", "ann@dest.test",
        "--format", "html", "--out", str(page),
    )  # fmt: skip
    text = postroom.cli(
        "campaign", "preview", str(campaign_id), "--contact", "ann@dest.test", "--format", "text"
    ).stdout
    assert f"Visit the shop: {SHOP_URL}" in text and "Hello Ann!" in text
    dom = open_page(page, tmp_path / "ann.png")
    hrefs = dict(dom.links)
    assert hrefs[SHOP_URL] == "Visit the shop" and hrefs[CHANNEL_URL] == "Talk to our bot"
    assert any(href.startswith("https://links.news.test/u/") for href in hrefs)
    assert {"postroom-button", "postroom-footer"} <= dom.classes


def test_test_copies_reach_the_sink_marked_and_signed(
    postroom: PostroomServer, nsd: NsdServer, world: World
) -> None:
    campaign_id = create(postroom, "--list", "customers")
    stranger = f"qa-{uuid.uuid4().hex[:8]}@dest.test"
    # Not a contact: the template needs first_name, so the copy asks whose fields to show.
    refused = postroom.cli("campaign", "test", str(campaign_id), "--to", stranger, check=False)
    assert refused.returncode == 2
    assert "'contact.first_name'" in refused.stderr and "--as CONTACT" in refused.stderr
    queued = postroom.cli(
        "campaign", "test", str(campaign_id), "--to", stranger, "--as", "ann@dest.test"
    ).stdout  # fmt: skip
    assert f"queued test copy to {stranger} (as ann@dest.test)" in queued
    [received] = [m for m in wait_token(world.dest, stranger) if stranger in m.rcpt_tos]
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert str(message["Subject"]) == "[TEST] Spring news for Ann"
    assert message["To"].addresses[0].addr_spec == stranger
    report = mail_dkim_verify(nsd, received.data)
    assert (LINKED, "pass") in [(v.domain, v.result) for v in report.signatures]
    # A contact's own address gets its own fields.
    postroom.cli("campaign", "test", str(campaign_id), "--to", "ann@dest.test")
    assert delivered_to(world, "ann@dest.test", "Subject: [TEST] Spring news for Ann\r\n")


def test_only_drafts_change_copies_and_resends_reach_the_contact_history(
    postroom: PostroomServer, world: World
) -> None:
    campaign_id = create(postroom, "--list", "customers")
    postroom.cli("campaign", "edit", str(campaign_id), "--name", "renamed")
    assert postroom.cli_json("campaign", "show", str(campaign_id))["name"] == "renamed"
    set_state(postroom, campaign_id, "sent")
    refused = postroom.cli("campaign", "edit", str(campaign_id), "--name", "x", check=False)
    assert refused.returncode == 2 and "only a draft" in refused.stderr
    assert postroom.cli("campaign", "delete", str(campaign_id), check=False).returncode == 2

    copy_id = int(postroom.cli("campaign", "copy", str(campaign_id)).stdout.splitlines()[-1])
    copied = postroom.cli_json("campaign", "show", str(copy_id))
    assert copied["state"] == "draft" and copied["copied_from"] == campaign_id
    assert copied["name"] == "Copy of renamed"
    postroom.cli("campaign", "delete", str(copy_id))

    resent = postroom.cli_json(
        "campaign", "resend", str(campaign_id), "--contact", "bob@dest.test", "--json"
    )
    assert wait_token(world.dest, "Subject: Spring news for Bob")
    history = postroom.cli_json("contact", "history", "bob@dest.test", "--project", "acme")
    [item] = [i for i in history["sent"] if i["queue_id"] == resent["queue_id"]]
    assert item["campaign"] == campaign_id and item["kind"] == "resend"
    assert item["subject"] == "Spring news for Bob"


def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    postroom: PostroomServer, tmp_path: Path
) -> None:
    before = postroom.cli_json("campaign", "list", "--project", "acme")
    base = ["campaign", "create", "--project", "acme", "--name", "bad"]
    postroom.cli("sender", "add", "pending@dest.test", "--project", "acme")
    cases = {
        "no sender nobody@news.test": [
            *base,
            "--sender",
            "nobody@news.test",
            "--template",
            "spring",
        ],
        "is not confirmed yet": [*base, "--sender", "pending@dest.test", "--template", "spring"],
        "no template 'missing'": [*base, "--sender", SENDER, "--template", "missing"],
        "'ghosts'": [*base, "--sender", SENDER, "--template", "spring", "--list", "ghosts"],
        "'>>'": [*base, "--sender", SENDER, "--template", "spring", "--var", "age >> 3"],
    }
    for expected, command in cases.items():
        done = postroom.cli(*command, check=False)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    huge = postroom.cli("campaign", "show", "99999999999999999999", check=False)
    assert huge.returncode == 2 and "not a campaign id" in huge.stderr
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_bytes(b"name,city\r\nAnn,Berlin\r\n")  # no email column
    done = postroom.cli(
        *base, "--sender", SENDER, "--template", "spring", "--csv", str(bad_csv), check=False
    )
    assert done.returncode == 2 and "bad.csv" in done.stderr
    assert postroom.cli_json("campaign", "list", "--project", "acme") == before


def test_recipients_from_a_csv_file_get_a_list_of_their_own(
    postroom: PostroomServer, tmp_path: Path
) -> None:
    recipients = tmp_path / "spring-fair.csv"
    recipients.write_text(
        "email;first_name\r\ncarla@dest.test;Carla\r\nnot-an-address;X\r\ndan@dest.test;Dan\r\n",
        encoding="utf-8",
    )
    created = postroom.cli(
        "campaign", "create", "--project", "acme", "--name", "fair", "--sender", SENDER,
        "--template", "spring", "--csv", str(recipients), "--json",
    )  # fmt: skip
    campaign_id = json.loads(created.stdout)["id"]  # stdout is the id alone with --json
    assert "2 accepted" in created.stderr and "line 3" in created.stderr  # the import report
    shown = postroom.cli_json("campaign", "show", str(campaign_id))
    assert shown["list"] == "campaign: fair" and shown["audience"]["lists"] == ["campaign: fair"]
    report = postroom.cli_json("campaign", "audience", str(campaign_id))
    assert report["audience"] == 2
    members = postroom.cli_json("list", "members", "campaign: fair", "--project", "acme")
    assert sorted(m["address"] for m in members["members"]) == ["carla@dest.test", "dan@dest.test"]
    # A new audience keeps the campaign's own list; deleting the draft takes the list along.
    postroom.cli("campaign", "edit", str(campaign_id), "--list", "customers")
    edited = postroom.cli_json("campaign", "show", str(campaign_id))
    assert edited["audience"]["lists"] == ["customers", "campaign: fair"]
    postroom.cli("campaign", "delete", str(campaign_id))
    gone = postroom.cli("list", "show", "campaign: fair", "--project", "acme", check=False)
    assert gone.returncode == 2


def test_test_copies_never_go_to_a_contact_campaigns_skip(postroom: PostroomServer) -> None:
    campaign_id = create(postroom, "--list", "customers")
    postroom.cli("contact", "add", "eve@dest.test", "--project", "acme", "--no-dns")
    postroom.cli("contact", "block", "eve@dest.test", "--project", "acme")
    refused = postroom.cli(
        "campaign", "test", str(campaign_id), "--to", "eve@dest.test", check=False
    )
    assert refused.returncode == 2
    assert (
        refused.stderr == "postroom: contact eve@dest.test is blocked: campaigns send it nothing\n"
    )
