"""One node of `postroom serve`: every listener and worker in one asyncio loop.

With `[server] workers = 1` this is the whole server; with more, the supervisor
(workers/supervisor.py) runs one node per worker process on the sockets it bound,
each with its share of the limits (workers/shares.py), and speaks to systemd itself.
Start: bind the listeners (or take the supervisor's), apply migrations, open the
queue, return this node's old leases, start the feedback worker (bounces,
complaints, replies: its own threads), serve the listeners, start the delivery
engine (which asks `campaign.stopped` before it sends a campaign's job: paused or
cancelled campaigns, re-read once a second) and the campaign producer, then tell
systemd READY (a worker tells its supervisor).
SIGTERM: stop accepting (listeners close), let the router's shielded work
(messages being queued, reservations being given back) finish within `[server]
drain_timeout`, let the campaign producer finish its batch, then the feedback
jobs (sessions waiting for a report's verdict) and the deliveries in progress
within another, side by side; flush outcomes, stop.
SIGHUP: re-read the config; pools, rules and lane limits take effect for new
work, listener and database changes need a restart (the log says so).
Config keys: all sections (this is where they meet).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from postroom.campaign.producer import CampaignProducer
from postroom.campaign.stopped import StoppedCampaigns
from postroom.campaign.unsubscribe import UNSUBSCRIBE_KEY_INFO, UnsubscribeTokens
from postroom.config import Config, ConfigError, load_config
from postroom.core import sdnotify
from postroom.core.dns import Resolver
from postroom.core.errors import StartupError
from postroom.core.refresh import keep_fresh
from postroom.core.secretbox import SecretBox, SecretKeyError
from postroom.db.engine import make_engine
from postroom.db.migrate import ensure_current
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.directory import Directory
from postroom.mailbox.keyring import Keyring, refresh_periodically
from postroom.mailbox.local import LocalMail
from postroom.mailbox.smtp_access import SmtpAccess
from postroom.mailbox.usage import ProjectUsage
from postroom.mta.bounce.classify import Classifier, PatternError
from postroom.mta.bounce.inbox import BounceInbox, BounceIntake
from postroom.mta.bounce.outbound import BounceFactory
from postroom.mta.bounce.verp import VERP_KEY_INFO, Verp
from postroom.mta.bounce.worker import FeedbackWorker
from postroom.mta.delivery.engine import DeliveryEngine
from postroom.mta.inbound.handler import InboundHandler
from postroom.mta.inbound.listeners import start_inbound, start_submission
from postroom.mta.inbound.sockets import Listening, bind_listeners
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.queue.store import QueueStore, RetryPolicy
from postroom.mta.router import Router
from postroom.mta.signing.keys import SigningKeys
from postroom.mta.signing.outbound import OutboundSigner
from postroom.rating.contacts import Contacts
from postroom.rating.observer import RatingObserver
from postroom.rating.rules import Rules
from postroom.rating.suppression import Suppression
from postroom.workers.role import READY, RELOADED, WorkerRole
from postroom.workers.shares import worker_name_prefix

log = logging.getLogger("postroom")


def build_store(
    config: Config, pools: PoolTable, engine: Engine, observer: RatingObserver | None = None
) -> QueueStore:
    return QueueStore(
        engine,
        node_name=config.node_name,
        lease_s=config.delivery.lease,
        retry=RetryPolicy(
            min_backoff_s=config.delivery.min_backoff,
            max_backoff_s=config.delivery.max_backoff,
            max_queue_lifetime_s=config.delivery.max_queue_lifetime,
        ),
        batch_max=config.database.commit_batch_max,
        bounce_builder=BounceFactory(config.server.hostname, pools.default_pool),
        observer=observer,
    )


@dataclass(frozen=True, slots=True)
class RatingParts:
    """The rating engine's pieces that the queue, the router and port 25 share."""

    contacts: Contacts
    observer: RatingObserver
    verp: Verp
    intake: BounceIntake
    suppression: Suppression
    feedback: FeedbackWorker


def build_rating(config: Config, engine: Engine) -> RatingParts:
    try:
        classifier = Classifier.load([Path(path) for path in config.bounce.patterns])
    except PatternError as error:
        raise StartupError(f"bounce patterns: {error}") from None
    try:
        secret = SecretBox.load(Path(config.secret_key_file), create=True)
    except SecretKeyError as error:
        raise StartupError(str(error)) from None
    contacts = Contacts(engine, Rules(config.rating))
    verp = Verp(secret.derive(VERP_KEY_INFO), config.bounce_domain)
    feedback = FeedbackWorker(
        config.bounce.worker_threads, config.bounce.worker_backlog, config.bounce.time_limit
    )
    return RatingParts(
        contacts=contacts,
        observer=RatingObserver(
            contacts,
            classifier.classify,
            log_blocked_sends=config.rating.blocked_transactional == "send",
        ),
        verp=verp,
        intake=BounceIntake(
            BounceInbox(engine, contacts, verp, classifier),
            config.bounce.feedback_local_part,
            feedback,
            UnsubscribeTokens(secret.derive(UNSUBSCRIBE_KEY_INFO)),
        ),
        suppression=Suppression(contacts, config.rating.blocked_transactional),
        feedback=feedback,
    )


async def serve(config_path: str, worker: WorkerRole | None = None) -> int:
    """The whole server in this process, or (`worker`) worker I of N on the sockets
    the supervisor bound (workers/supervisor.py)."""
    loaded = load_config(config_path)
    config = worker.configure(loaded) if worker is not None else loaded
    listening = worker.listening if worker is not None else bind_listeners(config)[0]
    try:
        return await _node(config_path, loaded, config, listening, worker)
    finally:
        listening.close()  # those no server took (a failed start); the others are closed


async def _node(
    config_path: str,
    loaded: Config,
    config: Config,
    listening: Listening,
    worker: WorkerRole | None,
) -> int:
    pools = PoolTable(config)
    engine = make_engine(config.database_url)
    ensure_current(engine)  # Alembic runs (and logs each step) only when behind
    rating = build_rating(config, engine)
    store = build_store(config, pools, engine, rating.observer)
    store.start()
    # Before anything is accepted: fresh deliveries are leased to this node too.
    # A single process also takes back what its workers held when it last ran as several.
    released = await store.release_own_leases(
        worker_name_prefix(config.node_name) if worker is None else None
    )
    if released:
        log.info("returned %d deliveries this node held before it stopped", released)
    stopped = StoppedCampaigns(engine, store, config.delivery.max_queue_lifetime)
    stopped.refresh()  # before the engine's first claim
    delivery = DeliveryEngine(
        store,
        Resolver.from_config(config.dns),
        pools,
        config.delivery,
        verp=rating.verp,
        verp_origins=frozenset(config.bounce.verp),
        withholder=stopped,
    )
    local = LocalMail(Accounts(engine, Path(config.mail_root)), config.server.hostname)
    local.load_domains()
    signing_keys = SigningKeys(Directory(engine), Path(config.secret_key_file))
    signing_keys.load()
    signer = OutboundSigner(signing_keys, config.dkim.sign_presigned)
    router = Router(store, delivery, local, rating.contacts, signer, rating.feedback)
    servers: list[asyncio.Server] = []
    try:
        handler, servers = await start_inbound(
            config,
            router,
            pools,
            delivery.resolver,
            rating.intake,
            rating.suppression,
            listening,
            worker.connection_limits(config) if worker is not None else None,
        )
        # Submission is one worker's (shares.py): its session limits are not split.
        submission, submission_servers = await start_submission(
            loaded,
            router,
            pools,
            rating.suppression,
            SmtpAccess(engine),
            ProjectUsage(engine),
            listening,
        )
    except StartupError:
        for server in servers:  # port 25 is bound when submission cannot start
            server.close()
        await store.close()
        raise
    servers += submission_servers
    handlers = [h for h in (handler, submission) if h is not None]
    delivery_task = asyncio.create_task(delivery.run(), name="delivery")
    # Every node produces campaigns; claims keep two nodes off the same recipients.
    producer = CampaignProducer(engine, config, store, delivery, signer)
    producer.start(worker_name_prefix(config.node_name) if worker is None else None)
    keyring = Keyring(
        Directory(engine), config.dkim, Path(config.secret_key_file), Path(config.state.dir)
    )
    background = [
        asyncio.create_task(
            keep_fresh(local.load_domains, "the verified domains"), name="local-domains"
        ),
        asyncio.create_task(keep_fresh(signing_keys.load, "the DKIM keys"), name="dkim-keys"),
        asyncio.create_task(
            keep_fresh(stopped.refresh, "the paused and cancelled campaigns", stopped.refresh_s),
            name="stopped-campaigns",
        ),
    ]
    if worker is None or worker.index == 0:  # key rotation is the node's, done once
        background.append(
            asyncio.create_task(refresh_periodically(keyring, delivery.resolver), name="dkim")
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(config_path, delivery, handlers, worker))
    log.info("postroom ready node=%s", config.node_name)
    if worker is None:
        sdnotify.ready(f"queue open, {len(servers)} listener(s)")
    else:
        worker.report(READY)  # the supervisor tells systemd once every worker has
    await stop.wait()
    if worker is None:
        sdnotify.stopping()
    log.info("stopping: closing listeners, draining for up to %.0fs", config.server.drain_timeout)
    for server in servers:
        server.close()
    for task in background:
        task.cancel()
    # Messages being queued for sessions whose clients hung up, reservations being
    # given back: let them finish while the queue is still open.
    unfinished = await router.shielded.wait(config.server.drain_timeout)
    if unfinished:
        log.warning("drain timeout: %d accepted messages or reservations unsettled", unfinished)
    # The batch in hand ends queued (its jobs reach the engine before it drains) or released.
    await producer.stop(config.server.drain_timeout)
    delivery.drain()
    # One drain_timeout for both: feedback jobs (sessions waiting for a bounce's
    # verdict get it; nothing new is admitted) and the deliveries, side by side.
    drain_until = loop.time() + config.server.drain_timeout
    await rating.feedback.drain(config.server.drain_timeout)
    try:
        await asyncio.wait_for(delivery_task, max(0.0, drain_until - loop.time()))
    except TimeoutError:
        log.warning("drain timeout: unfinished deliveries return to the queue at next start")
    for inbound in handlers:
        if inbound.checks is not None:
            inbound.checks.close()
    await store.close()
    log.info("stopped")
    return 0


def _reload(
    config_path: str,
    delivery: DeliveryEngine,
    handlers: list[InboundHandler],
    worker: WorkerRole | None,
) -> None:
    if worker is None:
        sdnotify.reloading()
    try:
        config = load_config(config_path)
    except ConfigError as error:
        log.error("reload refused, keeping the running config: %s", error)
    else:
        if worker is not None:
            config = worker.configure(config)
        pools = PoolTable(config)
        delivery.reconfigure(pools, config.delivery)
        for handler in handlers:
            handler.pools = pools
        delivery.config = config.delivery
        log.info(
            "reloaded pools, rules and lane limits; listener and database changes need a restart"
        )
    if worker is None:
        sdnotify.ready("reloaded")
    else:
        worker.report(RELOADED)
