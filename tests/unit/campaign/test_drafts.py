"""Campaign drafts, the composer and the contact's history against a real SQLite file.

The world of the sender tests (projects acme and other, acme.test verified),
a confirmed sender, a template with a contact variable, contacts on a list.
"""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from tests.unit.campaign.senders_world import SenderWorld

from postroom.campaign.audience import AudienceFilter, VarCondition
from postroom.campaign.compose import Composer, Copy, contact_recipient, nobody
from postroom.campaign.contact_edit import apply_changes, parse_assignments
from postroom.campaign.drafts import CampaignError, Campaigns
from postroom.campaign.history import contact_history
from postroom.campaign.render import TemplateSource
from postroom.campaign.templates import Templates, source_snapshot
from postroom.campaign.unsubscribe import UnsubscribeTokens
from postroom.db.models import (
    campaign_sends,
    campaigns,
    contact_events,
    deliveries,
    messages,
)
from postroom.mta.queue.outbox import Outbox
from postroom.rating.contacts import Contacts, contact_id_of
from postroom.rating.rules import Rules

SENDER = "news@acme.test"
SPRING = TemplateSource(
    subject="Hello {{ contact.first_name }}",
    html="<p>Hi {{ contact.first_name }} of {{ project.name }}</p>",
)


@pytest.fixture
def world(tmp_path: Path) -> SenderWorld:
    world = SenderWorld(tmp_path)
    record = world.senders.add("acme", SENDER, "Acme News")
    world.senders.confirm(SENDER, world.mailed_code(record))
    world.senders.add("acme", "later@acme.test", "Not yet")
    Templates(world.engine).add("acme", "spring", SPRING)
    contacts = Contacts(world.engine, Rules(world.config.rating))
    for address in ("ann@dest.test", "bob@dest.test"):
        contacts.add("acme", address, "customers")
    apply_changes(world.engine, "acme", "ann@dest.test", parse_assignments(["first_name=Ann"]))
    return world


def test_a_draft_needs_a_confirmed_sender_an_existing_template_and_lists(
    world: SenderWorld,
) -> None:
    drafts = Campaigns(world.engine)
    customers = AudienceFilter(lists=("customers",))
    campaign_id = drafts.create("acme", " Spring  sale ", SENDER, "spring", customers)
    campaign = drafts.get(campaign_id)
    assert (campaign.name, campaign.state, campaign.sender, campaign.template) == (
        "Spring sale",
        "draft",
        SENDER,
        "spring",
    )
    refusals = {
        "not confirmed yet": ("acme", "x", "later@acme.test", "spring", customers),
        "no template 'autumn'": ("acme", "x", SENDER, "autumn", customers),
        "'ghosts'": ("acme", "x", SENDER, "spring", AudienceFilter(lists=("ghosts",))),
        "no sender": ("other", "x", SENDER, "spring", customers),  # another project's
    }
    for expected, arguments in refusals.items():
        with pytest.raises(CampaignError, match=expected):
            drafts.create(*arguments)
    assert [c.id for c in drafts.list("acme")] == [campaign_id]
    assert drafts.list("other") == []


def test_only_a_draft_is_edited_or_deleted_and_a_copy_is_a_new_draft(world: SenderWorld) -> None:
    drafts = Campaigns(world.engine)
    campaign_id = drafts.create("acme", "spring", SENDER, "spring", AudienceFilter())
    narrowed = AudienceFilter(variables=(VarCondition.parse("first_name exists"),))
    edited = drafts.edit(campaign_id, name="spring 2", audience=narrowed)
    assert edited.name == "spring 2" and edited.audience == narrowed
    with world.engine.begin() as conn:
        conn.execute(update(campaigns).values(state="sent"))
    with pytest.raises(CampaignError, match="only a draft"):
        drafts.edit(campaign_id, name="late")
    with pytest.raises(CampaignError, match="only a draft"):
        drafts.delete(campaign_id)
    copy = drafts.get(drafts.copy(campaign_id))
    assert (copy.state, copy.name, copy.copied_from) == ("draft", "Copy of spring 2", campaign_id)
    assert copy.audience == narrowed and copy.template == "spring"
    drafts.delete(copy.id)
    with pytest.raises(CampaignError, match=f"no campaign {copy.id}"):
        drafts.get(copy.id)


def test_a_copy_of_a_campaign_whose_template_is_gone_keeps_the_sent_content(
    world: SenderWorld,
) -> None:
    drafts = Campaigns(world.engine)
    campaign_id = drafts.create("acme", "spring", SENDER, "spring", AudienceFilter())
    with world.engine.begin() as conn:
        conn.execute(
            update(campaigns).values(
                state="sent", content=source_snapshot(SPRING), template_id=None
            )
        )
    copy = drafts.get(drafts.copy(campaign_id, "again"))
    assert copy.template is None and copy.content == source_snapshot(SPRING)
    composer = Composer(world.engine, world.config, Outbox(world.engine, world.config))
    with world.engine.connect() as conn:
        ann = contact_recipient(conn, copy.project_id, "ann@dest.test")
    assert ann is not None
    composed = composer.compose(copy, Copy("ann@dest.test", ann))
    assert composed.subject == "Hello Ann"


def test_the_composed_message_names_the_contact_in_its_token(
    world: SenderWorld,
) -> None:
    drafts = Campaigns(world.engine)
    campaign = drafts.get(drafts.create("acme", "spring", SENDER, "spring", AudienceFilter()))
    composer = Composer(world.engine, world.config, Outbox(world.engine, world.config))
    with world.engine.connect() as conn:
        ann = contact_recipient(conn, campaign.project_id, "ann@dest.test")
        bob = contact_recipient(conn, campaign.project_id, "bob@dest.test")
    assert ann is not None and bob is not None
    composed = composer.compose(campaign, Copy("ann@dest.test", ann))
    message = email.message_from_bytes(composed.body, policy=email.policy.default)
    # (Signed when the domain has a key: the flow test verifies it with Mail::DKIM.)
    assert message["Feedback-ID"] == f"c{campaign.id}:p{campaign.project_id}:campaign:postroom"
    token = str(message["List-Unsubscribe"]).split("/u/")[1].split(">")[0]
    claim = composer.tokens.read(token)
    assert claim is not None and claim.contact_id == ann.contact_id
    # A test copy shows Ann's fields, goes elsewhere, and its link unsubscribes nobody.
    test_copy = composer.compose(campaign, Copy("qa@dest.test", ann, test=True))
    assert test_copy.subject == "[TEST] Hello Ann"
    parsed = email.message_from_bytes(test_copy.body, policy=email.policy.default)
    test_token = str(parsed["List-Unsubscribe"]).split("/u/")[1].split(">")[0]
    assert composer.tokens.read(test_token).contact_id == 0  # type: ignore[union-attr]
    # Bob lacks first_name: refused, naming the variable and the contact.
    with pytest.raises(CampaignError, match=r"bob@dest\.test.*first_name"):
        composer.compose(campaign, Copy("bob@dest.test", bob))
    with pytest.raises(CampaignError, match="first_name"):
        composer.compose(campaign, Copy("x@dest.test", nobody("x@dest.test"), test=True))


def test_queued_copies_are_in_the_queue_and_in_the_contacts_history(world: SenderWorld) -> None:
    drafts = Campaigns(world.engine)
    campaign = drafts.get(drafts.create("acme", "spring", SENDER, "spring", AudienceFilter()))
    composer = Composer(world.engine, world.config, Outbox(world.engine, world.config))
    with world.engine.connect() as conn:
        ann = contact_recipient(conn, campaign.project_id, "ann@dest.test")
        bob = contact_recipient(conn, campaign.project_id, "bob@dest.test")
    assert ann is not None and bob is not None
    # One refusal (Bob lacks first_name) queues nothing at all.
    copies = [Copy("ann@dest.test", ann), Copy("bob@dest.test", bob)]
    with pytest.raises(CampaignError):
        composer.queue(campaign, copies, kind="resend", pool="default")
    with world.engine.connect() as conn:
        assert conn.execute(select(campaign_sends)).all() == []
    [queue_id] = composer.queue(
        campaign, [Copy("ann@dest.test", ann)], kind="resend", pool="default"
    )
    composer.queue(campaign, [Copy("qa@dest.test", ann, test=True)], kind="test", pool="default")
    with world.engine.begin() as conn:
        state = conn.execute(
            select(deliveries.c.state).where(deliveries.c.message_id == queue_id)
        ).scalar_one()
        assert state == "queued"
        contact_id = contact_id_of(conn, campaign.project_id, "ann@dest.test")
        history = contact_history(conn, contact_id, "ann@dest.test")
        [item] = history.sent  # the test copy is not Ann's mail
        assert (item.kind, item.subject, item.outcome, item.queue_id) == (
            "resend",
            "Hello Ann",
            "queued",
            queue_id,
        )
        # Once the queue forgets the message, the rating event it caused tells.
        conn.execute(deliveries.delete().where(deliveries.c.message_id == queue_id))
        conn.execute(messages.delete().where(messages.c.id == queue_id))
        conn.execute(
            insert(contact_events).values(
                contact_id=contact_id,
                created_at=time.time(),
                kind="bounced",
                reason="mailboxfull",
                new_rating=6,
                blocked=0,
                message_id=queue_id,
                detail="",
            )
        )
        [forgotten] = contact_history(conn, contact_id, "ann@dest.test").sent
        assert forgotten.outcome == "bounced (mailboxfull)"


def test_a_reply_is_in_the_history_even_when_it_moves_no_rating(world: SenderWorld) -> None:
    contacts = Contacts(world.engine, Rules(world.config.rating))
    project_id = world.project_id("acme")
    contacts.received([project_id], "ann@dest.test", "Q1")  # rating 10 → 10
    contacts.received([project_id], "ann@dest.test", "Q2")
    with world.engine.connect() as conn:
        contact_id = contact_id_of(conn, project_id, "ann@dest.test")
        received = contact_history(conn, contact_id, "ann@dest.test").received
    assert [item.queue_id for item in received] == ["Q1", "Q2"]


def test_unsubscribe_tokens_of_the_composer_use_the_appliance_secret(world: SenderWorld) -> None:
    composer = Composer(world.engine, world.config, Outbox(world.engine, world.config))
    stranger = UnsubscribeTokens(b"x" * 32)
    assert stranger.read(composer.tokens.make(1, 2, 3)) is None
