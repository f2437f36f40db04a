"""`postroom config check|init` and `postroom db upgrade`."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from postroom.cli.common import CliError, add_config_option


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    config = verbs.add_parser("config", help="check or create a config file")
    add_config_option(config)
    actions = config.add_subparsers(dest="config_verb", required=True, metavar="ACTION")
    check_help = (
        "validate a config file and name any bad key (exit 2); warn about names "
        "public DNS cannot serve (exit 0)"
    )
    check = actions.add_parser("check", help=check_help, description=check_help)
    add_config_option(check)
    check.set_defaults(handler=check_config)
    init = actions.add_parser("init", help="write a config for a local trial run if none exists")
    add_config_option(init)
    init.add_argument("--state-dir", required=True, help="where the database and mail live")
    init.set_defaults(handler=init_config)


def check_config(args: argparse.Namespace) -> int:
    """Exit 0 for a valid config, 2 (through ConfigError) for an invalid one: a bad
    file is bad input, not the answer "no". A valid trial config on `localhost` is
    fine, so names public DNS cannot serve are warnings on stderr, with their line."""
    from postroom.config import load_config
    from postroom.config.locate import locate_key
    from postroom.core.hostnames import public_name_problems

    config = load_config(args.config)
    print(
        f"{args.config}: ok (hostname {config.server.hostname}, "
        f"{len(config.smtp.inbound.listen)} inbound listener(s), "
        f"{len(config.egress)} egress source(s), {len(config.pool)} pool(s))"
    )
    problems = public_name_problems(config)
    if problems:
        text = Path(args.config).read_text(encoding="utf-8")  # load_config just read it
        for problem in problems:
            line = locate_key(text, problem.key)
            where = f"{args.config}:{line}" if line else args.config
            print(f"postroom: warning: {where}: {problem}; {problem.advice}", file=sys.stderr)
    return 0


def init_config(args: argparse.Namespace) -> int:
    """The trial config (cli/trial.py) and its certificate, unless the config exists;
    then, either way, what `make run` shows before serving."""
    from postroom.cli import trial
    from postroom.config import load_config
    from postroom.core.errors import cannot
    from postroom.core.statefiles import create_file

    path = Path(args.config).absolute()
    if path.exists():
        print(f"{path}: exists, left as it is")
    else:
        state_dir = Path(args.state_dir).resolve()
        hostname = socket.getfqdn()
        try:
            cert, key = trial.write_trial_certificate(state_dir / "tls", hostname)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = trial.trial_config_text(hostname, state_dir, cert, key)
            # 0640 like /etc/postroom/postroom.toml: a config grows secrets (a database URL
            # with its password), and the umask must not make it world-readable.
            create_file(path, text.encode("utf-8"))
        except OSError as error:
            raise CliError(cannot(error.filename or path, "write", error)) from None
        print(f"{path}: written")
    config = load_config(path)  # what we wrote must pass our own check
    print(trial.trial_notes(path, config, trial.scripts_dir_off_path()), end="")
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    from postroom.config import load_config
    from postroom.db.engine import make_engine
    from postroom.db.migrate import current_revision, upgrade

    config = load_config(args.config)
    engine = make_engine(config.database_url)
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")
    return 0
