"""`postroom list ...` through `main`: create, show, members (add validates and creates,
remove needs members), list, delete (refused while a draft names the list); every
bad input one line on stderr, exit 2, nothing changed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from tests.unit.cli.conftest import Run

from postroom.campaign.audience import AudienceFilter
from postroom.config import load_config
from postroom.db.engine import make_engine
from postroom.db.models import campaigns, projects, senders, templates


@pytest.fixture
def shop(run: Run) -> Run:
    assert run("project", "add", "shop")[0] == 0
    assert run("list", "add", "news", "--project", "shop")[0] == 0
    return run


def members(run: Run, name: str = "news") -> list[str]:
    status, out, err = run("list", "members", name, "--project", "shop", "--json")
    assert status == 0, err
    return [member["address"] for member in json.loads(out)["members"]]


def test_members_are_added_shown_and_removed(shop: Run) -> None:
    shop("contact", "add", "old@example.com", "--project", "shop", "--no-dns")
    status, out, err = shop(
        "list", "members", "news", "--project", "shop", "--add", "old@example.com",
        "New@Example.org", "new@example.org", "--no-dns", "--json",
    )  # fmt: skip
    assert status == 0, err
    assert json.loads(out) == {"list": "news", "added": 2, "created": 1}
    assert members(shop) == ["new@example.org", "old@example.com"]
    status, out, _ = shop("contact", "show", "new@example.org", "--project", "shop", "--json")
    assert json.loads(out)["rating"] == 10  # added by hand
    status, out, _ = shop("list", "show", "news", "--project", "shop", "--json")
    assert json.loads(out)["members"] == 2 and json.loads(out)["name"] == "news"
    status, out, _ = shop("list", "list", "--project", "shop", "--json")
    assert [(item["name"], item["members"]) for item in json.loads(out)] == [("news", 2)]
    status, out, err = shop(
        "list", "members", "news", "--project", "shop", "--remove", "old@example.com"
    )
    assert (status, err) == (0, ""), err
    assert members(shop) == ["new@example.org"]
    status, out, _ = shop("contact", "show", "old@example.com", "--project", "shop")
    assert status == 0  # the contact stays


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "add", "news", "--project", "shop"], "list 'news' already exists"),
        (["list", "add", "", "--project", "shop"], "a list name cannot be empty"),
        (["list", "add", "x", "--project", "nope"], "no project named 'nope'"),
        (["list", "show", "nope", "--project", "shop"], "no list named 'nope'"),
        (["list", "delete", "nope", "--project", "shop"], "no list named 'nope'"),
        (["list", "members", "nope", "--project", "shop"], "no list named 'nope'"),
        (
            ["list", "members", "news", "--project", "shop", "--add", "ok@example.com",
             "bad@@example.com", "--no-dns"],
            "'bad@@example.com': invalid address",
        ),
        (
            ["list", "members", "news", "--project", "shop", "--add", "abuse@example.com",
             "--no-dns"],
            "risky address",
        ),
        (
            ["list", "members", "news", "--project", "shop", "--remove", "ghost@example.com"],
            "no contact ghost@example.com",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    shop: Run, argv: list[str], message: str
) -> None:
    status, out, err = shop(*argv)
    assert (status, out) == (2, "")
    assert message in err and err.count("\n") == 1
    assert members(shop) == []


def test_removing_a_contact_that_is_not_a_member_removes_nothing(shop: Run) -> None:
    shop("list", "members", "news", "--project", "shop", "--add", "a@example.com", "--no-dns")
    shop("contact", "add", "b@example.com", "--project", "shop", "--no-dns")
    status, _, err = shop(
        "list", "members", "news", "--project", "shop", "--remove", "a@example.com",
        "b@example.com",
    )  # fmt: skip
    assert status == 2 and "b@example.com is not on list 'news'" in err
    assert members(shop) == ["a@example.com"]


@pytest.mark.parametrize("verb", ["delete", "remove"])
def test_delete_keeps_contacts_and_is_refused_while_a_draft_uses_the_list(
    shop: Run, config: Path, verb: str
) -> None:
    shop("list", "members", "news", "--project", "shop", "--add", "a@example.com", "--no-dns")
    shop("list", "add", "other", "--project", "shop")
    engine = make_engine(load_config(str(config)).database_url)
    with engine.begin() as conn:
        project_id = conn.execute(select(projects.c.id).where(projects.c.name == "shop")).scalar()
        now = time.time()
        sender_id = conn.execute(
            insert(senders).values(
                project_id=project_id, address="s@example.com", state="confirmed", created_at=now
            )
        ).inserted_primary_key[0]
        template_id = conn.execute(
            insert(templates).values(
                project_id=project_id, name="t", subject="s", html="h", created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        audience = AudienceFilter(lists=("other",), exclude_lists=("news",)).to_json()
        campaign = {
            "project_id": project_id, "name": "spring", "sender_id": sender_id,
            "template_id": template_id, "audience": audience, "created_at": now,
            "updated_at": now,
        }  # fmt: skip
        conn.execute(insert(campaigns).values(**campaign, state="draft"))
        finished = AudienceFilter(lists=("spare",)).to_json()
        conn.execute(insert(campaigns).values({**campaign, "audience": finished, "state": "sent"}))
    engine.dispose()
    status, out, err = shop("list", verb, "news", "--project", "shop")
    assert (status, out) == (2, "")
    assert "list 'news' is used by campaign 1 ('spring')" in err
    assert members(shop) == ["a@example.com"]
    status, out, err = shop("list", verb, "news", "--project", "shop", "--json")
    assert status == 2  # still refused
    shop("list", "add", "spare", "--project", "shop")
    shop("list", "members", "spare", "--project", "shop", "--add", "a@example.com", "--no-dns")
    status, out, err = shop("list", verb, "spare", "--project", "shop", "--json")
    assert status == 0, err
    assert json.loads(out)["members"] == 1 and json.loads(out)["deleted"] is True
    status, _, _ = shop("contact", "show", "a@example.com", "--project", "shop")
    assert status == 0
    assert shop("list", "show", "spare", "--project", "shop")[0] == 2
