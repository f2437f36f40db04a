"""Templates: compile errors name file and line, strict variables, a bounded sandbox,
buttons in both parts, the contact variables a template needs."""

from __future__ import annotations

import pytest
from tests.fakes.campaign_mail import BUTTONS, CHANNEL_URL, SHOP_URL, context, newsletter

from postroom.campaign.buttons import Button
from postroom.campaign.render import (
    MAX_SOURCE_CHARS,
    ProjectView,
    RenderContext,
    RenderError,
    TemplateError,
    TemplateSource,
    UndefinedVariable,
    compile_template,
)


def render(html: str, *, text: str | None = None, subject: str = "s", buttons=()):  # type: ignore[no-untyped-def]
    source = TemplateSource(subject=subject, html=html, text=text, buttons=buttons)
    return compile_template(source).render(context())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            TemplateSource("ok", "<p>\n\n{{ 1 + }}</p>"),
            "news.html: line 3: unexpected 'end of print statement'",
        ),
        (TemplateSource("ok", "<p>{{ a }}</p>", "one\ntwo {{ x y }}"), "news.txt: line 2: "),
        (TemplateSource("Hi {{ ", "<p></p>"), "subject: line 1: "),
        (TemplateSource("ok", "<p>\n\n{{ button('nope') }}</p>"), "news.html: line 3: no button"),
    ],
)
def test_a_template_that_does_not_compile_names_file_and_line(
    source: TemplateSource, expected: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(source, html_file="news.html", text_file="news.txt")
    assert str(caught.value).startswith(expected), caught.value
    assert "\n" not in str(caught.value)


def test_absurd_sizes_and_too_many_buttons_are_refused_at_compile() -> None:
    with pytest.raises(TemplateError, match="larger than"):
        compile_template(TemplateSource("s", "x" * (MAX_SOURCE_CHARS + 1)))
    many = tuple(Button(f"b{i}", "Go", url="https://a.test/") for i in range(21))
    with pytest.raises(TemplateError, match="at most 20 buttons"):
        compile_template(TemplateSource("s", "<p></p>", buttons=many))
    with pytest.raises(TemplateError, match="only http"):
        compile_template(
            TemplateSource("s", "<p></p>", buttons=(Button("x", "Go", url="javascript:alert(1)"),))
        )


def test_an_undefined_variable_is_named_and_default_is_the_way_out() -> None:
    with pytest.raises(UndefinedVariable) as caught:
        render("<p>{{ contact.phone }}</p>")
    assert caught.value.name == "contact.phone"
    with pytest.raises(UndefinedVariable, match=r"contact\.variables\.zip"):
        render("<p>{{ contact.variables.zip ~ 'x' }}</p>")
    with pytest.raises(UndefinedVariable, match="'coupon'"):
        render("<p>{{ coupon }}</p>")
    assert "<p>none</p>" in render("<p>{{ contact.phone | default('none') }}</p>").html


def test_what_a_template_sees() -> None:
    html = (
        "{{ contact.email }}|{{ contact.name }}|{{ contact.rating }}|{{ contact.city }}|"
        "{{ contact['city'] }}|{{ contact.variables.city }}|{{ contact.registered }}|"
        "{{ contact.stage }}|{{ project.name }}|{{ sender.name }}|{{ sender.address }}|"
        "{{ campaign.id }}|{{ campaign.name }}"
    )
    assert render(html).html == (
        "zoe@dest.test|Zoë|7|Paris|Paris|Paris|2025-03-01||acme|Acme Shop|news@shop.test|42|Spring"
    )


def test_a_variable_named_like_a_builtin_or_a_dict_method_is_still_data() -> None:
    ctx = context()
    contact = ctx.contact.__class__(
        email="a@b.test", name="Real", variables={"name": "Fake", "items": "three"}
    )
    compiled = compile_template(TemplateSource("s", "{{ contact.name }} {{ contact.items }}"))
    out = compiled.render(RenderContext(contact, ctx.project, ctx.sender, ctx.campaign))
    assert out.html == "Real three"


def test_html_is_escaped_the_subject_and_text_are_not_and_the_subject_is_one_line() -> None:
    out = compile_template(
        TemplateSource(
            "Hi {{ contact.name }}\r\nBcc: x@evil.test",
            "<p>{{ contact.name }}</p>",
            "{{ contact.name }}",
        )
    ).render(context(name="<b>Tom & Jerry</b>"))
    assert "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>" in out.html
    assert out.text.startswith("<b>Tom & Jerry</b>")
    assert out.subject == "Hi <b>Tom & Jerry</b> Bcc: x@evil.test"


@pytest.mark.parametrize(
    "html",
    [
        "{{ contact.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ contact._values }}",
        "{{ campaign.name.__init__.__globals__ }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ 'x' * 100000000 }}",
        "{{ [1, 2] * 100000000 }}",
        "{{ 2 ** 100000 }}",
        "{{ '%099999999d' % 1 }}",
        "{{ '%099999999d' | format(1) }}",
        "{{ 'x' | center(100000000) }}",
        "{{ range(100000000) | list | length }}",
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% for a in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    ],
)
def test_the_sandbox_refuses_attribute_tricks_and_unbounded_work(html: str) -> None:
    with pytest.raises(RenderError):
        render(html)


def test_buttons_are_drawn_where_placed_and_the_rest_appended_in_both_parts() -> None:
    compiled = compile_template(
        newsletter(text="Hello {{ contact.name }}\n{{ button('shop') }}end\n")
    )
    out = compiled.render(context())
    shop = out.html.index(SHOP_URL.replace("&", "&amp;"))
    telegram = out.html.index(CHANNEL_URL)
    assert out.html.index("spring sale") < shop < telegram < out.html.index("</body>")
    assert out.html.count('class="postroom-button"') == 2
    assert 'bgcolor="#0a7d32"' in out.html
    assert f"Visit the shop: {SHOP_URL}\nend" in out.text
    assert out.text.rstrip().endswith(f"Join us on Telegram: {CHANNEL_URL}")


def test_the_text_part_is_derived_from_the_html_with_the_buttons_as_lines() -> None:
    out = compile_template(newsletter()).render(context())
    assert "Hello Zoë from Paris!" in out.text
    assert f"Visit the shop: {SHOP_URL}" in out.text
    assert f"Join us on Telegram: {CHANNEL_URL}" in out.text
    assert "<" not in out.text and "color" not in out.text


def test_a_channel_the_project_lacks_stops_the_render() -> None:
    ctx = context()
    bare = RenderContext(ctx.contact, ProjectView("acme"), ctx.sender, ctx.campaign)
    with pytest.raises(RenderError, match="no channel 'telegram'"):
        compile_template(newsletter()).render(bare)


def test_contact_variables_names_what_a_contact_must_have() -> None:
    source = TemplateSource(
        subject="{{ contact.first_name }}",
        html=(
            "{{ contact.city }}{{ contact['zip'] }}{{ contact.variables.plan }}"
            "{{ contact.nick | default('') }}{% if contact.vip is defined %}{% endif %}"
            "{{ contact.name }}{{ contact.email }}"
        ),
        text="{{ contact.coupon | upper }}",
        buttons=BUTTONS,
    )
    assert compile_template(source).contact_variables() == {
        "first_name",
        "city",
        "zip",
        "plan",
        "coupon",
    }
