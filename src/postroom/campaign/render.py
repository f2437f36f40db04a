"""Templates compiled once, rendered per contact: subject, HTML and text.

`compile_template(source, html_file=..., text_file=...)` checks a
`TemplateSource` (subject, HTML, optional text, buttons) and compiles its parts
in the bounded sandbox (`sandbox.py`; autoescape in the HTML only). What it
refuses is a `TemplateError` of one line, `FILE: line N: <Jinja's message>`
("subject" for the subject): a syntax error, a part over `MAX_SOURCE_CHARS`,
too many or invalid buttons, a `button("name")` that names no button.

`CompiledTemplate.render(RenderContext)` gives `RenderedContent(subject, html,
text)` or raises: `UndefinedVariable` (a variable the contact lacks; the
`default` filter is the way out) or `RenderError` (a sandbox bound: steps,
`MAX_RENDER_SECONDS` of time, the size of a value; an unknown channel; an output
over `MAX_RENDERED_CHARS`) — one line, never half a message. A filter the
sandbox lacks (`wordwrap`, `tojson`...) is a TemplateError at compile time. What a
template sees:
  contact.email, .name, .rating, .stage, .state, .registered (a date or None),
  each variable as contact.NAME (the built-in names win) and all of them under
  contact.variables; project.name; sender.name, sender.address; campaign.id,
  campaign.name; button("name").
A button placed with `{{ button("name") }}` is drawn there (a bulletproof
button in HTML, a "Text: URL" line in text); the buttons a part does not place
are appended after its content (before `</body>` in HTML). The subject is one
line: whitespace runs (line breaks included) become one space. Without a text
template the text part is derived from the HTML: once, at compile time, as a text
template (`text_template.py`, exposed as `CompiledTemplate.derived_text`) where
that is faithful, else from each rendered HTML (`mailsafe.py`), with each button
as a "Text: URL" paragraph; either way the text is tidied (`mailsafe.tidy_text`).
`contact_variables()` names the contact variables the template needs.

Untrusted input: the template (operators') and the contact's values (imports).
No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import SecurityError
from markupsafe import Markup, escape

from postroom.campaign.buttons import (
    Button,
    ButtonError,
    button_html,
    button_text,
    validate_buttons,
)
from postroom.campaign.mailsafe import text_from_html, tidy_text
from postroom.campaign.sandbox import (
    MAX_VALUE_CHARS,
    BoundedEnvironment,
    Fields,
    RenderBudget,
    UndefinedVariable,
    bound_template,
)
from postroom.campaign.text_template import Underivable, derive_text_template, text_environment

__all__ = [
    "CampaignView",
    "CompiledTemplate",
    "ContactView",
    "ProjectView",
    "RenderContext",
    "RenderError",
    "RenderedContent",
    "SenderView",
    "TemplateError",
    "TemplateSource",
    "UndefinedVariable",
    "compile_template",
]

MAX_SOURCE_CHARS = 1024 * 1024  # HTML or text template
MAX_SUBJECT_SOURCE_CHARS = 2000
MAX_RENDERED_CHARS = MAX_VALUE_CHARS  # each part, as rendered, as any value a template builds
MAX_SUBJECT_CHARS = 900  # rendered: a Subject field within 998 octets before encoding
CONTACT_FIELDS = frozenset({"email", "name", "rating", "stage", "state", "registered"})
_GUARDS = frozenset({"default", "d"})  # filters that make an undefined value harmless
_WHITESPACE = re.compile(r"\s+")
_BODY_END_OR_COMMENT = re.compile(r"<!--|</body[\s/>]", re.IGNORECASE)
_TEMPLATE_FILENAME = "<template>"  # how Jinja names the template in tracebacks


class TemplateError(ValueError):
    """A template that cannot be stored: one line, `FILE: line N: message`."""


class RenderError(Exception):
    """A render that stopped (a bound of the sandbox, an unknown button or channel)."""


@dataclass(frozen=True, slots=True)
class TemplateSource:
    subject: str
    html: str
    text: str | None = None  # None: derived from the HTML
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class ContactView:
    email: str
    name: str = ""
    rating: int = 0
    stage: str = ""
    state: str = ""
    registered: date | None = None
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProjectView:
    name: str
    channels: Mapping[str, str] = field(default_factory=dict)  # channel name -> URL


@dataclass(frozen=True, slots=True)
class SenderView:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class CampaignView:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class RenderContext:
    contact: ContactView
    project: ProjectView
    sender: SenderView
    campaign: CampaignView


@dataclass(frozen=True, slots=True)
class RenderedContent:
    subject: str
    html: str
    text: str


def compile_template(
    source: TemplateSource,
    *,
    html_file: str = "html",
    text_file: str = "text",
    derive_text_once: bool = True,
) -> CompiledTemplate:
    """The template compiled, or a TemplateError naming the part and line.
    `derive_text_once=False`: no text template derived from the HTML (the reading
    per message, what the derived one is measured and tested against)."""
    _check_size("subject", source.subject, MAX_SUBJECT_SOURCE_CHARS)
    _check_size(html_file, source.html, MAX_SOURCE_CHARS)
    if source.text is not None:
        _check_size(text_file, source.text, MAX_SOURCE_CHARS)
    try:
        buttons = validate_buttons(source.buttons, "buttons")
    except ButtonError as error:
        raise TemplateError(str(error)) from None
    names = {button.name for button in buttons}
    html_env, text_env = BoundedEnvironment(autoescape=True), BoundedEnvironment(autoescape=False)
    subject = _parse(text_env, source.subject, "subject", set())
    html = _parse(html_env, source.html, html_file, names)
    text = None if source.text is None else _parse(text_env, source.text, text_file, names)
    variables = frozenset().union(*(_contact_variables(part) for part in (subject, html, text)))
    derived = None
    if text is None and derive_text_once:
        derived = _text_template_from_html(source.html, html, html_env, html_file, names)
    return CompiledTemplate(
        source=source,
        buttons={button.name: button for button in buttons},
        derived_text=None if derived is None else derived[0],
        _subject=_compiled(text_env, subject, "subject"),
        _html=_compiled(html_env, html, html_file),
        _text=None if text is None else _compiled(text_env, text, text_file),
        _derived_text=None if derived is None else derived[1],
        _variables=variables,
        _files=(html_file, text_file),
    )


def _text_template_from_html(
    html: str, parsed: nodes.Template, html_env: BoundedEnvironment, file: str, buttons: set[str]
) -> tuple[str, Template] | None:
    """The text template derived from the HTML template (its source and itself,
    compiled as a hand-written one would be: bounded, buttons checked), or None: the
    text is read per message. Jinja refusing a derived template (no case known) is a
    reason to read per message, never to refuse a template that compiles."""
    try:
        source = derive_text_template(html, parsed, html_env)
        env = text_environment()
        return source, _compiled(env, _parse(env, source, file, buttons), file)
    except (Underivable, TemplateError):
        return None


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    source: TemplateSource
    buttons: Mapping[str, Button]
    derived_text: str | None  # the text template derived from the HTML (Jinja source)
    _subject: Template
    _html: Template
    _text: Template | None
    _derived_text: Template | None
    _variables: frozenset[str]
    _files: tuple[str, str]

    def contact_variables(self) -> frozenset[str]:
        """The contact variables the template uses where a missing one fails the render:
        `contact.NAME`, `contact["NAME"]`, `contact.variables.NAME`, minus the built-in
        fields and uses directly under a `default` filter or an `is defined` test. An
        alias (`{% set c = contact %}`) is not followed: the render still catches it."""
        return self._variables

    def render(self, context: RenderContext) -> RenderedContent:
        urls = self._button_urls(context.project)
        values = _template_values(context)
        html_file, text_file = self._files
        subject = _WHITESPACE.sub(" ", self._run(self._subject, values, "subject")).strip()
        if len(subject) > MAX_SUBJECT_CHARS:
            raise RenderError(f"subject: longer than {MAX_SUBJECT_CHARS} characters as rendered")
        html = self._part(self._html, values, html_file, urls, _HTML_BUTTONS)
        if self._text is not None:
            text = self._part(self._text, values, text_file, urls, _TEXT_BUTTONS)
        elif self._derived_text is not None:  # the HTML's constructs: it failed first if any
            text = tidy_text(self._part(self._derived_text, values, html_file, urls, _LINES))
        else:
            text = text_from_html(self._part(self._html, values, html_file, urls, _PARAGRAPHS))
        return RenderedContent(subject=subject, html=html, text=text)

    def _part(
        self,
        template: Template,
        values: dict[str, Any],
        file: str,
        urls: Mapping[str, str],
        drawing: _ButtonDrawing,
    ) -> str:
        placed: list[str] = []

        def button(name: str) -> str:
            if name not in urls:
                raise RenderError(f"{file}: no button named {name!r}")
            placed.append(name)
            return drawing.draw(self.buttons[name], urls[name])

        content = self._run(template, {**values, "button": button}, file)
        rest = [drawing.draw(self.buttons[name], urls[name]) for name in urls if name not in placed]
        return drawing.append(content, rest) if rest else content

    def _run(self, template: Template, values: dict[str, Any], file: str) -> str:
        limit = MAX_SUBJECT_CHARS * 4 if file == "subject" else MAX_RENDERED_CHARS
        pieces: list[str] = []
        size = 0
        try:
            with RenderBudget():
                for piece in template.generate(values):
                    size += len(piece)
                    if size > limit:
                        raise RenderError(f"{file}: more than {limit} characters as rendered")
                    pieces.append(piece)
        except (UndefinedVariable, RenderError):
            raise
        except SecurityError as error:
            raise RenderError(f"{file}: line {_line_of(error)}: {error}") from None
        except Exception as error:  # the template's own failure: 1/0, a bad filter argument
            raise RenderError(f"{file}: line {_line_of(error)}: {error}") from None
        return "".join(pieces)

    def _button_urls(self, project: ProjectView) -> dict[str, str]:
        urls = {}
        for name, button in self.buttons.items():
            if button.url is not None:
                urls[name] = button.url
            elif button.channel in project.channels:
                urls[name] = project.channels[button.channel]
            else:
                raise RenderError(
                    f"button {name!r}: project {project.name!r} has no channel {button.channel!r}"
                )
        return urls


def insert_before_body_end(html: str, addition: str) -> str:
    """`addition` just before the last `</body>` outside HTML comments (Outlook's
    `<!--[if mso]>...<![endif]-->` included), or at the end when there is none; a
    comment left open at the end is closed first. So what is added (the unsubscribe
    footer) is never commented out. One scan, linear in `html`."""
    body_end = -1
    position = 0
    while (found := _BODY_END_OR_COMMENT.search(html, position)) is not None:
        if found.group() != "<!--":
            body_end = found.start()
            position = found.end()
            continue
        if html.startswith((">", "->"), found.end()):  # `<!-->`, `<!--->`: empty comments
            position = html.index(">", found.end()) + 1
            continue
        close = html.find("-->", found.end())
        if close < 0:
            if body_end < 0:
                return f"{html}-->{addition}"
            break
        position = close + 3
    if body_end < 0:
        return html + addition
    return html[:body_end] + addition + html[body_end:]


@dataclass(frozen=True, slots=True)
class _ButtonDrawing:
    """How a part draws a button where placed, and appends those it does not place."""

    draw: Callable[[Button, str], str]
    append: Callable[[str, list[str]], str]  # (content, the drawn buttons) -> the part


def _before_body_end(content: str, drawn: list[str]) -> str:
    return insert_before_body_end(content, "".join(drawn))


def _after_text(content: str, drawn: list[str]) -> str:
    return f"{content.rstrip()}\n\n{''.join(drawn)}"


def _after_text_as_paragraphs(content: str, drawn: list[str]) -> str:
    return f"{content.rstrip()}\n\n" + "\n\n".join(drawn)


_HTML_BUTTONS = _ButtonDrawing(
    lambda button, url: Markup(button_html(button, url)), _before_body_end
)
_TEXT_BUTTONS = _ButtonDrawing(lambda button, url: button_text(button, url) + "\n", _after_text)
# The HTML read as text per message: a button is a "Text: URL" paragraph.
_PARAGRAPHS = _ButtonDrawing(
    lambda button, url: Markup(f"<p>{escape(button_text(button, url))}</p>"), _before_body_end
)
# The derived text template: a placed button's paragraph is already laid out around it.
_LINES = _ButtonDrawing(button_text, _after_text_as_paragraphs)


def _template_values(context: RenderContext) -> dict[str, Any]:
    contact = context.contact
    variables = dict(contact.variables)
    fields: dict[str, Any] = {
        **variables,
        "email": contact.email,
        "name": contact.name,
        "rating": contact.rating,
        "stage": contact.stage,
        "state": contact.state,
        "registered": contact.registered,
        "variables": Fields("contact.variables", variables),
    }
    return {
        "contact": Fields("contact", fields),
        "project": Fields("project", {"name": context.project.name}),
        "sender": Fields(
            "sender", {"name": context.sender.name, "address": context.sender.address}
        ),
        "campaign": Fields("campaign", {"id": context.campaign.id, "name": context.campaign.name}),
    }


def _check_size(file: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise TemplateError(f"{file}: line 1: larger than {limit} characters")


def _parse(env: BoundedEnvironment, text: str, file: str, buttons: set[str]) -> nodes.Template:
    try:
        parsed = env.parse(text)
    except TemplateSyntaxError as error:
        raise TemplateError(f"{file}: line {error.lineno}: {error.message}") from None
    for call in parsed.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "button"):
            continue
        if file == "subject":
            raise TemplateError(f"subject: line {call.lineno}: buttons go in the HTML or text")
        if call.args and isinstance(call.args[0], nodes.Const) and call.args[0].value in buttons:
            continue
        named = call.args[0].value if call.args and isinstance(call.args[0], nodes.Const) else "?"
        known = ", ".join(sorted(buttons)) or "none defined"
        raise TemplateError(f"{file}: line {call.lineno}: no button named {named!r} ({known})")
    return parsed


def _compiled(env: BoundedEnvironment, parsed: nodes.Template, file: str) -> Template:
    """The parsed template bounded and compiled; a filter the sandbox lacks is refused here."""
    try:
        return env.from_string(bound_template(parsed))
    except TemplateSyntaxError as error:
        raise TemplateError(f"{file}: line {error.lineno}: {error.message}") from None


def _contact_variables(template: nodes.Template | None) -> frozenset[str]:
    if template is None:
        return frozenset()
    found: set[str] = set()
    guarded: set[int] = set()
    for node in template.find_all((nodes.Filter, nodes.Test)):
        if (isinstance(node, nodes.Filter) and node.name in _GUARDS) or (
            isinstance(node, nodes.Test) and node.name in ("defined", "undefined")
        ):
            guarded.add(id(node.node))
    for node in template.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in guarded:
            continue
        name = _contact_field(node)
        if name is not None and name not in CONTACT_FIELDS and name != "variables":
            found.add(name)
    return frozenset(found)


def _contact_field(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """NAME for `contact.NAME`, `contact["NAME"]`, `contact.variables.NAME` (or [...])."""
    if isinstance(node, nodes.Getattr):
        name: object = node.attr
    elif isinstance(node.arg, nodes.Const):
        name = node.arg.value
    else:
        return None
    owner = node.node
    if isinstance(owner, nodes.Name) and owner.name == "contact":
        return name if isinstance(name, str) else None
    if (
        isinstance(owner, nodes.Getattr | nodes.Getitem)
        and isinstance(owner.node, nodes.Name)
        and owner.node.name == "contact"
        and _attribute_name(owner) == "variables"
    ):
        return name if isinstance(name, str) else None
    return None


def _attribute_name(node: nodes.Getattr | nodes.Getitem) -> object:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) else None


def _line_of(error: BaseException) -> int | str:
    """The template line where `error` happened (Jinja rewrites tracebacks to it)."""
    line: int | str = "?"
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line
