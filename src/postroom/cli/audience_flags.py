"""The audience flags of `campaign create|edit` (ARCHITECTURE.md).

`add_audience_arguments(parser)` adds `--list L` (repeatable), `--exclude-list L`,
`--stage S`, `--state S`, `--channel C`, `--var 'NAME OP VALUE'`,
`--registered-after DATE`, `--registered-before DATE`, `--min-rating N` (all
ANDed; a repeated flag means "any of"). `flag_values(args)` gives the raw values
of the flags given, by `AudienceFilter` field; `filter_from_args(args, base)`
the checked filter (`postroom.campaign.audience.filter_from_values`), where a
value that does not parse is one `AudienceError` line naming its flag. The CLI
builds its parser on every start: this module imports no other package.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postroom.campaign.audience import AudienceFilter

# `audience.OPERATORS` as the help text shows it (a test keeps the two equal).
OPERATORS_TEXT = "= != < <= > >= contains exists"

FLAGS = {  # field → (flag, dest)
    "lists": ("--list", "audience_lists"),
    "exclude_lists": ("--exclude-list", "audience_exclude_lists"),
    "stages": ("--stage", "audience_stages"),
    "states": ("--state", "audience_states"),
    "channels": ("--channel", "audience_channels"),
    "variables": ("--var", "audience_variables"),
    "registered_after": ("--registered-after", "audience_registered_after"),
    "registered_before": ("--registered-before", "audience_registered_before"),
    "min_rating": ("--min-rating", "audience_min_rating"),
}


def add_audience_arguments(parser: argparse.ArgumentParser) -> None:
    """The audience flags (ARCHITECTURE.md); all ANDed. Repeatable ones mean "any of"."""
    group = parser.add_argument_group("audience (all conditions must hold)")
    helps = {
        "lists": ("L", "a member of this list (repeatable: any of them)"),
        "exclude_lists": ("L", "not a member of this list (repeatable)"),
        "stages": ("S", "CRM stage (repeatable: any of them)"),
        "states": ("S", "funnel state (repeatable: any of them)"),
        "channels": ("C", "connected on this channel (repeatable: any of them)"),
        "variables": (
            "'NAME OP VALUE'",
            f"a variable condition, OP one of {OPERATORS_TEXT} (repeatable)",
        ),
        "registered_after": ("DATE", "registered on or after DATE"),
        "registered_before": ("DATE", "registered before DATE"),
        "min_rating": ("N", "rating at least N"),
    }
    for field_name, (flag, dest) in FLAGS.items():
        metavar, help_text = helps[field_name]
        repeatable = field_name not in ("registered_after", "registered_before", "min_rating")
        group.add_argument(
            flag,
            dest=dest,
            action="append" if repeatable else "store",
            default=None,
            metavar=metavar,
            help=help_text,
        )


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field_name, (_flag, dest) in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[field_name] = value
    return values


def filter_from_args(
    args: argparse.Namespace, base: AudienceFilter | None = None
) -> AudienceFilter:
    """The filter the flags describe; with `base` (`campaign edit`), the flags given
    replace those fields of `base` and the others stay."""
    from postroom.campaign.audience import filter_from_values

    labels = {field_name: flag for field_name, (flag, _dest) in FLAGS.items()}
    return filter_from_values(flag_values(args), labels, base)
