"""The SMTP listeners of `serve`: port 25, and submission on 587 and 465.

`start_inbound` serves the `[smtp.inbound] listen` sockets (bound beforehand by
`sockets.bind_listeners`) with the port 25 `InboundHandler` (relay networks, local
mailboxes, the bounce inbox, authentication checks). `start_submission` serves the
`[smtp.submission] listen` sockets (STARTTLS required before anything but
EHLO/NOOP/QUIT, AUTH offered only after it) and the `tls_listen` ones (implicit
TLS: the handshake comes first) with one `SubmissionHandler`; the TLS context
(`[tls] cert`/`key`, TLS 1.2+) is loaded before any socket serves. Both share the
`[smtp.inbound]` session limits (line length, timeouts, size, connections per
client, junk commands and errors).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from postroom.config import Config
from postroom.core.dns import Resolver
from postroom.core.tls import server_context
from postroom.mailbox.passwords import dummy_hash
from postroom.mailbox.smtp_access import SmtpAccess
from postroom.mailbox.usage import ProjectUsage
from postroom.mta.bounce.inbox import BounceIntake
from postroom.mta.checks.pipeline import InboundChecks
from postroom.mta.inbound.handler import InboundHandler, InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.inbound.ratelimit import RateLimiter
from postroom.mta.inbound.session import ConnectionLimits, ErrorLimits, Session
from postroom.mta.inbound.shared_limits import SharedConnectionLimits
from postroom.mta.inbound.sockets import Listening
from postroom.mta.inbound.submission import SubmissionHandler
from postroom.mta.inbound.throttle import AuthThrottle, ThrottlePolicy
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.router import Router
from postroom.rating.suppression import Suppression

log = logging.getLogger("postroom")


def inbound_policy(config: Config) -> InboundPolicy:
    inbound = config.smtp.inbound
    return InboundPolicy(
        hostname=config.server.hostname,
        relay_networks=RelayNetworks(inbound.relay_networks),
        max_recipients=inbound.max_recipients,
        max_hops=inbound.max_hops,
        authserv_id=config.authserv_id,
    )


async def start_inbound(
    config: Config,
    router: Router,
    pools: PoolTable,
    resolver: Resolver,
    bounces: BounceIntake,
    suppression: Suppression,
    listening: Listening,
    limits: SharedConnectionLimits | None = None,
) -> tuple[InboundHandler, list[asyncio.Server]]:
    """`limits`: the node's session counts when this is one worker of several."""
    handler = InboundHandler(
        inbound_policy(config),
        router,
        pools,
        router.local,
        bounces=bounces,
        suppression=suppression,
        checks=InboundChecks(resolver, config.checks, config.authserv_id)
        if config.checks.enabled
        else None,
    )
    factory = _sessions(config, handler, limits)
    servers = await _serve_on(listening.inbound, listening, factory)
    return handler, servers


async def start_submission(
    config: Config,
    router: Router,
    pools: PoolTable,
    suppression: Suppression,
    access: SmtpAccess,
    usage: ProjectUsage,
    listening: Listening,
) -> tuple[SubmissionHandler | None, list[asyncio.Server]]:
    submission = config.smtp.submission
    if not listening.submission and not listening.submission_tls:
        return None, []
    context = server_context(config.tls.cert, config.tls.key)
    # Computed once, now: the first login of an unknown user would otherwise pay for it.
    await asyncio.to_thread(dummy_hash)
    handler = SubmissionHandler(
        inbound_policy(config),
        router,
        pools,
        router.local,
        suppression=suppression,
        access=access,
        usage=usage,
        throttle=AuthThrottle(
            ThrottlePolicy(
                max_failures=submission.auth_max_failures,
                window_s=float(submission.auth_lockout),
                lockout_s=float(submission.auth_lockout),
            )
        ),
        rates=RateLimiter(),
        default_limits=(submission.max_per_minute, submission.max_per_day),
        pool=submission.pool,
    )
    starttls = _sessions(
        config,
        handler,
        None,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
    )
    # On 465 the transport is TLS from the first byte (the session's implicit_tls).
    implicit = _sessions(config, handler, None, auth_required=True, implicit_tls=True)
    servers = await _serve_on(listening.submission, listening, starttls)
    servers += await _serve_on(listening.submission_tls, listening, implicit, tls=context)
    return handler, servers


def _sessions(
    config: Config,
    handler: InboundHandler,
    shared: SharedConnectionLimits | None,
    **options: object,
) -> Callable[[], Session]:
    inbound = config.smtp.inbound
    limits = shared or ConnectionLimits(
        max_total=inbound.max_connections, max_per_ip=inbound.max_connections_per_ip
    )
    errors = ErrorLimits(
        junk_commands=inbound.junk_command_limit,
        soft_errors=inbound.soft_error_limit,
        hard_errors=inbound.hard_error_limit,
        error_sleep_s=float(inbound.error_sleep),
    )
    loop = asyncio.get_running_loop()

    def new_session() -> Session:
        return Session(
            handler,
            limits=limits,
            max_line_length=inbound.max_line_length,
            idle_timeout_s=inbound.idle_timeout,
            data_timeout_s=inbound.data_timeout,
            error_limits=errors,
            data_size_limit=inbound.max_message_size,
            hostname=config.server.hostname,
            ident="postroom",
            enable_SMTPUTF8=True,
            loop=loop,
            **options,
        )

    return new_session


async def _serve_on(
    sockets: tuple[socket.socket, ...],
    listening: Listening,
    factory: Callable[[], Session],
    tls: ssl.SSLContext | None = None,
) -> list[asyncio.Server]:
    loop = asyncio.get_running_loop()
    servers = []
    for sock in sockets:
        servers.append(await loop.create_server(factory, sock=sock, ssl=tls))
        log.info("listening for SMTP on %s", listening.names.get(sock.fileno(), "?"))
    return servers
