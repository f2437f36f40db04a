"""Campaign throughput: a 100,000-contact campaign through `postroom serve` vs Postfix relaying.

Contract (`.venv/bin/python bench/campaign.py [options]`, as root, from the repo root):
issue 15's figure. Per `--repeat` round (1; medians when more), in one run:

- postroom: a fresh SQLite state (production durability), set up untimed through the
  CLI where the CLI can do it: `contact import` of a generated CSV of `--contacts` N
  (100,000) rows (email, name, one variable `city`) onto one list; `template add`
  (subject and HTML with the contact's name, the variable, two URL buttons; the
  unsubscribe footer and List-Unsubscribe headers are added by postroom);
  `sender add`, then `sender confirm` with the code read from the queued code mail
  (`queue list`/`queue show`), which `queue delete` then drops; `campaign create
  --list`; `campaign preview --format eml` (its size sizes Postfix's messages). What
  the CLI would prove by DNS — the sender's domain linked and verified, with its
  RSA-2048 DKIM key — goes through the Python API (relay.py's `link_sender_domain`).
  The config has three pools, `transactional`, `mailings`, `mailings-2`, each of its
  own `[[egress]]` source (127.0.0.21, .22, .23); the campaign goes through `--pool`
  (mailings). Then `serve` starts (`[server] workers` = `--workers`, else the
  server's default) and the clock runs from `campaign launch ID --pool NAME` (the
  launch command's own time, the audience snapshot, is inside) until the sinks have
  counted every recipient. Meanwhile `campaign status ID --json` is polled every
  `STATUS_POLL_S` (one CLI call each, on the same cores) for its queued and delivered
  counts. Recipients are `userNNNNNN@bench.test` (MX → smtp-sink on 127.0.0.10, no
  recording, `-c` counters) except every `--sample-every`-th (1,000), at
  `sample.bench.test` (MX → a recording smtp-sink on 127.0.0.11, same port): the
  sample every message of which is checked (DKIM-Signature by d=client.bench.test,
  List-Unsubscribe with List-Unsubscribe-Post, the contact's name and variable in
  its decoded HTML and text parts, sent from the pool's source address).
- Postfix: relay.py's `run_postfix`: a private Postfix relaying N messages from
  `smtp-source` (20 sessions, connections reused), pre-rendered and unsigned, whose
  size is the preview's, to the same kind of smtp-sink, timed from the first
  injection to the sink counting N.

Figures: delivered msg/s (launch to last delivery; Postfix: first injection to last
delivery), server CPU ms/msg (the server's whole process tree: bench/cpu_meter.py, a
child cgroup v2 when one can be made, else /proc), and postroom's peak memory: the
sum of VmRSS over the supervisor and its workers, sampled every `RSS_SAMPLE_S` by a
thread of this process (`rss_peak_sampled_mb`), next to the sum of each process's
own peak (VmHWM, read just before SIGTERM: an upper bound, peaks need not coincide;
`rss_hwm_sum_mb`, what the goal is judged on) and the cgroup's `memory.peak` when the
cgroup v2 has the memory controller. Also: the launch command's wall and CPU time,
the production time (status `finished_at` − `launched_at`: the last recipient
queued), the polls' queued/delivered counts over time, the CPU breakdown by process.
Goal (issue 15): postroom ≥ 1.5× Postfix's delivered msg/s, peak RSS < 300 MB;
printed as met / NOT met.

Checks (exit 1 when one fails): the sinks counted exactly the audience's recipients;
`campaign status` says nothing skipped, every recipient queued, all delivered;
exactly once in the database after serve stopped (every recipient row `queued` with
its own queue id, one delivery each, all delivered from the pool's source, no two
deliveries to one address); every sampled message as above; SIGTERM exits 0;
Postfix's queue empty.

`--dry-run`: everything but the launch — the setup, the preview's checks, serve
started and stopped, and the Postfix half (unless `--only postroom`): what can run
before `campaign launch` exists. `--profile FILE`: one postroom run (no Postfix)
under cProfile in the server process (relay.py's `_serve-profiled`; `[server]
workers = 1` unless `--workers` says otherwise, since workers are not profiled):
FILE for the event loop thread, FILE.threads for the other threads (rendering and
signing, the group commit); the top functions are printed. `--json`: one document.
Loopback only; every wait is bounded (`--timeout`). Exit status 2 when a peer or the
setup failed or a run passed `--timeout`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import email
import email.policy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cpu_meter import cpu_by_name, open_meter, sample_tree, settle
from relay import (
    DOMAIN,
    POLL_S,
    PROJECT,
    SENDER,
    SETTLE_MAX_S,
    SINK_IP,
    ProfiledPostroom,
    RunResult,
    SinkCounter,
    link_sender_domain,
    postroom_config,
    print_profile,
    run_postfix,
)

SAMPLE_DOMAIN = f"sample.{DOMAIN}"
SAMPLE_SINK_IP = "127.0.0.11"
SOURCES = {"transactional": "127.0.0.21", "mailings": "127.0.0.22", "mailings-2": "127.0.0.23"}
LIST_NAME = "readers"
TEMPLATE_NAME = "newsletter"
CITIES = ("Berlin", "Paris", "Oslo", "Lisbon", "Vienna", "Madrid", "Rome", "Prague")
SMTP_SOURCE_HEADER_BYTES = 140  # smtp-source's own header lines before its -l payload
MIN_PAYLOAD_BYTES = 256
DEFAULT_MESSAGE_BYTES = 6000  # about the preview's size; --size
STATUS_POLL_S = 10.0  # a poll is a CLI start and a count: ~0.4 s of CPU at 100,000
RSS_SAMPLE_S = 0.25
GOAL_RATIO = 1.5
GOAL_RSS_MB = 300.0
CLI_TIMEOUT_S = 600.0
_CODE = re.compile(r"Subject: (\d{6}) is your sender confirmation code")

SUBJECT = "News for {{ contact.name }}"
HTML = """<!doctype html>
<html><head><style>.lead { color: #333333; font-size: 18px; }</style></head>
<body>
<p class="lead">Hello {{ contact.name }}!</p>
<p>Our autumn programme in {{ contact.city }} starts next week: six evenings of talks,
a workshop on Saturday and a market on the square. Seats are limited, so book early;
members keep their usual discount.</p>
{{ button("programme") }}
<p>Questions? Reply to this message, a person reads every answer.</p>
</body></html>
"""
BUTTONS = """
[[button]]
name = "programme"
text = "See the programme"
url = "https://events.client.bench.test/autumn?utm=mail"
colour = "#0a7d32"

[[button]]
name = "tickets"
text = "Book a seat"
url = "https://events.client.bench.test/tickets"
"""


def contact_address(index: int, sample_every: int) -> str:
    domain = SAMPLE_DOMAIN if sample_every and index % sample_every == 0 else DOMAIN
    return f"user{index:06d}@{domain}"


def contact_name(index: int) -> str:
    return f"Reader {index:06d}"


def write_contacts(path: Path, count: int, sample_every: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(("email", "name", "city"))
        for index in range(count):
            writer.writerow(
                (contact_address(index, sample_every), contact_name(index), contact_city(index))
            )


def contact_city(index: int) -> str:
    return CITIES[index % len(CITIES)]


def egress_config(public_url: str = "https://links.client.bench.test") -> str:
    """Three pools, each of its own source; the links' base; no DNS at import."""
    sources = "".join(
        f'\n[[egress]]\nname = "{pool}-source"\naddress = "{address}"\n'
        f'helo = "{pool}.relay.postroom.test"\n'
        for pool, address in SOURCES.items()
    )
    pools = "".join(
        f'\n[[pool]]\nname = "{pool}"\nsources = ["{pool}-source"]\n' for pool in SOURCES
    )
    return f'\n[http]\npublic_url = "{public_url}"\n\n[addresses]\ndns = false\n{sources}{pools}'


# -- setup through the CLI (untimed) ---------------------------------------------


class Setup:
    """The campaign made ready on a stopped server's state (see the module docstring)."""

    def __init__(self, server: ProfiledPostroom, directory: Path, args: argparse.Namespace):
        self.server = server
        self.directory = directory
        self.args = args
        self.campaign_id = 0
        self.preview: bytes = b""
        self.timings: dict[str, float] = {}

    def cli(self, *command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "postroom.cli.main", "-c", str(self.server.config_path),
             *command],
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(
                f"postroom {' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def timed(self, name: str, *command: str) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        result = self.cli(*command)
        self.timings[name] = round(time.monotonic() - start, 2)
        return result

    def run(self) -> None:
        link_sender_domain(self.server.directory / "state")
        csv_path = self.directory / "contacts.csv"
        write_contacts(csv_path, self.args.contacts, self.args.sample_every)
        imported = json.loads(
            self.timed(
                "contact_import", "contact", "import", str(csv_path), "--project", PROJECT,
                "--list", LIST_NAME, "--no-dns", "--json",
            ).stdout
        )  # fmt: skip
        csv_path.unlink()
        if imported.get("imported") != self.args.contacts:
            raise RuntimeError(f"contact import: {json.dumps(imported)[:500]}")
        (self.directory / "news.html").write_text(HTML)
        (self.directory / "buttons.toml").write_text(BUTTONS)
        self.timed(
            "template_add", "template", "add", TEMPLATE_NAME, "--project", PROJECT,
            "--subject", SUBJECT, "--html", str(self.directory / "news.html"),
            "--buttons", str(self.directory / "buttons.toml"),
        )  # fmt: skip
        self.confirm_sender()
        created = self.timed(
            "campaign_create", "campaign", "create", "--project", PROJECT, "--name",
            "autumn", "--sender", SENDER, "--template", TEMPLATE_NAME, "--list", LIST_NAME,
            "--json",
        )  # fmt: skip
        self.campaign_id = int(json.loads(created.stdout)["id"])
        out = self.directory / "preview.eml"
        self.cli(
            "campaign", "preview", str(self.campaign_id), "--contact",
            contact_address(0, self.args.sample_every), "--format", "eml", "--out", str(out),
        )  # fmt: skip
        self.preview = out.read_bytes()

    def confirm_sender(self) -> None:
        """`sender add`, the code from the queued code mail, `sender confirm`, and the
        code mail deleted from the queue (it is not the campaign's)."""
        self.cli("sender", "add", SENDER, "--project", PROJECT, "--name", "Bench Events")
        queued = json.loads(self.cli("queue", "list", "--json").stdout)
        if len(queued) != 1:
            raise RuntimeError(f"expected the code mail alone in the queue: {queued}")
        queue_id = queued[0]["id"]
        shown = json.loads(self.cli("queue", "show", queue_id, "--json").stdout)
        code = _CODE.search(shown.get("headers", ""))
        if code is None:
            raise RuntimeError(f"no code in the code mail's headers: {shown.get('headers')}")
        self.cli("sender", "confirm", SENDER, code.group(1), "--project", PROJECT)
        self.cli("queue", "delete", queue_id)


# -- what the sample sink received -------------------------------------------------


def check_message(data: bytes, rcpt: str) -> dict[str, bool]:
    """The checks of one campaign message to `rcpt` (sink's copy, LF line ends)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    index = int(rcpt.split("@")[0].removeprefix("user"))
    bodies = [
        part.get_content()
        for part in message.walk()
        if part.get_content_type() in ("text/html", "text/plain")
    ]
    signature = str(message.get("DKIM-Signature", ""))
    unsubscribe = str(message.get("List-Unsubscribe", ""))
    return {
        "dkim_signed_rsa_sha256_by_sender_domain": "a=rsa-sha256" in signature
        and "d=client.bench.test" in signature.replace(" ", ""),
        "list_unsubscribe_https_and_mailto": "<https://" in unsubscribe
        and "<mailto:" in unsubscribe,
        "list_unsubscribe_post_one_click": message.get("List-Unsubscribe-Post")
        == "List-Unsubscribe=One-Click",
        "subject_has_contact_name": contact_name(index) in str(message.get("Subject", "")),
        "html_and_text_have_name_and_variable": len(bodies) == 2
        and all(contact_name(index) in body and contact_city(index) in body for body in bodies),
    }


def check_sample(messages: list[Any], expected: int, source_ip: str) -> dict[str, bool]:
    checks = {"sample_count": len(messages) == expected}
    failing: dict[str, int] = {}
    for received in messages:
        per_message = check_message(received.data, received.rcpt_tos[0])
        per_message["sent_from_pool_source"] = received.peer_ip == source_ip
        for name, ok in per_message.items():
            failing[name] = failing.get(name, 0) + (not ok)
    checks |= {f"sample_{name}": count == 0 for name, count in failing.items()}
    return checks


# -- memory of the server's tree ------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    """A `/proc/PID/status` field in KiB (0 when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """A thread summing VmRSS over the tree of `root` every RSS_SAMPLE_S; the peak."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            total = sum(status_kib(pid, "VmRSS") for pid in sample_tree(self.root).live)
            self.peak_kib = max(self.peak_kib, total)
            self.samples += 1


def hwm_kib(root: int) -> list[int]:
    """Each live process's own peak RSS (VmHWM) in the tree of `root`, the root first."""
    live = sample_tree(root).live
    return [status_kib(pid, "VmHWM") for pid in sorted(live, key=lambda pid: pid != root)]


def cgroup_memory_peak_mb(meter: Any) -> float | None:
    path = getattr(meter, "path", None)
    if path is None or not (path / "memory.peak").exists():
        return None
    return round(int((path / "memory.peak").read_text()) / 2**20, 1)


# -- one postroom run ---------------------------------------------------------------


@dataclass
class CampaignRun:
    run: int
    contacts: int
    recipients: int = 0  # audience minus skipped: what the sinks must count
    message_bytes: int = 0  # the preview's size (Postfix's messages are as big)
    setup_s: dict[str, float] = field(default_factory=dict)
    launch_s: float = 0.0  # the `campaign launch` command's wall time
    launch_cpu_s: float = 0.0  # and its CPU (outside the server's tree)
    produced_s: float | None = None  # launch → status showed all queued (±STATUS_POLL_S)
    production_s: float | None = None  # the campaign's finished_at − launched_at (server clock)
    delivered_s: float = 0.0
    delivered_per_s: float = 0.0
    server_cpu_delivered_s: float = 0.0
    server_cpu_total_s: float = 0.0
    server_cpu_ms_per_msg: float = 0.0
    server_cpu_by_process: dict[str, float] = field(default_factory=dict)
    cpu_source: str = ""
    rss_peak_sampled_mb: float = 0.0
    rss_hwm_sum_mb: float = 0.0
    rss_hwm_by_process_mb: list[float] = field(default_factory=list)  # serve first, then workers
    rss_samples: int = 0
    cgroup_memory_peak_mb: float | None = None
    sink_count: int = 0
    sample_count: int = 0
    status_polls: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    log_tail: str = ""
    ok: bool = False


class StatusPoller:
    """`campaign status ID --json` every STATUS_POLL_S in a thread: (elapsed, queued,
    delivered) per poll and when queued first reached `target`."""

    def __init__(self, setup: Setup, start: float, target: int) -> None:
        self.setup, self.start, self.target = setup, start, target
        self.polls: list[dict[str, Any]] = []
        self.produced_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status poller", daemon=True)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(CLI_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.wait(STATUS_POLL_S):
            with contextlib.suppress(RuntimeError, ValueError, subprocess.TimeoutExpired):
                status = campaign_status(self.setup)
                elapsed = round(time.monotonic() - self.start, 2)
                self.polls.append(
                    {"s": elapsed, "queued": status["queued"], "delivered": status["delivered"]}
                )
                if self.produced_s is None and status["queued"] >= self.target:
                    self.produced_s = elapsed


def campaign_status(setup: Setup) -> dict[str, Any]:
    return json.loads(setup.cli("campaign", "status", str(setup.campaign_id), "--json").stdout)


def launch(setup: Setup, pool: str) -> tuple[float, float]:
    """`campaign launch ID --pool POOL`: its wall and CPU seconds."""
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "postroom.cli.main", "-c", str(setup.server.config_path),
         "campaign", "launch", str(setup.campaign_id), "--pool", pool],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    assert process.stderr is not None and process.stdout is not None
    error = process.stderr.read().decode(errors="replace").strip()
    process.stdout.close()
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"campaign launch: exit {process.returncode}: {error}")
    return wall, usage.ru_utime + usage.ru_stime


def exactly_once(state_dir: Path, campaign_id: int, recipients: int, pool: str) -> dict[str, bool]:
    """From the database after serve stopped (see the module docstring)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(state_dir / "postroom.db")) as db:
        states = dict(
            db.execute(
                "SELECT state, COUNT(*) FROM campaign_recipients WHERE campaign_id = ? "
                "GROUP BY state",
                (campaign_id,),
            ).fetchall()
        )
        distinct_ids, deliveries, delivered, from_pool, distinct_rcpts = db.execute(
            "SELECT COUNT(DISTINCT r.message_id), COUNT(d.id), "
            "SUM(d.state = 'delivered'), SUM(d.source = ?), COUNT(DISTINCT d.recipient) "
            "FROM campaign_recipients r LEFT JOIN deliveries d ON d.message_id = r.message_id "
            "WHERE r.campaign_id = ? AND r.state = 'queued'",
            (f"{pool}-source", campaign_id),
        ).fetchone()
    return {
        "db_every_recipient_queued": states == {"queued": recipients},
        "db_one_queue_id_each": distinct_ids == recipients,
        "db_one_delivery_each": deliveries == recipients and distinct_rcpts == recipients,
        "db_all_delivered": delivered == recipients,
        "db_all_from_pool_source": from_pool == recipients,
    }


def run_postroom_campaign(
    args: argparse.Namespace, run: int, nameserver: str, log: Any
) -> CampaignRun:
    from tests.peers.postroom import free_tcp_port
    from tests.peers.sinks import SmtpSink

    result = CampaignRun(run, args.contacts)
    directory = Path(tempfile.mkdtemp(prefix="postroom-campaign-bench-", dir=args.workdir))
    directory.chmod(0o755)
    sampled = len(range(0, args.contacts, args.sample_every))
    try:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(
                SmtpSink(SINK_IP, 0, hostname="mx.bench.test", record=False, extra_args=["-c"])
            )
            sample_sink = stack.enter_context(
                SmtpSink(SAMPLE_SINK_IP, sink.port, hostname="mx.sample.bench.test",
                         record=True, extra_args=["-c"])
            )  # fmt: skip
            assert sink.base_dir is not None and sample_sink.base_dir is not None
            counters = [
                SinkCounter(sink.base_dir / "smtp-sink.log"),
                SinkCounter(sample_sink.base_dir / "smtp-sink.log"),
            ]
            port = free_tcp_port("127.0.0.1")
            config = postroom_config(
                directory / "state", port, nameserver, sink.port, egress_config(), args.workers
            )
            server = ProfiledPostroom(directory, config, port, args.profile, args.profile_clock)
            setup = Setup(server, directory, args)
            setup.run()
            result.setup_s = setup.timings
            result.message_bytes = len(setup.preview)
            preview_checks = check_message(
                setup.preview.replace(b"\r\n", b"\n"), contact_address(0, args.sample_every)
            )
            result.checks |= {f"preview_{name}": ok for name, ok in preview_checks.items()}
            log(
                f"run {run} postroom: setup done ({json.dumps(setup.timings)}), campaign "
                f"{setup.campaign_id}, preview {result.message_bytes} bytes"
            )
            meter = open_meter(args.cpu)
            stack.callback(meter.close)
            with meter.spawning():
                stack.enter_context(server)
            assert server.process is not None
            root = server.process.pid
            meter.watch(root)
            result.cpu_source = meter.source
            if not args.dry_run:
                measure_launch(args, result, setup, server, meter, counters, root)
            peaks = hwm_kib(root)
            result.rss_hwm_sum_mb = round(sum(peaks) / 1024, 1)
            result.rss_hwm_by_process_mb = [round(peak / 1024, 1) for peak in peaks]
            result.cgroup_memory_peak_mb = cgroup_memory_peak_mb(meter)
            status = server.stop()
            result.checks["serve_exit_0_on_sigterm"] = status == 0
            if not args.dry_run:
                result.sample_count = len(sample_sink.messages())
                result.checks |= check_sample(sample_sink.messages(), sampled, SOURCES[args.pool])
                result.checks |= exactly_once(
                    directory / "state", setup.campaign_id, result.recipients, args.pool
                )
            if not all(result.checks.values()):
                result.log_tail = server.log()[-3000:]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result.ok = all(result.checks.values())
    return result


def measure_launch(
    args: argparse.Namespace,
    result: CampaignRun,
    setup: Setup,
    server: ProfiledPostroom,
    meter: Any,
    counters: list[SinkCounter],
    root: int,
) -> None:
    """From `campaign launch` until the sinks counted every recipient (see the docstring)."""
    meter.wait_for_strays(SETTLE_MAX_S)
    tree_start = sample_tree(root)
    cpu_start = meter.total()
    with RssSampler(root) as rss:
        start = time.monotonic()
        result.launch_s, result.launch_cpu_s = launch(setup, args.pool)
        launched = campaign_status(setup)
        result.recipients = launched["audience"] - sum(launched["skipped"].values())
        deadline = start + args.timeout
        with StatusPoller(setup, start, result.recipients) as poller:
            while (counted := sum(counter.count() for counter in counters)) < result.recipients:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postroom: sinks have {counted} of {result.recipients} after "
                        f"{args.timeout} s"
                    )
                time.sleep(POLL_S)
            delivered_at = time.monotonic()
            cpu_delivered = meter.total()
        cpu_total = settle(meter, SETTLE_MAX_S)
    result.launch_s, result.launch_cpu_s = round(result.launch_s, 3), round(result.launch_cpu_s, 3)
    result.produced_s = poller.produced_s
    result.status_polls = poller.polls
    result.delivered_s = round(delivered_at - start, 3)
    result.delivered_per_s = round(result.recipients / result.delivered_s, 1)
    result.server_cpu_delivered_s = round(cpu_delivered - cpu_start, 3)
    result.server_cpu_total_s = round(cpu_total - cpu_start, 3)
    result.server_cpu_ms_per_msg = round(1000 * result.server_cpu_total_s / result.recipients, 3)
    result.server_cpu_by_process = cpu_by_name(tree_start, sample_tree(root))
    result.rss_peak_sampled_mb = round(rss.peak_kib / 1024, 1)
    result.rss_samples = rss.samples
    result.sink_count = sum(counter.count() for counter in counters)
    result.status = campaign_status(setup)
    if result.status.get("finished_at") and result.status.get("launched_at"):
        result.production_s = round(result.status["finished_at"] - result.status["launched_at"], 3)
    result.checks |= {
        "sinks_count_equals_recipients": result.sink_count == result.recipients,
        "nothing_skipped": result.recipients == args.contacts,
        "status_all_queued": result.status["queued"] == result.recipients,
        "status_all_delivered": result.status["delivered"] == result.recipients,
    }


# -- the Postfix half -----------------------------------------------------------------


def run_postfix_relay(args: argparse.Namespace, run: int, message_bytes: int) -> RunResult:
    """relay.py's run_postfix: N messages of `message_bytes` from smtp-source, reused
    connections."""
    relay_args = argparse.Namespace(
        messages=args.contacts,
        clients=args.clients,
        size=max(MIN_PAYLOAD_BYTES, message_bytes - SMTP_SOURCE_HEADER_BYTES),
        new_connections=False,
        loadgen="smtp-source",
        cpu=args.cpu,
        timeout=args.timeout,
    )
    return run_postfix(relay_args, run)


# -- orchestration and output --------------------------------------------------------


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def summarise(campaigns: list[CampaignRun], postfix: list[RunResult]) -> dict[str, Any]:
    launched = [run for run in campaigns if run.delivered_s]
    summary: dict[str, Any] = {
        "postroom": {
            name: median([getattr(run, name) for run in launched])
            for name in (
                "delivered_per_s", "server_cpu_ms_per_msg", "rss_hwm_sum_mb",
                "rss_peak_sampled_mb", "launch_s",
            )
        } | {"runs": len(launched)},
        "postfix": {
            name: median([getattr(run, name) for run in postfix])
            for name in ("delivered_per_s", "server_cpu_ms_per_msg")
        } | {"runs": len(postfix)},
    }  # fmt: skip
    goals: dict[str, Any] = {}
    if launched and postfix and summary["postfix"]["delivered_per_s"]:
        ratio = summary["postroom"]["delivered_per_s"] / summary["postfix"]["delivered_per_s"]
        goals["ratio"] = round(ratio, 3)
        goals["ratio_met"] = ratio >= GOAL_RATIO
    if launched:
        goals["rss_met"] = summary["postroom"]["rss_hwm_sum_mb"] < GOAL_RSS_MB
    summary["goals"] = goals
    return summary


def print_campaign_run(result: CampaignRun) -> None:
    flag = (
        "ok"
        if result.ok
        else "FAILED " + json.dumps({name: ok for name, ok in result.checks.items() if not ok})
    )
    if not result.delivered_s:
        print(f"run {result.run} postroom  dry run (no launch)  {flag}", flush=True)
    else:
        produced = "-" if result.production_s is None else f"{result.production_s:.2f} s"
        print(
            f"run {result.run} postroom  {result.recipients} recipients  delivered "
            f"{result.delivered_per_s:8.1f} msg/s ({result.delivered_s:.2f} s; all produced in "
            f"{produced}; launch command {result.launch_s:.2f} s, {result.launch_cpu_s:.2f} s "
            f"CPU)  server CPU {result.server_cpu_total_s:.2f} s "
            f"({result.server_cpu_ms_per_msg:.3f} ms/msg)  RSS peak {result.rss_hwm_sum_mb:.0f} "
            f"MB (sum of VmHWM {result.rss_hwm_by_process_mb}; sampled sum "
            f"{result.rss_peak_sampled_mb:.0f} MB, "
            f"{result.rss_samples} samples; cgroup memory.peak "
            f"{result.cgroup_memory_peak_mb if result.cgroup_memory_peak_mb is not None else '-'})"
            f"  {flag}",
            flush=True,
        )
        print(f"      CPU by process: {json.dumps(result.server_cpu_by_process)}", flush=True)
        print(f"      status: {json.dumps(result.status)}", flush=True)
    if result.log_tail:
        print(f"      server log (tail):\n{result.log_tail}", flush=True)


def print_postfix_run(result: RunResult) -> None:
    flag = "ok" if result.ok else "FAILED " + json.dumps(result.checks)
    print(
        f"run {result.run} postfix   {result.messages} messages  delivered "
        f"{result.delivered_per_s:8.1f} msg/s ({result.delivered_s:.2f} s)  server CPU "
        f"{result.server_cpu_total_s:.2f} s ({result.server_cpu_ms_per_msg:.3f} ms/msg)  "
        f"smtp-source CPU {result.loadgen_cpu_s:.2f} s  {flag}",
        flush=True,
    )


def print_summary(summary: dict[str, Any], args: argparse.Namespace) -> None:
    postroom, postfix, goals = summary["postroom"], summary["postfix"], summary["goals"]
    print()
    print("| server | delivered msg/s | server CPU ms/msg | peak RSS | runs |")
    print("|---|---|---|---|---|")
    if postroom["runs"]:
        print(
            f"| postroom (campaign: render, sign RSA-2048, {args.pool}) | "
            f"{postroom['delivered_per_s']:,.0f} | {postroom['server_cpu_ms_per_msg']:.3f} | "
            f"{postroom['rss_hwm_sum_mb']:.0f} MB | {postroom['runs']} |"
        )
    if postfix["runs"]:
        print(
            f"| Postfix (relay, unsigned, smtp-source x{args.clients}) | "
            f"{postfix['delivered_per_s']:,.0f} | {postfix['server_cpu_ms_per_msg']:.3f} | - | "
            f"{postfix['runs']} |"
        )
    if "ratio" in goals:
        verdict = "met" if goals["ratio_met"] else "NOT met"
        print(f"goal postroom >= {GOAL_RATIO}x Postfix: {goals['ratio']:.2f}x, {verdict}")
    if "rss_met" in goals:
        verdict = "met" if goals["rss_met"] else "NOT met"
        print(
            f"goal peak RSS < {GOAL_RSS_MB:.0f} MB: {postroom['rss_hwm_sum_mb']:.0f} MB, {verdict}"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/campaign.py",
        description="A campaign through postroom serve vs Postfix relaying, into smtp-sink.",
    )
    parser.add_argument("--contacts", type=int, default=100_000, help="audience size")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (medians when more)")
    parser.add_argument("--pool", default="mailings", choices=sorted(SOURCES))
    parser.add_argument("--sample-every", type=int, default=1000, help="1 in N checked")
    parser.add_argument("--clients", type=int, default=20, help="smtp-source sessions")
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_MESSAGE_BYTES,
        help="Postfix's message bytes when no postroom run came first (else the preview's)",
    )
    parser.add_argument("--workers", type=int, help="postroom's [server] workers")
    parser.add_argument("--only", choices=("postroom", "postfix"), help="one server only")
    parser.add_argument("--dry-run", action="store_true", help="everything but the launch")
    parser.add_argument("--cpu", choices=("auto", "cgroup", "proc"), default="auto")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound per run, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="state parent")
    parser.add_argument("--profile", metavar="FILE", help="one profiled postroom run → pstats")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--profile-top", type=int, default=30, help="functions printed")
    args = parser.parse_args(argv)
    if args.contacts < 1 or args.repeat < 1 or args.sample_every < 1 or args.clients < 1:
        parser.error("--contacts, --repeat, --sample-every and --clients must be >= 1")
    if args.profile:
        args.only, args.repeat = "postroom", 1
        args.profile = str(Path(args.profile).resolve())
        if args.workers is None:
            args.workers = 1  # serve's workers are not profiled: one process does it all
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from tests.peers.dns import NsdServer, make_zone

    if os.geteuid() != 0:
        print("bench/campaign.py: run as root (private Postfix, smtp-sink)", file=sys.stderr)
        return 2
    log = (lambda *_: None) if args.json else (lambda text: print(text, flush=True))
    zone = make_zone(
        DOMAIN,
        [
            "@ IN MX 10 mx.bench.test.",
            f"mx IN A {SINK_IP}",
            "sample IN MX 10 mx.sample.bench.test.",
            f"mx.sample IN A {SAMPLE_SINK_IP}",
        ],
    )
    log(
        f"campaign bench: {args.contacts} contacts (1 in {args.sample_every} checked at "
        f"{SAMPLE_DOMAIN}), pool {args.pool} ({SOURCES[args.pool]}), repeat {args.repeat}, "
        f"{os.cpu_count()} CPUs, postroom workers {args.workers or 'default'}"
        + (", DRY RUN (no launch)" if args.dry_run else "")
    )
    campaigns: list[CampaignRun] = []
    postfix: list[RunResult] = []
    message_bytes = 0
    try:
        with NsdServer({DOMAIN: zone}) as nsd:
            for run in range(1, args.repeat + 1):
                servers = [args.only] if args.only else ["postroom", "postfix"]
                # Postfix's message size is the preview's: postroom goes first once.
                order = servers if run % 2 or not message_bytes else servers[::-1]
                for server in order:
                    if server == "postroom":
                        result = run_postroom_campaign(args, run, nsd.nameserver(), log)
                        message_bytes = result.message_bytes
                        campaigns.append(result)
                        if not args.json:
                            print_campaign_run(result)
                    else:
                        relayed = run_postfix_relay(args, run, message_bytes or args.size)
                        postfix.append(relayed)
                        if not args.json:
                            print_postfix_run(relayed)
    except (RuntimeError, OSError) as failure:  # a peer or the setup failed, a timeout
        print(f"bench/campaign.py: {failure}", file=sys.stderr)
        return 2
    summary = summarise(campaigns, postfix)
    if args.json:
        parameters = {
            key: value
            for key, value in vars(args).items()
            if key not in ("json", "workdir", "profile_top")
        }
        document = {
            "parameters": parameters | {"cpus": os.cpu_count(), "sources": SOURCES},
            "postroom_runs": [asdict(run) for run in campaigns],
            "postfix_runs": [asdict(run) for run in postfix],
            **summary,
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        print_summary(summary, args)
        if args.profile:
            print_profile(args.profile, args.profile_top)
    runs_ok = [run.ok for run in campaigns] + [run.ok for run in postfix]
    return 0 if all(runs_ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
