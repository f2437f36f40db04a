"""The `postroom serve` process: every listener and worker in one asyncio loop.

Start: apply migrations, open the queue, return this node's old leases, bind
the port 25 listeners, start the delivery engine, then tell systemd READY.
SIGTERM: stop accepting (listeners close), let sessions and deliveries in
progress finish within `[server] drain_timeout`, flush outcomes, stop.
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

from postroom.config import Config, ConfigError, load_config
from postroom.config.schema import parse_listen
from postroom.core import sdnotify
from postroom.core.dns import Resolver
from postroom.core.errors import StartupError
from postroom.core.refresh import keep_fresh
from postroom.core.secretbox import SecretBox, SecretKeyError
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.directory import Directory
from postroom.mailbox.keyring import Keyring, refresh_periodically
from postroom.mailbox.local import LocalMail
from postroom.mta.bounce.classify import Classifier, PatternError
from postroom.mta.bounce.inbox import BounceInbox, BounceIntake
from postroom.mta.bounce.outbound import BounceFactory
from postroom.mta.bounce.verp import VERP_KEY_INFO, Verp
from postroom.mta.checks.pipeline import InboundChecks
from postroom.mta.delivery.engine import DeliveryEngine
from postroom.mta.inbound.handler import InboundHandler, InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.inbound.session import ConnectionLimits, Session
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.queue.store import QueueStore, RetryPolicy
from postroom.mta.router import Router
from postroom.mta.signing.keys import SigningKeys
from postroom.mta.signing.outbound import OutboundSigner
from postroom.rating.contacts import Contacts
from postroom.rating.observer import RatingObserver
from postroom.rating.rules import Rules
from postroom.rating.suppression import Suppression

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
    return RatingParts(
        contacts=contacts,
        observer=RatingObserver(
            contacts,
            classifier.classify,
            log_blocked_sends=config.rating.blocked_transactional == "send",
        ),
        verp=verp,
        intake=BounceIntake(
            BounceInbox(engine, contacts, verp, classifier), config.bounce.feedback_local_part
        ),
        suppression=Suppression(contacts, config.rating.blocked_transactional),
    )


async def start_inbound(
    config: Config, router: Router, pools: PoolTable, rating: RatingParts, resolver: Resolver
) -> tuple[InboundHandler, list[asyncio.Server]]:
    inbound = config.smtp.inbound
    handler = InboundHandler(
        InboundPolicy(
            hostname=config.server.hostname,
            relay_networks=RelayNetworks(inbound.relay_networks),
            max_recipients=inbound.max_recipients,
            max_hops=inbound.max_hops,
            authserv_id=config.authserv_id,
        ),
        router,
        pools,
        router.local,
        bounces=rating.intake,
        suppression=rating.suppression,
        checks=InboundChecks(resolver, config.checks, config.authserv_id)
        if config.checks.enabled
        else None,
    )
    limits = ConnectionLimits(
        max_total=inbound.max_connections, max_per_ip=inbound.max_connections_per_ip
    )
    loop = asyncio.get_running_loop()

    def new_session() -> Session:
        return Session(
            handler,
            limits=limits,
            max_line_length=inbound.max_line_length,
            idle_timeout_s=inbound.idle_timeout,
            data_timeout_s=inbound.data_timeout,
            data_size_limit=inbound.max_message_size,
            hostname=config.server.hostname,
            ident="postroom",
            enable_SMTPUTF8=True,
            loop=loop,
        )

    servers = []
    for index, listen in enumerate(inbound.listen):
        host, port = parse_listen(listen, f"smtp.inbound.listen[{index}]")
        try:
            server = await loop.create_server(
                new_session, host, port, reuse_address=True, backlog=1024
            )
        except OSError as error:
            for started in servers:
                started.close()
            raise StartupError(
                f"cannot listen on {listen} (smtp.inbound.listen[{index}]): {error.strerror}"
            ) from None
        servers.append(server)
        log.info("listening for SMTP on %s", listen)
    return handler, servers


async def serve(config_path: str) -> int:
    config = load_config(config_path)
    pools = PoolTable(config)
    engine = make_engine(config.database_url)
    upgrade(engine)
    rating = build_rating(config, engine)
    store = build_store(config, pools, engine, rating.observer)
    store.start()
    # Before anything is accepted: fresh deliveries are leased to this node too.
    released = await store.release_own_leases()
    if released:
        log.info("returned %d deliveries this node held before it stopped", released)
    delivery = DeliveryEngine(
        store,
        Resolver.from_config(config.dns),
        pools,
        config.delivery,
        verp=rating.verp,
        verp_origins=frozenset(config.bounce.verp),
    )
    local = LocalMail(Accounts(engine, Path(config.mail_root)), config.server.hostname)
    local.load_domains()
    signing_keys = SigningKeys(Directory(engine), Path(config.secret_key_file))
    signing_keys.load()
    signer = OutboundSigner(signing_keys, config.dkim.sign_presigned)
    router = Router(store, delivery, local, rating.contacts, signer)
    try:
        handler, servers = await start_inbound(config, router, pools, rating, delivery.resolver)
    except StartupError:
        await store.close()
        raise
    delivery_task = asyncio.create_task(delivery.run(), name="delivery")
    keyring = Keyring(
        Directory(engine), config.dkim, Path(config.secret_key_file), Path(config.state.dir)
    )
    background = [
        asyncio.create_task(refresh_periodically(keyring, delivery.resolver), name="dkim"),
        asyncio.create_task(
            keep_fresh(local.load_domains, "the verified domains"), name="local-domains"
        ),
        asyncio.create_task(keep_fresh(signing_keys.load, "the DKIM keys"), name="dkim-keys"),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(config_path, delivery, handler))
    sdnotify.ready(f"queue open, {len(servers)} listener(s)")
    log.info("postroom ready node=%s", config.node_name)
    await stop.wait()
    sdnotify.stopping()
    log.info("stopping: closing listeners, draining for up to %.0fs", config.server.drain_timeout)
    for server in servers:
        server.close()
    for task in background:
        task.cancel()
    delivery.drain()
    try:
        await asyncio.wait_for(delivery_task, config.server.drain_timeout)
    except TimeoutError:
        log.warning("drain timeout: unfinished deliveries return to the queue at next start")
    await store.close()
    log.info("stopped")
    return 0


def _reload(config_path: str, delivery: DeliveryEngine, handler: InboundHandler) -> None:
    sdnotify.reloading()
    try:
        config = load_config(config_path)
    except ConfigError as error:
        log.error("reload refused, keeping the running config: %s", error)
    else:
        pools = PoolTable(config)
        delivery.reconfigure(pools, config.delivery)
        handler.pools = pools
        delivery.config = config.delivery
        log.info(
            "reloaded pools, rules and lane limits; listener and database changes need a restart"
        )
    sdnotify.ready("reloaded")
