"""A text part derived once from the HTML template: the same words as reading each
rendered HTML (`compile_template(..., derive_text_once=False)`), or no derivation."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from tests.fakes.campaign_mail import BUTTONS, CHANNEL_URL, SHOP_URL, context, newsletter

from postroom.campaign.render import (
    CompiledTemplate,
    ContactView,
    RenderContext,
    RenderError,
    TemplateSource,
    UndefinedVariable,
    compile_template,
)
from postroom.campaign.sandbox import BoundedEnvironment
from postroom.campaign.text_template import Underivable, derive_text_template

VIP = {"city": "Paris", "vip": "yes", "items": "books, music,art"}
PLAIN = {"city": "", "vip": "", "items": "solo"}
ODD = {"city": "New\n\n  York", "vip": "1", "items": "<i>x</i>,{{ 7 * 7 }}"}
EACH, END = '{% for i in contact.items.split(",") %}', "{% endfor %}"


def contact_context(name: str = "Zoë", **variables: str) -> RenderContext:
    base = context()
    contact = ContactView(email="zoe@dest.test", name=name, variables=variables)
    return RenderContext(contact, base.project, base.sender, base.campaign)


def compiled_both(html: str, buttons=BUTTONS) -> tuple[CompiledTemplate, CompiledTemplate]:  # type: ignore[no-untyped-def]
    source = TemplateSource("s", html, None, tuple(buttons))
    return compile_template(source), compile_template(source, derive_text_once=False)


def assert_same_words(html: str, contexts: list[RenderContext], buttons=BUTTONS) -> str:  # type: ignore[no-untyped-def]
    """The derived text template's source, once every context reads the same words."""
    once, per_message = compiled_both(html, buttons)
    assert once.derived_text is not None, "no text template was derived"
    for ctx in contexts:
        derived, read = once.render(ctx).text, per_message.render(ctx).text
        assert derived.split() == read.split(), (derived, read)
        assert derived.endswith("\n") and "\n\n\n" not in derived
    return once.derived_text


def refusal(html: str) -> str:
    environment = BoundedEnvironment(autoescape=True)
    with pytest.raises(Underivable) as refused:
        derive_text_template(html, environment.parse(html), environment)
    return str(refused.value)


def test_the_test_newsletter_reads_exactly_as_per_message_without_rendering_html_twice() -> None:
    once = compile_template(newsletter())
    per_message = compile_template(newsletter(), derive_text_once=False)
    assert once.derived_text == (
        "Hello {{ contact.name }} from {{ contact.city }}!\n\n"
        "Our spring sale is on, {{ campaign.name }}.\n\n"
        '{{ button("shop") }}\n'
    )
    assert per_message.derived_text is None
    for ctx in (context(), context(name="Ann", city="Oslo")):
        assert once.render(ctx) == per_message.render(ctx)


def test_conditionals_leave_no_hole_and_keep_their_words() -> None:
    html = (
        "<h1>Hi {{ contact.name }}</h1>\n"
        "{% if contact.vip %}\n<p>Thanks, <b>VIP</b>.</p>\n"
        "{% elif contact.city %}\n<p>Hello {{ contact.city }}.</p>\n"
        "{% else %}\n<p>Join the club.</p>\n{% endif %}\n"
        "<p>Hello {% if contact.vip %}dear {% endif %}reader,"
        " {%- if contact.vip %} VIP{% endif %}!</p>"
    )
    assert_same_words(html, [contact_context(**VIP), contact_context(**PLAIN)])
    once, _ = compiled_both(html)
    assert once.render(contact_context(**PLAIN)).text.startswith(
        "Hi Zoë\n\nJoin the club.\n\nHello reader,!\n"
    )


@pytest.mark.parametrize(
    "html",
    [
        f"<p>Yours:</p>\n<ul>\n{EACH}\n  <li>{{{{ i | trim }}}}</li>\n{END}\n</ul><p>End.</p>",
        f"<div>{EACH}<p>{{{{ loop.index }}}}. {{{{ i }}}}</p>{{% else %}}<p>none</p>{END}</div>",
        f"<p>Items: {EACH}{{{{ i }}}}{{% if not loop.last %}}, {{% endif %}}{END}.</p>",
        f"<table><tr><td>{EACH}<p>{{{{ i }}}}</p>{END}</td></tr></table><p>after</p>",
        f"<ol><li>{EACH}<b>{{{{ i }}}}</b> {END}</li></ol>",
        f"{EACH}{{% if contact.vip %}}{{{{ i }}}}{{% else %}}<div>none</div>{{% endif %}} {END}",
    ],
)
def test_loops_repeat_their_lines(html: str) -> None:
    assert_same_words(
        html, [contact_context(**VIP), contact_context(**PLAIN), contact_context(**ODD)]
    )


def test_a_loop_over_list_items_adds_no_blank_lines() -> None:
    html = f"<ul>\n{EACH}\n  <li>{{{{ i | trim }}}}</li>\n{END}\n</ul>"
    once, per_message = compiled_both(html, ())
    ctx = contact_context(**VIP)
    assert (
        once.render(ctx).text == per_message.render(ctx).text == "  * books\n  * music\n  * art\n"
    )


def test_links_show_their_address_with_the_value_in_it() -> None:
    html = (
        '<p>Read <a href="https://news.test/a?id={{ contact.email | urlencode }}&amp;b=1">'
        "our {{ campaign.name }} news</a>.</p>"
    )
    assert_same_words(html, [contact_context(**VIP)])
    once, _ = compiled_both(html)
    assert (
        "[our Spring news](https://news.test/a?id=zoe%40dest.test&b=1)"
        in once.render(contact_context()).text
    )


def test_buttons_placed_show_where_placed_and_the_rest_after_the_content() -> None:
    html = '<p>Top</p>{{ button("shop") }}<p>Bottom {{ contact.name }}</p>'
    assert_same_words(html, [contact_context()])
    once, per_message = compiled_both(html)
    text = once.render(contact_context()).text
    assert text == per_message.render(contact_context()).text
    assert text == (
        f"Top\n\nVisit the shop: {SHOP_URL}\n\nBottom Zoë\n\nJoin us on Telegram: {CHANNEL_URL}\n"
    )


def test_entities_and_braces_stay_literal_and_values_are_never_read_as_jinja() -> None:
    html = (
        "<p>Bye &amp; see you &#123;soon&#125; {{ '{' }}x} {% raw %}{{ raw }}{% endraw %}</p>"
        "<p>{{ contact.name }} in {{ contact.city }}</p>"
    )
    derived = assert_same_words(html, [contact_context(**VIP), contact_context(**ODD)], ())
    assert '{{ "{" }}soon}' in derived
    once, _ = compiled_both(html, ())
    text = once.render(contact_context("{{ 7 * 7 }} {% if %}", city="AT&amp;T\n<b>x</b>")).text
    assert (
        text == "Bye & see you {soon} {x} {{ raw }}\n\n{{ 7 * 7 }} {% if %} in AT&amp;T <b>x</b>\n"
    )


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (f"<table>{EACH}<tr><td>{{{{ i }}}}</td></tr>{END}</table>", "reorders"),
        (f"<table><tr>{EACH}<td>x</td>{END}</tr></table>", "between table rows"),
        (
            "<table><tr><td>{% if contact.vip %}<p>a</p>{% endif %}<p>b</p></td>"
            "<td>c</td></tr></table>",
            "shares its row",
        ),
        ("<table><tr><td><p>{{ contact.name }}</p><p>b</p></td><td>c</td></tr></table>", "alone"),
        (f"<ol>{EACH}<li>{{{{ i }}}}</li>{END}</ol>", "numbered"),
        ("<p>{{ contact.name | safe }}</p>", "'safe' makes markup"),
        ("<p>{{ contact.name | e }}</p>", "'e' makes markup"),
        ("{% macro b(t) %}<b>{{ t }}</b>{% endmacro %}<p>{{ b(contact.name) }}</p>", "macro"),
        ("{% set x %}<b>x</b>{% endset %}<p>{{ x }}</p>", "endset"),
        ("<{{ contact.tag }}>x</p>", "completes markup"),
        ("<p>Q&{{ contact.entity }};A</p>", "completes markup"),
        ('<p style="color: {{ contact.colour }}">x</p>', "'style'"),
        ("<p {{ contact.attributes }}>x</p>", "attribute"),
        ('<p><a href="{{ contact.link }}">site</a></p>', "whole href"),
        (
            '<p>{% if contact.vip %}<a href="https://a.test/">{% endif %}Shop</a></p>',
            "run of whole",
        ),
        (
            "<html><head>{% if contact.vip %}<style>p{}</style>{% endif %}</head>"
            "<body>x</body></html>",
            "change the document",
        ),
        ("<style>{{ contact.name.upper() }}</style><p>x</p>", "calls something"),
        ("<!-- {% if contact.vip %} --><p>secret</p><!-- {% endif %} -->", "run of whole"),
        ("<p>{{ button('shop') ~ '' }}</p>", "button()"),
        ("<p>\ue000 {{ contact.name }}</p>", "private-use"),
        (
            "<p><span>{% if contact.vip %}a{% else %}<b>b</b> c{% endif %}</span>d</p>",
            "text of a <span>",
        ),
        (
            "<ul>{% for i in contact.items recursive %}<li>{{ i }}</li>{% endfor %}</ul>",
            "recursive",
        ),
    ],
)
def test_what_cannot_be_derived_faithfully_is_read_per_message(html: str, reason: str) -> None:
    assert reason in refusal(html)
    once, per_message = compiled_both(html)
    assert once.derived_text is None
    ctx = contact_context(**VIP, tag="b", entity="amp", colour="red", attributes="", link="")
    assert once.render(ctx) == per_message.render(ctx)


def test_hidden_constructs_are_left_out_of_the_text() -> None:
    html = (
        "{% set first = contact.name.split()[0] %}<!doctype html>\n<html><head>"
        "<title>{{ campaign.name }}</title><style>{% if contact.vip %}p { color: gold; }"
        "{% endif %} h1 { x: {{ contact.city }} }</style></head><body>"
        "<!-- for {{ contact.email }} --><p>Hi {{ first }}</p>"
        '<div style="display:none">{% if contact.vip %}<p>preheader</p>{% endif %}</div>'
        "</body></html>"
    )
    derived = assert_same_words(
        html, [contact_context("Ann Lee", **VIP), contact_context("Bo", **PLAIN)]
    )
    assert derived.startswith("{% set first = contact.name.split()[0] %}")
    assert "campaign.name" not in derived and "contact.city" not in derived


def test_errors_in_the_html_are_reported_naming_the_html_file() -> None:
    source = TemplateSource(
        "s",
        "<p>Hi {{ contact.name }}</p>\n<p>{{ 10 / (contact.rating - 7) }} {{ contact.phone }}</p>",
    )
    compiled = compile_template(source, html_file="news.html")
    assert compiled.derived_text is not None
    with pytest.raises(RenderError, match=r"^news\.html: line 2: division by zero"):
        compiled.render(context())
    with pytest.raises(UndefinedVariable, match=r"contact\.phone"):
        compiled.render(replace(context(), contact=replace(context().contact, rating=8)))


def random_fragment(rng: random.Random, depth: int) -> str:
    """A piece of a newsletter: markup, values and blocks nested at random."""
    if depth > 3 or rng.random() < 0.25:
        word = rng.choice(["alpha", "beta &amp;", "x{y", "<b>bold</b>", "<br>", "Ω"])
        return word + rng.choice(
            ["", " {{ contact.name }}", " {{ contact.city }}", ' {{ button("shop") }}']
        )
    inner = lambda: random_fragment(rng, depth + 1)  # noqa: E731
    return rng.choice(
        [
            lambda: f"<p>{inner()}</p>",
            lambda: f"<div>{inner()} {inner()}</div>",
            lambda: f"<span>{inner()}</span>",
            lambda: f"<ul><li>{inner()}</li><li>{inner()}</li></ul>",
            lambda: f"<ol><li>{inner()}</li>{inner()}</ol>",
            lambda: f"<table><tr><td>{inner()}</td></tr><tr><td>{inner()}</td></tr></table>",
            lambda: f"<table><tr><td>{inner()}</td><td>{inner()}</td></tr></table>",
            lambda: f'<a href="https://a.test/{{{{ contact.city }}}}">{inner()}</a>',
            lambda: f"{{% if contact.vip %}}{inner()}{{% else %}}{inner()}{{% endif %}}",
            lambda: f"\n{{% if contact.city %}}\n{inner()}\n{{% endif %}}\n",
            lambda: f"{{% for i in contact.items.split(',') %}}{inner()} {{{{ i }}}}{{% endfor %}}",
            lambda: f"  {{%- if contact.vip -%}}  {inner()}  {{%- endif %}}  ",
            lambda: f'<div style="display:none">{inner()}</div>{inner()}',
            lambda: f"<pre>{inner()}\n{inner()}</pre>",
            lambda: f"{inner()}\n{inner()}",
        ]
    )()


def test_random_newsletters_read_the_same_words_once_or_per_message() -> None:
    rng = random.Random(15)
    derived = 0
    for _ in range(120):
        html = "".join(random_fragment(rng, 0) for _ in range(rng.randint(1, 4)))
        once, per_message = compiled_both(html)
        derived += once.derived_text is not None
        for values in (VIP, PLAIN, ODD):
            ctx = contact_context(rng.choice(["", "Ann  Lee", "a\n\nb"]), **values)
            text, read = once.render(ctx).text, per_message.render(ctx).text
            assert text.split() == read.split() or _only_spaced_apart(text, read), (
                html,
                text,
                read,
            )
    assert derived > 50  # most are derived: the comparison is not vacuous


def _only_spaced_apart(text: str, read: str) -> bool:
    """The same characters, and every break between words in `read` is one in `text`
    (spaced more, never joined)."""

    def breaks(words: str) -> set[int]:
        ends, length = set(), 0
        for word in words.split():
            length += len(word)
            ends.add(length)
        return ends

    return "".join(text.split()) == "".join(read.split()) and breaks(read) <= breaks(text)
