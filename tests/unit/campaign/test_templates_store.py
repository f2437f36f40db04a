"""The template store and its CLI: compile before storing, channels, deletion rules."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert
from tests.unit.cli.running import run_cli, write_config

from postroom.campaign.buttons import Button, ButtonError, parse_buttons
from postroom.campaign.channels import ChannelError, Channels
from postroom.campaign.render import TemplateError, TemplateSource
from postroom.campaign.templates import Templates, TemplateStoreError
from postroom.config import load_config
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import campaigns, projects, senders

TELEGRAM = Button("tg", "Telegram", channel="telegram")


@pytest.fixture
def store(tmp_path: Path) -> Templates:
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    upgrade(engine)
    with engine.begin() as conn:
        for name in ("acme", "other"):
            conn.execute(insert(projects).values(name=name, created_at=time.time()))
    return Templates(engine)


def test_a_template_is_stored_only_when_it_compiles_and_its_channels_exist(
    store: Templates,
) -> None:
    source = TemplateSource("Hi", "<p>{{ button('tg') }}</p>", buttons=(TELEGRAM,))
    with pytest.raises(TemplateError, match="no channel 'telegram'"):
        store.add("acme", "news", source)
    with pytest.raises(TemplateError, match="html: line 1"):
        store.add("acme", "news", TemplateSource("Hi", "{{ x ) }}"))
    assert store.list("acme") == []
    Channels(store.engine).add("acme", "telegram", "https://t.me/acme")
    stored = store.add("acme", "news", source)
    assert store.get("acme", "news") == stored
    assert store.get_by_id(stored.id).source == source
    with pytest.raises(TemplateStoreError):
        store.get_by_id(stored.id, project_id=stored.project_id + 1)
    with pytest.raises(TemplateStoreError, match="no template 'news' in project 'other'"):
        store.get("other", "news")
    with pytest.raises(ChannelError, match="used by template"):
        Channels(store.engine).remove("acme", "telegram")


def test_edit_recompiles_and_keeps_the_old_template_when_refused(store: Templates) -> None:
    store.add("acme", "news", TemplateSource("Hi", "<p>a</p>", "text"))
    with pytest.raises(TemplateError, match="subject: line 1"):
        store.edit("acme", "news", subject="{% if %}")
    assert store.get("acme", "news").source.subject == "Hi"
    edited = store.edit("acme", "news", html="<p>b</p>", derive_text=True)
    assert (edited.source.subject, edited.source.html, edited.source.text) == (
        "Hi",
        "<p>b</p>",
        None,
    )


def test_delete_is_refused_while_a_draft_uses_the_template(store: Templates) -> None:
    stored = store.add("acme", "news", TemplateSource("Hi", "<p>a</p>"))
    now = time.time()
    with store.engine.begin() as conn:
        sender = conn.execute(
            insert(senders).values(
                project_id=1, address="n@shop.test", state="confirmed", created_at=now
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(campaigns).values(
                project_id=1,
                name="Spring",
                sender_id=sender,
                template_id=stored.id,
                state="draft",
                created_at=now,
                updated_at=now,
            )
        )
    with pytest.raises(TemplateStoreError, match=r"draft campaign\(s\) 1 \(Spring\)"):
        store.delete("acme", "news")
    with store.engine.begin() as conn:
        conn.execute(campaigns.update().values(state="sent"))
    store.delete("acme", "news")
    assert store.list("acme") == []


def test_a_buttons_file_error_names_file_line_and_field() -> None:
    data = b'[[button]]\nname = "a"\ntext = "A"\nurl = "https://a.test/"\n\n[[button]]\n'
    data += b'name = "b"\ntext = "B"\nurl = "javascript:alert(1)"\n'
    with pytest.raises(ButtonError, match=r"^b\.toml: line 6: button 2 \('b'\): url: "):
        parse_buttons(data, "b.toml")
    with pytest.raises(ButtonError, match=r"^b\.toml: .*line 2"):
        parse_buttons(b"[[button]]\nname = \n", "b.toml")
    assert parse_buttons(data.replace(b"javascript:alert(1)", b"tel:+100"), "b.toml")[1].url


def test_the_cli_names_the_file_and_line_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    upgrade(make_engine(load_config(config).database_url))
    assert run_cli(config, capsys, "project", "add", "acme")[0] == 0
    html = tmp_path / "news.html"
    html.write_text("<p>\n{{ contact.name }\n</p>", encoding="utf-8")
    status, _, err = run_cli(
        config, capsys, "template", "add", "news", "--project", "acme", "--subject", "Hi",
        "--html", str(html),
    )  # fmt: skip
    assert status == 2
    assert err.startswith(f"postroom: {html}: line 2: ") and err.count("\n") == 1
    html.write_text("<p>{{ contact.city }}</p>", encoding="utf-8")
    add = ("template", "add", "news", "--project", "acme", "--subject", "Hi", "--html", str(html))
    assert run_cli(config, capsys, *add)[0] == 0
    status, out, _ = run_cli(
        config, capsys, "template", "show", "news", "--project", "acme", "--json"
    )
    assert status == 0 and '"variables": ["city"]' in out
    status, out, _ = run_cli(config, capsys, "template", "list", "--project", "acme", "--json")
    assert status == 0 and '"name": "news"' in out
