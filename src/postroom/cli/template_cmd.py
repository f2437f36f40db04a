"""`postroom template add|edit|show|list|delete`: a project's campaign templates.

  template add NAME --project P --subject TEXT --html FILE [--text FILE] [--buttons FILE.toml]
  template edit NAME --project P [--subject TEXT] [--html FILE] [--text FILE | --derive-text]
                [--buttons FILE.toml]
  template show NAME --project P [--json]
      {"id", "project", "name", "subject", "html", "text", "buttons": [{"name", "text",
       "url" | "channel", "colour"?}], "variables": [...], "created_at", "updated_at"}
  template list --project P [--json]     [{"id", "name", "subject", "buttons", "updated_at"}]
  template delete NAME --project P       (refused, exit 2, while a draft campaign uses it)
The files are UTF-8, at most 1 MiB (the buttons file 64 KiB). A template that
does not compile is refused with one line naming the file and line (exit 2)
and nothing is stored. `variables` in `show` are the contact variables the
template needs (those without a `default`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_action,
    add_group,
    open_database,
    print_json,
    read_input_file,
    utc_date,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.campaign.buttons import Button
    from postroom.campaign.templates import StoredTemplate

MAX_TEMPLATE_FILE_BYTES = 1024 * 1024
MAX_BUTTONS_FILE_BYTES = 64 * 1024


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = add_group(verbs, "template", "a project's campaign templates")
    add = add_action(actions, "add", "add a template (refused when it does not compile)", _add)
    edit = add_action(actions, "edit", "change a template's parts (it must still compile)", _edit)
    for parser, required in ((add, True), (edit, False)):
        parser.add_argument("name", metavar="NAME", help="the template's name")
        parser.add_argument("--project", required=True, metavar="NAME", help="its project")
        parser.add_argument("--subject", required=required, metavar="TEXT", help="a template")
        parser.add_argument("--html", required=required, metavar="FILE", help="the HTML template")
        texts = parser.add_mutually_exclusive_group()
        texts.add_argument("--text", metavar="FILE", help="text template (default: from HTML)")
        parser.add_argument("--buttons", metavar="FILE.toml", help="[[button]] definitions")
        if parser is edit:
            texts.add_argument("--derive-text", action="store_true", help="drop the text template")
    for name, help_text, handler in (
        ("show", "a template's parts, buttons and the variables it needs", _show),
        ("delete", "delete a template (refused while a draft uses it)", _delete),
    ):
        parser = add_action(actions, name, help_text, handler)
        parser.add_argument("name", metavar="NAME", help="the template's name")
        parser.add_argument("--project", required=True, metavar="NAME", help="its project")
    listing = add_action(actions, "list", "a project's templates", _list)
    listing.add_argument("--project", required=True, metavar="NAME", help="the project")


def _add(args: argparse.Namespace) -> int:
    from postroom.campaign.render import TemplateSource

    source = TemplateSource(
        subject=args.subject,
        html=_read_text(args.html),
        text=None if args.text is None else _read_text(args.text),
        buttons=() if args.buttons is None else _read_buttons(args.buttons),
    )
    stored = _store(
        args,
        lambda templates: templates.add(
            args.project, args.name, source, html_file=args.html, text_file=args.text or "text"
        ),
    )
    return _print_stored(args, stored)


def _edit(args: argparse.Namespace) -> int:
    stored = _store(
        args,
        lambda templates: templates.edit(
            args.project,
            args.name,
            subject=args.subject,
            html=None if args.html is None else _read_text(args.html),
            text=None if args.text is None else _read_text(args.text),
            buttons=None if args.buttons is None else _read_buttons(args.buttons),
            derive_text=args.derive_text,
            html_file=args.html or "html",
            text_file=args.text or "text",
        ),
    )
    return _print_stored(args, stored)


def _show(args: argparse.Namespace) -> int:
    stored = _store(args, lambda templates: templates.get(args.project, args.name))
    source = stored.source
    needed = sorted(stored.compiled().contact_variables())
    if args.json:
        print_json({**_summary(args.project, stored), "variables": needed})
        return 0
    print(f"template {stored.name} (project {args.project}, id {stored.id})")
    print(f"  subject:   {source.subject}")
    print(f"  html:      {len(source.html)} characters")
    text = "derived from the HTML" if source.text is None else f"{len(source.text)} characters"
    print(f"  text:      {text}")
    print(f"  variables: {', '.join(needed) or '-'}")
    print(f"  updated:   {utc_date(stored.updated_at)}")
    for button in source.buttons:
        print(f"  button {button.name}: {button.text} -> {_target(button)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    stored = _store(args, lambda templates: templates.list(args.project))
    if args.json:
        print_json(
            [
                {
                    "id": item.id,
                    "name": item.name,
                    "subject": item.source.subject,
                    "buttons": [button.name for button in item.source.buttons],
                    "updated_at": item.updated_at,
                }
                for item in stored
            ]
        )
        return 0
    print_table(
        ("NAME", "BUTTONS", "UPDATED", "SUBJECT"),
        [
            (item.name, len(item.source.buttons), utc_date(item.updated_at), item.source.subject)
            for item in stored
        ],
        right=(1,),
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    _store(args, lambda templates: templates.delete(args.project, args.name))
    if args.json:
        print_json({"deleted": args.name})
    else:
        print(f"template {args.name} deleted")
    return 0


def _store(args: argparse.Namespace, action):  # type: ignore[no-untyped-def]
    from postroom.campaign.templates import TemplateError, Templates, TemplateStoreError

    templates = Templates(open_database(args.config))
    try:
        return action(templates)
    except (TemplateError, TemplateStoreError) as error:
        raise CliError(str(error)) from None


def _read_text(path: str) -> str:
    data = read_input_file(Path(path), MAX_TEMPLATE_FILE_BYTES)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CliError(f"{path}: line {line}: not UTF-8") from None


def _read_buttons(path: str) -> tuple[Button, ...]:
    from postroom.campaign.buttons import ButtonError, parse_buttons

    try:
        return parse_buttons(read_input_file(Path(path), MAX_BUTTONS_FILE_BYTES), path)
    except ButtonError as error:
        raise CliError(str(error)) from None


def _print_stored(args: argparse.Namespace, stored: StoredTemplate) -> int:
    if args.json:
        print_json(_summary(args.project, stored))
    else:
        print(f"template {stored.name} saved (id {stored.id})")
    return 0


def _summary(project: str, stored: StoredTemplate) -> dict[str, object]:
    from postroom.campaign.buttons import button_fields

    source = stored.source
    return {
        "id": stored.id,
        "project": project,
        "name": stored.name,
        "subject": source.subject,
        "html": source.html,
        "text": source.text,
        "buttons": [button_fields(button) for button in source.buttons],
        "created_at": stored.created_at,
        "updated_at": stored.updated_at,
    }


def _target(button: Button) -> str:
    return button.url if button.url is not None else f"channel {button.channel}"
