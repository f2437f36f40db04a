"""The config schema: typed, documented, strict, frozen.

Every field has a default and a docstring-like comment; sections follow the
flow of a message (server, state, database, smtp.inbound, smtp.submission, tls,
dns, checks, dkim, delivery, egress, pool, bounce, rating, addresses, campaign,
http, mailbox, logging; the tenant sections live in `tenancy.py`). `validate(path)` methods
check what a single type cannot (addresses, references between sections) and
raise `ConfigError` naming the key path. The TOML keys are part of the public
contract in ARCHITECTURE.md: extend, never rename.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field

from postroom.config.loader import ConfigError, Duration, Size
from postroom.config.tenancy import (
    AddressesConfig,
    BounceConfig,
    CampaignConfig,
    DkimConfig,
    MailboxConfig,
    RatingConfig,
)


def parse_listen(value: str, path: str) -> tuple[str, int]:
    """ "ADDR:PORT" or "[V6ADDR]:PORT" → (addr, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(path, f"expected ADDR:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # "::1:25" is itself an IPv6 address: the port must follow brackets
        raise ConfigError(path, f"write IPv6 as [ADDR]:PORT, got {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(path, f"not an IP address: {host!r}") from None
    return host, int(port_text)


def _check_listen(values: tuple[str, ...], path: str) -> None:
    for index, value in enumerate(values):
        parse_listen(value, f"{path}[{index}]")


# Each worker holds its own database connections, caches and DKIM keys: past a few
# dozen processes they cost more than the cores they would use.
MAX_WORKERS = 64


@dataclass(frozen=True, slots=True)
class ServerConfig:
    hostname: str = field(default_factory=socket.getfqdn)
    """Our name: greeting, Received headers, EHLO default, DSN Reporting-MTA."""
    node_name: str = ""
    """This node's name when several share one database; defaults to `hostname`.
    Leases are owned by node name, so a restarted node takes its own work back at once."""
    drain_timeout: Duration = Duration(30)
    """How long SIGTERM waits for sessions and deliveries in progress."""
    workers: int = 0
    """Worker processes of `serve`, each a node with its own event loop on the same
    listeners and queue; 0 = one per CPU core this process may run on, 1 = one process."""
    pin_workers: bool = True
    """With at least as many CPUs as workers, each worker runs on a CPU of its own: its
    threads then hand the GIL to each other on one core (measured: 14-22 % more mail a
    second); false lets the kernel move them, e.g. on a host busy with other services."""

    def validate(self, path: str) -> None:
        if not self.hostname or any(c.isspace() for c in self.hostname):
            raise ConfigError(f"{path}.hostname", "must be a host name without spaces")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"{path}.workers", f"must be 0 (one per core) to {MAX_WORKERS}")

    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@dataclass(frozen=True, slots=True)
class StateConfig:
    dir: str = "/var/lib/postroom"
    """Where the SQLite database, Maildirs and keys live unless configured elsewhere."""


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    key_file: str = ""
    """The appliance's secret (32 random bytes, mode 0600); empty = <state.dir>/secret.key.
    Created at first use. DKIM private keys in the database are encrypted with a key
    derived from it: every node sharing the database needs the same file."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str = ""
    """SQLAlchemy URL; empty means SQLite at <state.dir>/postroom.db (WAL)."""
    commit_batch_max: int = 256
    """Most queued messages committed together by one group commit."""


@dataclass(frozen=True, slots=True)
class InboundConfig:
    listen: tuple[str, ...] = ("0.0.0.0:25",)
    """Port 25 listeners, "ADDR:PORT"."""
    relay_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Clients (CIDR) allowed to relay without AUTH."""
    max_message_size: Size = Size(25 * 1024 * 1024)
    """Advertised in SIZE and enforced (552 5.3.4)."""
    max_recipients: int = 100
    """RCPT TO accepted per transaction; past it 452 4.5.3 (RFC 5321 4.5.3.1.8)."""
    max_hops: int = 50
    """More Received headers than this means a mail loop: 554 5.4.6 (RFC 5321 6.3)."""
    max_line_length: int = 1000
    """Longest DATA line including CRLF (RFC 5321 4.5.3.1.6)."""
    idle_timeout: Duration = Duration(300)
    """Idle time allowed between commands (RFC 5321 4.5.3.2.7 asks >= 5 minutes)."""
    data_timeout: Duration = Duration(600)
    """Longest time the whole DATA phase may take (slow-client guard)."""
    max_connections: int = 1000
    """Concurrent SMTP sessions over all listeners."""
    max_connections_per_ip: int = 50
    """Concurrent sessions from one client address; past it 421 4.7.0."""
    junk_command_limit: int = 100
    """HELO/EHLO/NOOP/RSET/VRFY/HELP a session may send before each one more counts as an
    error (Postfix's smtpd_junk_command_limit); reset when a message is accepted."""
    soft_error_limit: int = 10
    """Errors (4xx/5xx replies) of a session after which every reply waits error_sleep
    (Postfix's smtpd_soft_error_limit); reset when a message is accepted."""
    hard_error_limit: int = 20
    """Errors of a session at which it hears 421 4.7.0 and is disconnected
    (Postfix's smtpd_hard_error_limit)."""
    error_sleep: Duration = Duration(1)
    """The wait before each reply past soft_error_limit (Postfix's smtpd_error_sleep_time).
    These four apply to submission (587/465) sessions too."""

    def validate(self, path: str) -> None:
        _check_listen(self.listen, f"{path}.listen")
        for index, network in enumerate(self.relay_networks):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{path}.relay_networks[{index}]", f"not a CIDR: {network!r}"
                ) from None
        if self.max_recipients < 1:
            raise ConfigError(f"{path}.max_recipients", "must be at least 1")
        if self.max_hops < 1:
            raise ConfigError(f"{path}.max_hops", "must be at least 1")
        if self.max_line_length < 1000:
            raise ConfigError(f"{path}.max_line_length", "RFC 5321 requires at least 1000")
        for key in ("junk_command_limit", "soft_error_limit", "hard_error_limit"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}", "must be at least 1")


@dataclass(frozen=True, slots=True)
class SubmissionConfig:
    listen: tuple[str, ...] = ()
    """Port 587 listeners (STARTTLS, AUTH)."""
    tls_listen: tuple[str, ...] = ()
    """Port 465 listeners (implicit TLS, AUTH)."""
    pool: str = ""
    """Pool of submitted mail (e.g. "transactional"); empty = [delivery] rules and default.
    An app may still choose one with X-Postroom-Pool."""
    max_per_minute: int = 100
    """Messages one mailbox may submit per minute, counted per accepted recipient (each
    leaves as a message of its own); 0 = no limit; `smtp limits` overrides."""
    max_per_day: int = 10_000
    """Messages one mailbox may submit per day, counted per accepted recipient; 0 = no
    limit; `smtp limits` overrides."""
    auth_max_failures: int = 10
    """Failed AUTH attempts (per client network or account, whatever spelling of its
    address the username uses, within auth_lockout) before a lockout; answers slow down
    from the fourth."""
    auth_lockout: Duration = Duration(900)
    """How long a lockout lasts (and how long failures are remembered)."""

    def validate(self, path: str) -> None:
        _check_listen(self.listen, f"{path}.listen")
        _check_listen(self.tls_listen, f"{path}.tls_listen")
        for key in ("max_per_minute", "max_per_day"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}", "0 (no limit) or more")
        if self.auth_max_failures < 1:
            raise ConfigError(f"{path}.auth_max_failures", "at least 1")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    inbound: InboundConfig = field(default_factory=InboundConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str = ""
    """PEM certificate chain for STARTTLS and port 465."""
    key: str = ""
    """PEM private key."""

    def validate(self, path: str) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError(path, "cert and key go together: set both or neither")


@dataclass(frozen=True, slots=True)
class DnsConfig:
    nameservers: tuple[str, ...] = ()
    """When set, every DNS query of the process goes to these "ADDR:PORT"; else the system's."""
    timeout: Duration = Duration(5)
    """Per-query lifetime; a timeout is a temporary failure, never a permanent one."""
    cache_max_ttl: Duration = Duration(3600)
    """Longest time an answer is cached, whatever its TTL says."""
    spf: str = "include"
    """How linked domains' SPF names our egress: "include" (include:<spf_host>, which
    `postroom dns self` publishes) or "addresses" (ip4:/ip6: of every [[egress]])."""
    spf_host: str = ""
    """The SPF include host this appliance publishes; empty = _spf.<server.hostname>."""
    report_address: str = ""
    """Where DMARC aggregate and TLS-RPT reports go; empty = postmaster@<the domain>."""

    def validate(self, path: str) -> None:
        _check_listen(self.nameservers, f"{path}.nameservers")
        if self.spf not in ("include", "addresses"):
            raise ConfigError(f"{path}.spf", '"include" or "addresses"')
        if self.report_address and "@" not in self.report_address:
            raise ConfigError(f"{path}.report_address", "must be an address local@domain")


CHECK_ACTIONS = ("accept", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """Message authentication on port 25 (mail from outside the relay networks): what the
    SPF, DKIM, DMARC and ARC verdicts lead to. A check reports; this table decides."""

    enabled: bool = True
    """Run the checks and stamp Authentication-Results; false = store mail unchecked."""
    authserv_id: str = ""
    """The authserv-id our Authentication-Results carry (RFC 8601); empty = [server] hostname.
    Incoming Authentication-Results claiming it are removed."""
    dmarc_reject: str = "reject"
    """DMARC failure under p=reject (also several From fields): reject (550 5.7.1 at the
    end of DATA), quarantine (the mailbox's Junk folder) or accept."""
    dmarc_quarantine: str = "quarantine"
    """DMARC failure under p=quarantine: reject, quarantine or accept."""
    spf_fail: str = "quarantine"
    """SPF fail of a sender whose domain publishes no DMARC policy: reject (550 5.7.23),
    quarantine or accept (forwarded mail fails SPF; DMARC, when published, decides instead)."""
    temperror: str = "defer"
    """DNS trouble left the verdict open (DMARC record, or an SPF/DKIM result that could
    have passed): defer (451 4.7.x, the sender retries) or accept."""

    def validate(self, path: str) -> None:
        for key in ("dmarc_reject", "dmarc_quarantine", "spf_fail"):
            if getattr(self, key) not in CHECK_ACTIONS:
                raise ConfigError(f"{path}.{key}", "accept, quarantine or reject")
        if self.temperror not in ("defer", "accept"):
            raise ConfigError(f"{path}.temperror", "defer or accept")


@dataclass(frozen=True, slots=True)
class DestinationLimits:
    """Lane limits for one destination (a domain, or a suffix such as ".google.com"
    matched against the destination's MX host names)."""

    match: str = ""
    max_connections: int = 0
    """Concurrent connections per lane (source x site); 0 = the default."""
    max_messages_per_connection: int = 0
    max_per_minute: int = 0
    max_per_hour: int = 0


@dataclass(frozen=True, slots=True)
class PoolRule:
    """Chooses a pool for messages that do not name one. First matching rule wins."""

    pool: str = ""
    sender_domain: str = ""
    client_network: str = ""

    def validate(self, path: str) -> None:
        if not self.pool:
            raise ConfigError(f"{path}.pool", "a rule names the pool it chooses")
        if not self.sender_domain and not self.client_network:
            raise ConfigError(path, "a rule needs sender_domain or client_network")
        if self.client_network:
            try:
                ipaddress.ip_network(self.client_network, strict=False)
            except ValueError:
                raise ConfigError(f"{path}.client_network", "not a CIDR") from None


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    port: int = 25
    """Remote SMTP port (tests point it at a sink)."""
    default_pool: str = ""
    """Pool for messages no producer, header or rule assigned; empty = the first pool."""
    connect_timeout: Duration = Duration(30)
    command_timeout: Duration = Duration(300)
    starttls: str = "opportunistic"
    """opportunistic | disabled."""
    min_backoff: Duration = Duration(300)
    """First retry delay; doubles per attempt (Postfix minimal_backoff_time)."""
    max_backoff: Duration = Duration(4000)
    """Cap of the retry delay (Postfix maximal_backoff_time)."""
    max_queue_lifetime: Duration = Duration(5 * 86400)
    """Give up and bounce after this long (Postfix maximal_queue_lifetime)."""
    lease: Duration = Duration(600)
    """A claimed delivery returns to the queue when its lease expires (crashed node)."""
    history: Duration = Duration(30 * 86400)
    """How long finished messages stay listed (queue show) before their rows are purged."""
    max_connections: int = 20
    """Default concurrent connections per lane."""
    max_messages_per_connection: int = 100
    """Messages sent over one connection before it is closed."""
    max_per_minute: int = 0
    """Default lane rate; 0 = unlimited."""
    max_per_hour: int = 0
    max_recipients_per_transaction: int = 50
    """Recipients of one domain sent in one SMTP transaction; more go in further ones."""
    idle_connection_timeout: Duration = Duration(5)
    """How long an idle connection waits for the next message to the same site."""
    destination: tuple[DestinationLimits, ...] = ()
    rule: tuple[PoolRule, ...] = ()

    def validate(self, path: str) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{path}.port", "must be a TCP port")
        if self.starttls not in ("opportunistic", "disabled"):
            raise ConfigError(f"{path}.starttls", "must be opportunistic or disabled")
        if self.max_connections < 1:
            raise ConfigError(f"{path}.max_connections", "must be at least 1")
        if self.max_recipients_per_transaction < 1:
            raise ConfigError(f"{path}.max_recipients_per_transaction", "must be at least 1")
        for index, limits in enumerate(self.destination):
            if not limits.match:
                raise ConfigError(f"{path}.destination[{index}].match", "required")


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """One sending IP with its EHLO name."""

    name: str = ""
    address: str = ""
    helo: str = ""

    def validate(self, path: str) -> None:
        if not self.name:
            raise ConfigError(f"{path}.name", "required")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ConfigError(f"{path}.address", f"not an IP address: {self.address!r}") from None


@dataclass(frozen=True, slots=True)
class PoolSource:
    name: str = ""
    weight: int = 1

    def validate(self, path: str) -> None:
        if self.weight < 1:
            raise ConfigError(f"{path}.weight", "must be at least 1")


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """A named, weighted set of egress sources."""

    name: str = ""
    sources: tuple[str | PoolSource, ...] = ()
    """Source names, or {name, weight} tables."""

    def weighted_sources(self) -> tuple[PoolSource, ...]:
        return tuple(s if isinstance(s, PoolSource) else PoolSource(s) for s in self.sources)

    def validate(self, path: str) -> None:
        if not self.name:
            raise ConfigError(f"{path}.name", "required")
        if not self.sources:
            raise ConfigError(f"{path}.sources", "a pool needs at least one source")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: tuple[str, ...] = ()
    public_url: str = ""
    """Base of the links in mail (unsubscribe, ...): "https://HOST[/PATH]"; empty =
    https://<server.hostname>."""

    def validate(self, path: str) -> None:
        _check_listen(self.listen, f"{path}.listen")
        if self.public_url and not self.public_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"{path}.public_url", f"expected https://HOST, got {self.public_url!r}"
            )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"
    """text | json (one JSON object a line)."""

    def validate(self, path: str) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{path}.level", "debug, info, warning or error")
        if self.format not in ("text", "json"):
            raise ConfigError(f"{path}.format", "text or json")


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    egress: tuple[EgressConfig, ...] = ()
    pool: tuple[PoolConfig, ...] = ()
    bounce: BounceConfig = field(default_factory=BounceConfig)
    rating: RatingConfig = field(default_factory=RatingConfig)
    addresses: AddressesConfig = field(default_factory=AddressesConfig)
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def node_name(self) -> str:
        return self.server.node_name or self.server.hostname

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.state.dir}/postroom.db"

    @property
    def mail_root(self) -> str:
        return self.mailbox.root or f"{self.state.dir}/mail"

    @property
    def secret_key_file(self) -> str:
        return self.secrets.key_file or f"{self.state.dir}/secret.key"

    @property
    def dovecot_passwd_file(self) -> str:
        return self.mailbox.dovecot_passwd_file or f"{self.state.dir}/dovecot/passwd"

    @property
    def bounce_domain(self) -> str:
        return (self.bounce.domain or self.server.hostname).lower().rstrip(".")

    @property
    def public_url(self) -> str:
        return (self.http.public_url or f"https://{self.server.hostname}").rstrip("/")

    @property
    def transactional_pool(self) -> str:
        if self.campaign.transactional_pool:
            return self.campaign.transactional_pool
        if any(pool.name == "transactional" for pool in self.pool):
            return "transactional"
        return self.default_pool

    @property
    def campaign_pool(self) -> str:
        if self.campaign.pool:
            return self.campaign.pool
        if any(pool.name == "mailings" for pool in self.pool):
            return "mailings"
        return self.default_pool

    @property
    def authserv_id(self) -> str:
        return self.checks.authserv_id or self.server.hostname

    @property
    def spf_host(self) -> str:
        return self.dns.spf_host or f"_spf.{self.server.hostname}"

    @property
    def default_pool(self) -> str:
        return self.delivery.default_pool or (self.pool[0].name if self.pool else "")

    def validate(self, path: str) -> None:
        egress_names = set()
        for index, egress in enumerate(self.egress):
            if egress.name in egress_names:
                raise ConfigError(f"egress[{index}].name", f"duplicate source {egress.name!r}")
            egress_names.add(egress.name)
        pool_names = set()
        for index, pool in enumerate(self.pool):
            if pool.name in pool_names:
                raise ConfigError(f"pool[{index}].name", f"duplicate pool {pool.name!r}")
            pool_names.add(pool.name)
            for source_index, source in enumerate(pool.weighted_sources()):
                if source.name not in egress_names:
                    raise ConfigError(
                        f"pool[{index}].sources[{source_index}]",
                        f"no [[egress]] named {source.name!r}",
                    )
        submission_pool = self.smtp.submission.pool
        if submission_pool and submission_pool not in pool_names:
            raise ConfigError("smtp.submission.pool", f"no [[pool]] named {submission_pool!r}")
        campaign_pool = self.campaign.transactional_pool
        if campaign_pool and campaign_pool not in pool_names:
            raise ConfigError("campaign.transactional_pool", f"no [[pool]] named {campaign_pool!r}")
        if self.campaign.pool and self.campaign.pool not in pool_names:
            raise ConfigError("campaign.pool", f"no [[pool]] named {self.campaign.pool!r}")
        if self.delivery.default_pool and self.delivery.default_pool not in pool_names:
            raise ConfigError("delivery.default_pool", f"no [[pool]] named {self.default_pool!r}")
        for index, rule in enumerate(self.delivery.rule):
            if rule.pool not in pool_names:
                raise ConfigError(
                    f"delivery.rule[{index}].pool", f"no [[pool]] named {rule.pool!r}"
                )
