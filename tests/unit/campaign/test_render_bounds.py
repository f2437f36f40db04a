"""Hostile templates: each one is refused quickly, with one line, never a traceback
or a half message; ordinary templates keep every filter they need."""

from __future__ import annotations

import time

import pytest
from tests.fakes.campaign_mail import context

from postroom.campaign import sandbox
from postroom.campaign.render import RenderError, TemplateError, TemplateSource, compile_template

MEGA = '{% set x = "a" * 1000000 %}'  # the longest string one repetition builds
REFERENCES = (
    MEGA + "{% set l = [] %}{% for i in range(1000) %}{% if l.append(x) %}{% endif %}{% endfor %}"
)


def render_hostile(html: str) -> str:
    """The one-line refusal, after checking it came within the time bound."""
    started = time.monotonic()
    with pytest.raises((RenderError, TemplateError)) as caught:
        compile_template(TemplateSource("s", html)).render(context())
    assert time.monotonic() - started < 3, html
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("html", "refusal"),
    [
        ('{{ (["a" * 1000] * 100000) | join }}', "repetition"),
        ('{{ [["a" * 1000] * 1000] * 100 }}', "repetition"),
        (MEGA + '{{ x.replace("a", x) }}', "replace"),
        (MEGA + '{{ x | replace("a", x) }}', "replace"),
        (MEGA + '{{ "".join([x] * 3) }}', "repetition"),
        (REFERENCES + "{{ l | join }}", "join"),
        (REFERENCES + '{{ "".join(l) }}', "call"),
        (REFERENCES + "{{ l }}", "output"),
        (REFERENCES + "{{ l | string }}", "string"),
        (REFERENCES + '{{ "%s" % (l,) }}', "%"),
        (MEGA + '{{ ("%(a)s" * 1000) % {"a": x} }}', "format"),
        (MEGA + '{{ ("%(a)s" * 1000) | format(a=x) }}', "format"),
        (MEGA + '{{ (["-"] * 1000) | join(x) }}', "join"),
        (MEGA + "{{ x ~ x ~ x }}", "call"),
        (MEGA + "{{ x + x + x }}", "+"),
        ('{{ ("\\n" * 1000000) | indent(1000) }}', "indent"),
        ('{{ ("a" * 1000000) | wordwrap(1) }}', "No filter named 'wordwrap'"),
        ("{{ [1] | tojson(indent=100000) }}", "No filter named 'tojson'"),
        ("{{ [1] | pprint }}", "No filter named 'pprint'"),
        ('{{ "www.a.test" | urlize }}', "No filter named 'urlize'"),
        ('{{ "abc".translate({97: "x" * 1000}) }}', "unsafe"),
        ("{{ ((9 ** 999) ** 999) ** 999 }}", "power"),
        (
            "{% set n = namespace(x=3) %}{% for i in range(100) %}{% set n.x = n.x * n.x %}"
            "{% endfor %}{{ n.x }}",
            "bits",
        ),
        ("{{ [[1]] | sum(start=[]) }}", "sum"),
        (
            '{% set x %}{% for i in range(10000) %}{{ "a" * 1000 }}{% endfor %}{% endset %}{{ x }}',
            "a block or macro",
        ),
        (
            '{% macro m() %}{% for i in range(10000) %}{{ "a" * 1000 }}{% endfor %}{% endmacro %}'
            "{{ m() | length }}",
            "a block or macro",
        ),
        ("{% set l = [] %}{% if l.append(l) %}{% endif %}{{ l }}", "more than"),
        (
            MEGA + '{% for i in range(100) %}{% set y = x | replace("a", "b") %}{% endfor %}',
            "builds more than",
        ),
    ],
)
def test_a_hostile_template_is_refused_within_the_time_bound(html: str, refusal: str) -> None:
    assert refusal in render_hostile(html)


def test_a_render_stops_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.2)
    slow = (
        "{% set l = (range(10000) | list) * 10 %}"
        "{% for i in range(10000) %}{{ l | sort | first }}{% endfor %}"
    )
    started = time.monotonic()
    assert "the template takes more than 0.2 s" in render_hostile(slow)
    assert time.monotonic() - started < 1.5  # the default deadline is 2 s


def test_ordinary_filters_methods_and_operators_still_work() -> None:
    html = (
        '{{ [1, 2, 3] | sum }}|{{ "a,b" | replace(",", ";") }}|{{ ["a", "b"] | join(", ") }}|'
        '{{ "x\ny" | indent(2) }}|{{ "%s-%d" | format("a", 3) }}|{{ "%05.1f" % 2.5 }}|'
        '{{ [1] + [2] }}|{{ "Hi " + contact.name }}|{{ range(3) | map("string") | join("-") }}|'
        '{{ contact.name ~ "!" }}|{{ "ab".replace("b", "c").upper() }}|{{ 2 ** 10 * 3 }}|'
        '{{ {"b": 1, "a": 2} | dictsort | first | first }}|'
        '{{ ["b", "a", "b"] | unique | sort | join }}|'
        '{{ "long text here" | truncate(9, leeway=0) }}|{{ "x" | center(5) }}|'
        "{% set n = namespace(total=0) %}{% for i in range(4) %}{% set n.total = n.total + i %}"
        "{% endfor %}{{ n.total }}"
    )
    out = compile_template(TemplateSource("s", html, "{{ 'a' ~ 1 }}")).render(context())
    assert out.html == (
        "6|a;b|a, b|x\n  y|a-3|002.5|[1, 2]|Hi Zoë|0-1-2|Zoë!|AC|3072|a|ab|long...|  x  |6"
    )
    assert out.text == "a1"


def test_html_concatenation_still_escapes_and_keeps_markup() -> None:
    html = '{% set tag = "<i>" | safe %}{{ "<b>" ~ contact.name }}{{ tag ~ "<" }}'
    rendered = compile_template(TemplateSource("s", html)).render(context())
    assert rendered.html == "&lt;b&gt;Zoë<i>&lt;"
