"""`postroom mailbox add|list|passwd|delete`, `postroom alias add|list|delete`,
`postroom dovecot config|passwd`.

Mailboxes live on verified domains only. Passwords come from stdin
(`--password-stdin`, one line), from a prompt on a terminal, or are generated
and printed once; weak ones are refused before anything is written. Every
change rewrites the Dovecot passwd-file ([mailbox] dovecot_passwd_file) so
that IMAP logins follow at once; a stored mailbox the file cannot hold is left
out with a warning on stderr, never blocking the others. Bad input: one line
naming the problem, exit 2, nothing half-created: a new name is checked against
the naming rule (`names.new_mailbox_address`) and its Maildir path against the
passwd-file before the password is asked for and anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.cli.common import (
    CliError,
    add_action,
    add_group,
    cannot,
    human_size,
    open_database,
    print_json,
)
from postroom.cli.table import print_table

if TYPE_CHECKING:
    from postroom.config import Config
    from postroom.mailbox.accounts import Accounts


def register(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mailbox = add_group(verbs, "mailbox", "mailboxes of verified domains")
    add = _action(mailbox, "add", "create a mailbox and its Maildir", _add)
    add.add_argument("address", metavar="ADDRESS", help="local-part@domain of a verified domain")
    add.add_argument("--password-stdin", action="store_true", help=_PASSWORD_STDIN_HELP)
    add.add_argument("--quota", metavar="SIZE", help="e.g. 500MB, 2GiB (default: none)")
    listing = _action(mailbox, "list", "mailboxes with quota and usage", _list)
    listing.add_argument("--domain", metavar="DOMAIN", help="only this domain's mailboxes")
    listing.add_argument("--project", metavar="NAME", help="only this project's mailboxes")
    passwd = _action(mailbox, "passwd", "set a mailbox's password", _passwd)
    passwd.add_argument("address", metavar="ADDRESS", help="the mailbox")
    passwd.add_argument("--password-stdin", action="store_true", help=_PASSWORD_STDIN_HELP)
    remove = _action(mailbox, "delete", "delete a mailbox (and the aliases to it)", _delete)
    remove.add_argument("address", metavar="ADDRESS", help="the mailbox")
    remove.add_argument("--yes", action="store_true", help="really delete")
    remove.add_argument(
        "--remove-maildir", action="store_true", help="also delete the stored mail (default: keep)"
    )

    alias = add_group(verbs, "alias", "aliases and catch-alls (FROM = address or @domain)")
    alias_add = _action(alias, "add", "deliver mail for FROM to mailbox TO", _alias_add)
    alias_add.add_argument("source", metavar="FROM", help="an address, or @domain for a catch-all")
    alias_add.add_argument("target", metavar="TO", help="an existing mailbox")
    alias_list = _action(alias, "list", "aliases", _alias_list)
    alias_list.add_argument("--domain", metavar="DOMAIN", help="only this domain's aliases")
    alias_list.add_argument("--project", metavar="NAME", help="only this project's aliases")
    alias_delete = _action(alias, "delete", "remove an alias", _alias_delete)
    alias_delete.add_argument("source", metavar="FROM", help="an address, or @domain")
    alias_delete.add_argument(
        "target", metavar="TO", nargs="?", help="only the alias to this mailbox (default: all)"
    )

    dovecot = add_group(verbs, "dovecot", "what Dovecot needs to serve the Maildirs over IMAP")
    dovecot_config = _action(
        dovecot, "config", "print a Dovecot config snippet (and what it assumes)", _dovecot_config
    )
    dovecot_config.description = (
        "Print a dovecot.conf fragment that serves the Maildirs over IMAP with logins from "
        "the passwd-file postroom keeps. It assumes that Dovecot's mail processes run as the "
        "owner of the Maildirs ([mailbox] dovecot_mail_user and dovecot_mail_group; default: "
        "the owner of the mail root, the user postroom runs as; never root) and that Dovecot's "
        "auth process (user dovecot) can read the passwd-file ([mailbox] dovecot_passwd_file, "
        "group [mailbox] dovecot_group). It checks both on this machine: what to do first is "
        "listed at the top of the output and on stderr."
    )
    _action(dovecot, "passwd", "rewrite the Dovecot passwd-file now", _dovecot_passwd)


_PASSWORD_STDIN_HELP = "read the password from stdin (default: a prompt, or generated)"


def _action(group, name: str, help_text: str, handler) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    return add_action(group, name, help_text, lambda args: _run(handler, args))


def _run(handler, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from postroom.config import load_config
    from postroom.mailbox.accounts import Accounts
    from postroom.mailbox.directory import DirectoryError
    from postroom.mailbox.maildir import MaildirError
    from postroom.mailbox.names import InvalidName

    config = load_config(args.config)
    accounts = Accounts(open_database(args.config), Path(config.mail_root))
    try:
        return int(handler(config, accounts, args))
    except (DirectoryError, InvalidName, MaildirError) as error:
        raise CliError(str(error)) from None


def _address(text: str) -> str:
    from postroom.mailbox.names import normalise_address

    local, domain = normalise_address(text)
    return f"{local}@{domain}"


def _stored_address(accounts: Accounts, text: str) -> str:
    """The address of an existing mailbox: `_address`, or for a row stored before the
    naming rules (or by hand) that syntax refuses, the row spelled as typed."""
    from postroom.mailbox.directory import DirectoryError
    from postroom.mailbox.names import InvalidName, lookup_address

    try:
        return _address(text)
    except InvalidName:
        stored = lookup_address(text.strip())
        if stored is None:
            raise
        try:
            return accounts.mailbox(stored).address
        except DirectoryError:
            raise CliError(f"no mailbox {text.strip()!r}") from None


def _read_password(args: argparse.Namespace, address: str, config: Config) -> tuple[str, bool]:
    """(password, generated?) — from stdin, a terminal prompt, or generated."""
    import getpass
    import secrets

    from postroom.mailbox.passwords import weakness

    if args.password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        generated = False
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {address}: ")
        if getpass.getpass("again: ") != password:
            raise CliError("the two passwords differ; nothing changed")
        generated = False
    else:
        password, generated = secrets.token_urlsafe(18), True
    problem = weakness(password, address, config.mailbox.min_password_length)
    if problem is not None:
        raise CliError(f"mailbox {address}: {problem}; nothing changed")
    return password, generated


def _quota(text: str | None) -> int:
    from postroom.config import ConfigError
    from postroom.config.loader import parse_size

    if text is None:
        return 0
    try:
        return int(parse_size(text, "--quota"))
    except ConfigError:
        raise CliError(f"--quota {text!r}: not a size (e.g. 500MB, 2GiB, 0 for none)") from None


def _add(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    from postroom.core.ownership import hand_to_state_owner, tree
    from postroom.mailbox.dovecot import check_maildir
    from postroom.mailbox.maildir import MaildirError, ensure_maildir, set_quota
    from postroom.mailbox.names import new_mailbox_address
    from postroom.mailbox.passwords import hash_password

    address = new_mailbox_address(args.address)
    quota = _quota(args.quota)
    try:
        check_maildir(str(accounts.maildir_of(address)))
    except ValueError as error:
        raise CliError(f"mailbox {address}: {error} ([mailbox] root); nothing changed") from None
    password, generated = _read_password(args, address, config)
    mailbox = accounts.add_mailbox(address, hash_password(password), quota)
    try:
        ensure_maildir(mailbox.maildir)
        set_quota(mailbox.maildir, quota)
        domain_dir = mailbox.maildir.parent
        hand_to_state_owner(
            [domain_dir.parent, domain_dir, *tree(mailbox.maildir)], Path(config.state.dir)
        )
    except (OSError, MaildirError) as error:
        accounts.delete_mailbox(address)  # nothing half-created
        raise CliError(f"mailbox {address}: cannot create {mailbox.maildir}: {error}") from None
    sync_dovecot(config, accounts)
    if args.json:
        print_json({"address": address, "maildir": str(mailbox.maildir), "quota_bytes": quota})
    else:
        print(f"mailbox {address} created, Maildir {mailbox.maildir}")
    if generated:
        print(f"password: {password}  (shown once)", file=sys.stderr if args.json else sys.stdout)
    return 0


def _list(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    from postroom.mailbox.maildir import usage
    from postroom.mailbox.names import normalise_domain

    domain = normalise_domain(args.domain) if args.domain else None
    rows = []
    for mailbox in accounts.mailboxes(domain=domain, project=args.project):
        used = usage(mailbox.maildir) if mailbox.maildir.is_dir() else None
        rows.append(
            {
                "address": mailbox.address,
                "project": mailbox.project,
                "quota_bytes": mailbox.quota_bytes,
                "used_bytes": used.bytes_used if used else 0,
                "messages": used.messages if used else 0,
                "maildir": str(mailbox.maildir),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    # People read sizes in binary units (the quota's own notation); --json keeps bytes.
    print_table(
        ("ADDRESS", "PROJECT", "USED", "QUOTA", "MESSAGES"),
        [
            (
                row["address"],
                row["project"],
                human_size(row["used_bytes"]),
                human_size(row["quota_bytes"]) if row["quota_bytes"] else "none",
                row["messages"],
            )
            for row in rows
        ],
        right=(2, 3, 4),
    )
    return 0


def _passwd(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    from postroom.mailbox.passwords import hash_password

    address = _stored_address(accounts, args.address)
    accounts.mailbox(address)  # exists, before asking for a password
    password, generated = _read_password(args, address, config)
    accounts.set_password(address, hash_password(password))
    sync_dovecot(config, accounts)
    print(f"password of {address} changed")
    if generated:
        print(f"password: {password}  (shown once)")
    return 0


def _delete(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    address = _stored_address(accounts, args.address)
    mailbox = accounts.mailbox(address)
    if not args.yes:
        keep = "removed" if args.remove_maildir else "kept"
        raise CliError(
            f"mailbox {address}: add --yes to delete it (its Maildir {mailbox.maildir} "
            f"would be {keep}); nothing changed"
        )
    _, removed_aliases = accounts.delete_mailbox(address)
    sync_dovecot(config, accounts)
    for source in removed_aliases:
        print(f"alias {source} → {address} removed")
    if args.remove_maildir and mailbox.maildir.exists():
        from postroom.mailbox.maildir import remove_maildir

        remove_maildir(mailbox.maildir)
        print(f"mailbox {address} deleted, Maildir {mailbox.maildir} removed")
    else:
        print(f"mailbox {address} deleted, Maildir {mailbox.maildir} kept")
    return 0


def _alias_source(text: str, *, new: bool = False) -> str:
    from postroom.mailbox.names import new_mailbox_address, normalise_domain

    if text.startswith("@"):
        return "@" + normalise_domain(text[1:])
    return new_mailbox_address(text, "alias") if new else _address(text)


def _alias_add(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    alias = accounts.add_alias(_alias_source(args.source, new=True), _address(args.target))
    kind = "catch-all" if alias.source.startswith("@") else "alias"
    print(f"{kind} {alias.source} → {alias.target}")
    return 0


def _alias_list(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    from postroom.mailbox.names import normalise_domain

    domain = normalise_domain(args.domain) if args.domain else None
    rows = accounts.aliases(domain=domain, project=args.project)
    if args.json:
        print_json([{"from": a.source, "to": a.target, "domain": a.domain} for a in rows])
        return 0
    for alias in rows:
        print(f"{alias.source:40}  →  {alias.target}")
    return 0


def _alias_delete(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    target = _address(args.target) if args.target else None
    count = accounts.delete_alias(_alias_source(args.source), target)
    print(f"{count} alias(es) removed")
    return 0


def sync_dovecot(config: Config, accounts: Accounts) -> None:
    """Rewrite the passwd-file from the database (atomic; Dovecot re-reads it by mtime);
    warn on stderr about each mailbox it cannot hold."""
    from postroom.mailbox.dovecot_sync import sync_passwd_file

    path = Path(config.dovecot_passwd_file)
    try:
        report = sync_passwd_file(accounts, path, config.mailbox.dovecot_group)
    except (OSError, TimeoutError) as error:
        raise CliError(cannot(path, "write the Dovecot passwd-file", error)) from None
    for left in report.left_out:
        print(
            f"postroom: warning: mailbox {left.address!r} is not in {path} (no IMAP login): "
            f"{left.reason}; `postroom mailbox delete '{left.address}' --yes` removes it",
            file=sys.stderr,
        )
    if report.group_note:
        print(f"postroom: warning: {report.group_note}", file=sys.stderr)


# Where each value of the Dovecot config comes from, for an error that names the key.
_DOVECOT_KEYS = {
    "passwd_file": "[mailbox] dovecot_passwd_file (default: [state] dir + /dovecot/passwd)",
    "mail_root": "[mailbox] root (default: [state] dir + /mail)",
    "mail_user": "[mailbox] dovecot_mail_user",
    "mail_group": "[mailbox] dovecot_mail_group",
    "passwd_group": "[mailbox] dovecot_group",
}


def _dovecot_config(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    from postroom.mailbox.dovecot import UnusableValue, render_config
    from postroom.mailbox.dovecot_checks import DovecotSetup, problems

    setup = DovecotSetup.for_config(config)
    notes = problems(setup)
    try:
        text = render_config(
            passwd_file=str(setup.passwd_file),
            mail_root=str(setup.mail_root),
            mail_user=setup.mail_user,
            mail_group=setup.mail_group,
            passwd_group=setup.passwd_group,
            notes=notes,
        )
    except UnusableValue as error:
        key = _DOVECOT_KEYS.get(error.name, error.name)
        raise CliError(f"{args.config}: {key}: {error}") from None
    print(text)
    for note in notes:
        print(f"postroom: dovecot config: not ready: {note}", file=sys.stderr)
    return 0


def _dovecot_passwd(config: Config, accounts: Accounts, args: argparse.Namespace) -> int:
    sync_dovecot(config, accounts)
    print(f"{config.dovecot_passwd_file}: written")
    return 0
