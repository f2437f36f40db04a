"""The `postroom` command: thin verbs over the packages.

Every command accepts `-c FILE` (default /etc/postroom/postroom.toml or
$POSTROOM_CONFIG). Errors are one line on stderr naming the file and key (or
the object); never a traceback. Exit status, the same for every command:
  0  ok; for a check, the answer is yes.
  1  the answer is no: a check that failed (`domain check` with a required
     record not ok, `domain verify` while the proof is not published,
     `address check` with an invalid input, `auth check` not accepting the
     message), a gate that refused (`rating gate`). Never an error.
  2  the command could not do its job: bad input (an invalid config file
     included), something not found (a queue id, project, domain, mailbox,
     contact), a conflict or a wrong state, or trouble that left the question
     open (a file that cannot be read, the database or DNS failing).
argparse's own usage errors exit 2 as well; 130 after Ctrl-C; 141 when the
reader of stdout went away. Startup cost: see `cli/common.py`.
Verbs (the contract in ARCHITECTURE.md; extend, never rename):
  serve · config check · config init · db upgrade ·
  queue list | show ID | retry ID|--all | hold ID | release ID | delete ID | stats ·
  project add | list | limit · domain add | list | verify | dns | check ·
  domain dkim rotate | list | refresh · dns self ·
  mailbox add | list | passwd | delete · alias add | list | delete · dovecot config | passwd ·
  smtp request | approve | reject | info | list | limits | senders ·
  contact add | show | set | block | unblock | set-rating | import | template | history ·
  rating gate · bounce parse · address check · auth check ·
  list add | remove | delete | show | members | list ·
  sender add | confirm | resend-code | list | show | remove ·
  template add | edit | show | list | delete · channel add | list | remove ·
  campaign create | edit | show | list | delete | copy | audience | preview | test | resend
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from postroom.cli import (
    audience_cmd,
    auth_cmd,
    campaign_cmd,
    channel_cmd,
    config_cmd,
    domain_cmd,
    list_cmd,
    mailbox_cmd,
    queue_cmd,
    rating_cmd,
    sender_cmd,
    smtp_cmd,
    template_cmd,
)
from postroom.cli.common import CliError, add_config_option

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postroom", description="postroom mail server appliance")
    add_config_option(parser, top_level=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    serve = verbs.add_parser(
        "serve", help="run every listener and worker ([server] workers processes)"
    )
    add_config_option(serve)
    serve.add_argument(
        "--worker",
        metavar="I/N",
        help="internal: how serve starts its own worker processes (workers/role.py)",
    )
    serve.add_argument(
        "--prepare",
        action="store_true",
        help="internal: the supervisor's migrations and lease returns (workers/prepare.py)",
    )
    serve.set_defaults(handler=_serve)

    db = verbs.add_parser("db", help="database schema")
    add_config_option(db)
    db_verbs = db.add_subparsers(dest="db_verb", required=True, metavar="ACTION")
    upgrade = db_verbs.add_parser("upgrade", help="apply pending migrations")
    add_config_option(upgrade)
    upgrade.set_defaults(handler=config_cmd.db_upgrade)

    config_cmd.register(verbs)
    queue_cmd.register(verbs)
    domain_cmd.register(verbs)
    mailbox_cmd.register(verbs)
    smtp_cmd.register(verbs)
    rating_cmd.register(verbs)
    audience_cmd.register_address(verbs)
    auth_cmd.register(verbs)
    list_cmd.register(verbs)
    sender_cmd.register(verbs)
    channel_cmd.register(verbs)
    template_cmd.register(verbs)
    campaign_cmd.register(verbs)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from postroom.cli.common import setup_logging_from

    if args.prepare:
        from postroom.workers.prepare import prepare_node

        return prepare_node(setup_logging_from(args.config))
    if args.worker is not None:
        from postroom.app import serve
        from postroom.workers.role import WorkerRole

        role = WorkerRole.from_environment(args.worker)
        setup_logging_from(args.config, role.tag)
        return _run_node(serve(args.config, role))
    config = setup_logging_from(args.config)
    count = config.server.worker_count()
    if count == 1:
        from postroom.app import serve

        return _run_node(serve(args.config))
    # The supervisor lives as long as the node: it imports no more than it uses.
    from postroom.workers.supervisor import supervise

    return asyncio.run(supervise(args.config, config, count))


def _run_node(node: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        import asyncio

        return asyncio.run(node)
    return uvloop.run(node)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors end here (0 and 2)
    # Imported after parsing: every command reads the config, `--help` does not.
    from postroom.config import ConfigError, default_config_path
    from postroom.core.errors import StartupError

    if args.config is None:
        args.config = default_config_path()
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        print(f"postroom: config error: {error}", file=sys.stderr)
        return 2
    except CliError as error:
        print(f"postroom: {error}", file=sys.stderr)
        return error.exit_status
    except StartupError as error:  # `serve` cannot start: trouble, not a "no"
        print(f"postroom: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        detail = _database_error(error)
        if detail is None:
            raise
        print(f"postroom: database error: {detail}", file=sys.stderr)
        return 2


def _database_error(error: Exception) -> str | None:
    """The driver's first line (refused, auth, missing database) when `error` is
    SQLAlchemy's; looked up in sys.modules because a command that never imported
    SQLAlchemy cannot raise its errors, and importing it here would cost every
    command its startup time."""
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(error, exc.SQLAlchemyError):
        return None
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
