"""A campaign message from data, shared by the unit and flow tests of campaign mail.

`newsletter()` is a template with two buttons (one placed, one appended; one
pointing at a project channel), a contact variable, CSS to inline and a
non-ASCII subject; `context()` the contact it is rendered for; `links()` the
unsubscribe links for a fixed key; `eml(...)` the complete message.
"""

from __future__ import annotations

from datetime import date

from postroom.campaign.buttons import Button
from postroom.campaign.message import (
    build_campaign_message,
    campaign_feedback_id,
    campaign_list_id,
)
from postroom.campaign.render import (
    CampaignView,
    ContactView,
    ProjectView,
    RenderContext,
    RenderedContent,
    SenderView,
    TemplateSource,
    compile_template,
)
from postroom.campaign.unsubscribe import UnsubscribeLinks, UnsubscribeTokens

KEY = b"k" * 32
SHOP_URL = "https://shop.example.test/spring?utm=mail&x=1"
CHANNEL_URL = "https://t.me/acme_test"
HTML = """<!doctype html>
<html><head><style>.lead { color: #333333; font-size: 18px; }</style></head>
<body>
<p class="lead">Hello {{ contact.name }} from {{ contact.city }}!</p>
<p>Our spring sale is on, {{ campaign.name }}.</p>
{{ button("shop") }}
</body></html>
"""
BUTTONS = (
    Button("shop", "Visit the shop", url=SHOP_URL, colour="#0a7d32"),
    Button("telegram", "Join us on Telegram", channel="telegram"),
)


def newsletter(text: str | None = None) -> TemplateSource:
    return TemplateSource(
        subject="Привет, {{ contact.name }}: весна",
        html=HTML,
        text=text,
        buttons=BUTTONS,
    )


def context(name: str = "Zoë", city: str = "Paris") -> RenderContext:
    return RenderContext(
        contact=ContactView(
            email="zoe@dest.test",
            name=name,
            rating=7,
            registered=date(2025, 3, 1),
            variables={"city": city},
        ),
        project=ProjectView("acme", {"telegram": CHANNEL_URL}),
        sender=SenderView("Acme Shop", "news@shop.test"),
        campaign=CampaignView(42, "Spring"),
    )


def links(project_id: int = 1, contact_id: int = 2, campaign_id: int = 42) -> UnsubscribeLinks:
    token = UnsubscribeTokens(KEY).make(project_id, contact_id, campaign_id)
    return UnsubscribeLinks(
        https=f"https://relay.postroom.test/u/{token}",
        mailto=f"unsubscribe+{token}@relay.postroom.test",
    )


def rendered() -> RenderedContent:
    return compile_template(newsletter()).render(context())


def eml(content: RenderedContent | None = None, *, test: bool = False) -> bytes:
    return build_campaign_message(
        content or rendered(),
        from_name="Acme Shop",
        from_address="news@shop.test",
        to_address="zoe@dest.test",
        message_id="c42.2@shop.test",
        date=1_767_225_600.0,
        unsubscribe=links(),
        list_id=campaign_list_id("acme", 42, "relay.postroom.test"),
        feedback_id=campaign_feedback_id(1, 42),
        test=test,
    )
