"""Submission throughput: port 587 with STARTTLS and AUTH next to port 25, same run.

Contract (`.venv/bin/python bench/submission.py [options]`, as root, from the repo
root): issue 5's figure, submitted messages/s over 587 with TLS and AUTH, next to
the inbound (port 25, no TLS) figure measured in the same run. The workload of
each phase is `--messages` N messages of `--size` bytes from `--clients`
concurrent SMTP clients, each reusing one connection (MAIL, RCPT, DATA, next
MAIL), all to `user@bench.test`, from the sender `app@client.bench.test`:

- phase "587" (TLS+AUTH): every connection says EHLO, STARTTLS (TLS 1.2+ with
  Python's default client context, trusting the bench's CA), EHLO again and
  AUTH PLAIN as the approved mailbox app@client.bench.test, whose address is
  MAIL FROM and the From header;
- phase "25" (plain): the same sender over port 25 from 127.0.0.1, a relay
  network: no TLS, no AUTH.

Each phase runs in its own fresh `postroom serve` (bench/relay.py's
`run_postroom`: SQLite state with production durability, WAL and
synchronous=FULL, `[logging] level = "warning"`, default delivery settings,
NSD serving `bench.test MX → 127.0.0.10`, a fresh smtp-sink there counting and
dumping what it receives), configured identically for both phases: port 25
with `relay_networks = ["127.0.0.0/8"]` and a `[smtp.submission] listen`
port with a trustme certificate (ECDSA P-256, `[tls] cert`/`key`) and no rate
limit (`max_per_minute = 0`, `max_per_day = 0`). Before `serve` starts, through
the Python API (the bench measures mail, not the DNS proof or the CLI):
client.bench.test becomes a verified linked domain of project "bench" with an
RSA-2048 DKIM key (relay.py's `link_sender_domain`), the project's message
limit is None (unlimited: it still counts), and the mailbox app@ gets a
password hashed by `passwords.hash_password` (argon2id) and approved SMTP
access. So both phases pay what a user gets, DKIM signing and the project's
books (recipients become contacts); 587 adds TLS, AUTH's per-transaction
account read, sender ownership, the rate counter and one message-limit
reservation per recipient. Connections are opened, TLS-negotiated and
authenticated before the clock starts (setup is not timed, as in relay.py).

Measured per phase as relay.py does: accepted msg/s (N / time of the last 250
to DATA), delivered msg/s (N / time until the sink counted N), server CPU
(utime+stime of the postroom process from /proc, until it has gone quiet) per
message; the load generator's and the sink's CPU. Verified per phase: no
client error, N accepted, the sink counted N and its dump holds N DKIM
signatures of client.bench.test, `queue stats` says N delivered, SIGTERM
exits 0, SQLite is WAL with synchronous=FULL, user@bench.test is a contact of
the project, and (587) the project's message count for the month is N.

Phases alternate their order across `--repeat` runs; per-run lines, the
medians per phase and the ratio 587/25 (accepted, delivered, CPU per message)
are printed, or one JSON document with `--json`. Loopback only; every wait is
bounded (`--timeout` per phase). Exit status: 0 when every phase verified, 1
otherwise, 2 for a setup failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import relay  # bench/ is sys.path[0] when this file runs as a script

MAILBOX = "app@client.bench.test"
PASSWORD = "bench-copper-lantern-61"
PHASES = {"587": "587 TLS+AUTH", "25": "25 plain"}


@dataclass(frozen=True, slots=True)
class Certificate:
    """The server's certificate and key, and the CA file the clients trust (PEM)."""

    cert: Path
    key: Path
    cafile: Path


def make_certificate(directory: Path) -> Certificate:
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("relay.postroom.test", relay.SERVER_IP)
    files = Certificate(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    issued.private_key_and_cert_chain_pem.write_to_path(str(files.cert))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.cafile))
    return files


def submission_config(certificate: Certificate, port: int) -> str:
    """Appended to relay.py's config: the 587 listener, its certificate, no rate limit."""
    return f"""
[tls]
cert = "{certificate.cert}"
key = "{certificate.key}"

[smtp.submission]
listen = ["{relay.SERVER_IP}:{port}"]
max_per_minute = 0
max_per_day = 0
"""


def approve_mailbox(state_dir: Path) -> None:
    """After relay.link_sender_domain: an unlimited project and the approved mailbox."""
    from postroom.db.engine import make_engine
    from postroom.mailbox.accounts import Accounts
    from postroom.mailbox.directory import Directory
    from postroom.mailbox.passwords import hash_password
    from postroom.mailbox.smtp_access import SmtpAccess

    engine = make_engine(f"sqlite:///{state_dir}/postroom.db")
    try:
        Directory(engine).set_message_limit(relay.PROJECT, None)
        Accounts(engine, state_dir / "mail").add_mailbox(MAILBOX, hash_password(PASSWORD), 0)
        access = SmtpAccess(engine)
        access.request(MAILBOX, "submission bench", 10_000_000)
        access.approve(MAILBOX)
    finally:
        engine.dispose()


def bookkeeping_checks(phase: str, messages: int) -> Callable[[Path], dict[str, bool]]:
    """The project's books once serve has stopped: the recipient is a contact; on 587
    every message counted against the message limit."""

    def check(state_dir: Path) -> dict[str, bool]:
        from sqlalchemy import select

        from postroom.db.engine import make_engine
        from postroom.db.models import contacts, projects
        from postroom.mailbox.usage import ProjectUsage

        engine = make_engine(f"sqlite:///{state_dir}/postroom.db")
        try:
            with engine.connect() as conn:
                project_id = conn.execute(
                    select(projects.c.id).where(projects.c.name == relay.PROJECT)
                ).scalar_one()
                contact = conn.execute(
                    select(contacts.c.id).where(
                        contacts.c.project_id == project_id, contacts.c.address == relay.RECIPIENT
                    )
                ).first()
            used, _ = ProjectUsage(engine).usage(project_id)
        finally:
            engine.dispose()
        checks = {"recipient_is_contact": contact is not None}
        if phase == "587":
            checks["message_limit_counted_n"] = used == messages
        return checks

    return check


def phase_setup(
    phase: str, args: argparse.Namespace, certificate: Certificate, submission_port: int
) -> relay.PostroomSetup:
    client: tuple[str, ...] = ("--sender", MAILBOX)
    client_port = None
    if phase == "587":
        client += ("--starttls", "--cafile", str(certificate.cafile))
        client += ("--auth", f"{MAILBOX}:{PASSWORD}")
        client_port = submission_port
    return relay.PostroomSetup(
        name=phase,
        extra_config=submission_config(certificate, submission_port),
        prepare_state=approve_mailbox,
        client_port=client_port,
        loadgen_options=client,
        check_state=bookkeeping_checks(phase, args.messages),
    )


def run_phase(
    args: argparse.Namespace, run: int, phase: str, nameserver: str, certificate: Certificate
) -> relay.RunResult:
    from tests.peers.postroom import free_tcp_port

    setup = phase_setup(phase, args, certificate, free_tcp_port(relay.SERVER_IP))
    return relay.run_postroom(args, run, nameserver, args.workdir, None, setup)


# -- orchestration and output ------------------------------------------------------


def schedule(repeat: int) -> Iterator[tuple[int, str]]:
    for run in range(1, repeat + 1):
        order = ["587", "25"] if run % 2 else ["25", "587"]
        for phase in order:
            yield run, phase


def summarise(results: list[relay.RunResult]) -> dict[str, Any]:
    medians, ratio = relay.medians_and_ratio(results, ("587", "25"))
    return {"median": medians, "ratio_587_over_25": ratio}


def print_summary(summary: dict[str, Any]) -> None:
    relay.print_medians(summary["median"], PHASES, summary["ratio_587_over_25"], "587/25")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/submission.py",
        description="Submitted msg/s over 587 (STARTTLS, AUTH) next to port 25, same run.",
    )
    parser.add_argument("--messages", type=int, default=5_000, help="messages per phase")
    parser.add_argument("--clients", type=int, default=10, help="concurrent SMTP clients")
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--repeat", type=int, default=1, help="runs of both phases (medians)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound per phase, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="postroom state parent")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.clients < 1 or args.repeat < 1 or args.size < 256:
        parser.error("--messages, --clients, --repeat must be >= 1 and --size >= 256")
    # What relay.run_postroom reads: signing on (the sink dumps, signatures are
    # counted), no profiling.
    args.sign, args.profile_clock = True, "cpu"
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from tests.peers.dns import NsdServer, make_zone

    if os.geteuid() != 0:
        print("bench/submission.py: run as root (smtp-sink, NSD)", file=sys.stderr)
        return 2
    try:
        import trustme  # noqa: F401  (the test extras; `make bench` installs them)
    except ImportError:
        print("bench/submission.py: trustme is missing: pip install -e '.[test]'", file=sys.stderr)
        return 2
    zone = make_zone(relay.DOMAIN, ["@ IN MX 10 mx.bench.test.", f"mx IN A {relay.SINK_IP}"])
    log = (lambda *_: None) if args.json else print
    log(
        f"submission bench: {args.messages} messages x {args.size} bytes, {args.clients} "
        f"clients, from {MAILBOX} (DKIM-signed), sink smtp-sink on {relay.SINK_IP}, "
        f"repeat {args.repeat}, {os.cpu_count()} CPUs; phases: "
        + ", ".join(f"{phase} = {label}" for phase, label in PHASES.items())
    )
    results: list[relay.RunResult] = []
    directory = Path(tempfile.mkdtemp(prefix="submission-bench-", dir=args.workdir))
    try:
        certificate = make_certificate(directory)
        with NsdServer({relay.DOMAIN: zone}) as nsd:
            for run, phase in schedule(args.repeat):
                result = run_phase(args, run, phase, nsd.nameserver(), certificate)
                results.append(result)
                if not args.json:
                    relay.print_run(result)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    summary = summarise(results)
    if args.json:
        document = {
            "parameters": {
                key: value
                for key, value in vars(args).items()
                if key not in ("json", "workdir", "sign", "profile_clock")
            }
            | {"sink": relay.SINK_IP, "cpus": os.cpu_count(), "phases": PHASES},
            "runs": [asdict(result) for result in results],
            **summary,
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        print_summary(summary)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
