"""`postroom channel add|list|remove`: a project's channels, which buttons may name.

  channel add NAME URL --project P [--json]     {"name", "url"}
  channel list --project P [--json]             [{"name", "url"}]
  channel remove NAME --project P               (refused, exit 2, while a button names it)
A name is letters, digits, `_` and `-`; a URL is https, http, mailto or tel
(`postroom.campaign.channels`).
"""

from __future__ import annotations

import argparse

from postroom.cli.common import CliError, add_action, add_group, open_database, print_json
from postroom.cli.table import print_table


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    channels = add_group(verbs, "channel", "a project's channels (buttons may point at them)")
    channel_add = add_action(channels, "add", "add a channel: a name and its URL", _channel_add)
    channel_add.add_argument("name", metavar="NAME", help="what buttons call it")
    channel_add.add_argument("url", metavar="URL", help="https, http, mailto or tel")
    channel_list = add_action(channels, "list", "a project's channels", _channel_list)
    channel_remove = add_action(
        channels, "remove", "remove a channel (refused while a button uses it)", _channel_remove
    )
    channel_remove.add_argument("name", metavar="NAME", help="the channel's name")
    for parser in (channel_add, channel_list, channel_remove):
        parser.add_argument("--project", required=True, metavar="NAME", help="the project")


def _channel_add(args: argparse.Namespace) -> int:
    channel = _channels(args, lambda channels: channels.add(args.project, args.name, args.url))
    if args.json:
        print_json({"name": channel.name, "url": channel.url})
    else:
        print(f"channel {channel.name} -> {channel.url}")
    return 0


def _channel_list(args: argparse.Namespace) -> int:
    found = _channels(args, lambda channels: channels.list(args.project))
    if args.json:
        print_json([{"name": item.name, "url": item.url} for item in found])
    else:
        print_table(("NAME", "URL"), [(item.name, item.url) for item in found])
    return 0


def _channel_remove(args: argparse.Namespace) -> int:
    _channels(args, lambda channels: channels.remove(args.project, args.name))
    if args.json:
        print_json({"removed": args.name})
    else:
        print(f"channel {args.name} removed")
    return 0


def _channels(args: argparse.Namespace, action):  # type: ignore[no-untyped-def]
    from postroom.campaign.channels import ChannelError, Channels

    try:
        return action(Channels(open_database(args.config)))
    except ChannelError as error:
        raise CliError(str(error)) from None
