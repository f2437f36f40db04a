"""The config loader and schema: strict keys, typed values, paths in every error,
and the reference config `config/postroom.toml` documenting every key."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from postroom.config import ConfigError, load_config, parse_config
from postroom.config.loader import Duration, Size, parse_duration, parse_size
from postroom.config.schema import (
    Config,
    DeliveryConfig,
    PoolRule,
    PoolSource,
    parse_listen,
)

REFERENCE_CONFIG = Path(__file__).resolve().parents[3] / "config" / "postroom.toml"

MINIMAL = '[server]\nhostname = "mx.example.test"\n'


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + text)
    return caught.value


# -- durations and sizes --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("5d", 432000.0),
        ("1w", 604800.0),
        ("1.5h", 5400.0),
        (" 10 m ", 600.0),
        (0, 0.0),
    ],
)
def test_durations_parse_with_units(raw: Any, seconds: float) -> None:
    parsed = parse_duration(raw, "delivery.lease")
    assert isinstance(parsed, Duration)
    assert parsed == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["5 minutes", "5M", "m", "", "-5m", "5x", True, [5], None, -1])
def test_bad_durations_are_refused_with_their_path(raw: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(raw, "delivery.lease")
    assert caught.value.path == "delivery.lease"


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        (1000, 1000),
        ("1000", 1000),
        ("100b", 100),
        ("25MB", 25_000_000),
        ("25mb", 25_000_000),
        ("25MiB", 25 * 1024 * 1024),
        ("512KiB", 512 * 1024),
        ("2kb", 2000),
        ("2k", 2048),
        ("1G", 1024**3),
        ("1GB", 1000**3),
        ("1.5KiB", 1536),
    ],
)
def test_sizes_parse_with_units(raw: Any, size: int) -> None:
    parsed = parse_size(raw, "smtp.inbound.max_message_size")
    assert isinstance(parsed, Size)
    assert parsed == size


@pytest.mark.parametrize("raw", ["25 megabytes", "MB", "-1", -1, 1.5, False, "25TB", ""])
def test_bad_sizes_are_refused_with_their_path(raw: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_size(raw, "smtp.inbound.max_message_size")
    assert caught.value.path == "smtp.inbound.max_message_size"


def test_durations_and_sizes_are_parsed_when_loading() -> None:
    config = parse_config(
        MINIMAL
        + '[delivery]\nmin_backoff = "2m"\nmax_queue_lifetime = "1d"\n'
        + '[smtp.inbound]\nmax_message_size = "10MiB"\n'
    )
    assert config.delivery.min_backoff == 120.0
    assert config.delivery.max_queue_lifetime == 86400.0
    assert config.smtp.inbound.max_message_size == 10 * 1024 * 1024


def test_a_bad_duration_in_a_file_names_its_key() -> None:
    error = error_for('[delivery]\nmax_backoff = "an hour"\n')
    assert error.path == "delivery.max_backoff"
    assert "delivery.max_backoff" in str(error)


# -- unknown keys, types, required keys -----------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('[smtp.inbound]\nlistn = ["127.0.0.1:25"]\n', "smtp.inbound.listn"),
        ("[serverr]\nx = 1\n", "serverr"),
        ('[[egress]]\nname = "a"\naddress = "192.0.2.1"\nhelo_name = "x"\n', "egress[0].helo_name"),
        (
            '[[delivery.destination]]\nmatch = "x.test"\nmax_conections = 1\n',
            "delivery.destination[0].max_conections",
        ),
        (
            '[delivery]\nrule = [{ pool = "p", sender_domain = "a.test", x = 1 }]\n',
            "delivery.rule[0].x",
        ),
    ],
)
def test_unknown_keys_are_errors_naming_the_full_path(text: str, path: str) -> None:
    error = error_for(text)
    assert error.path == path
    assert f"{path}: unknown key" in str(error)


def test_unknown_key_in_a_table_given_once_names_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[server]\nhostnam = "x"\n')
    assert caught.value.path == "server.hostnam"
    with pytest.raises(ConfigError) as caught:
        parse_config('listen = ["127.0.0.1:25"]\n')
    assert caught.value.path == "listen"


def test_unknown_key_error_lists_the_known_keys() -> None:
    error = error_for('[smtp.inbound]\nlistn = ["127.0.0.1:25"]\n')
    assert "listen" in error.message
    assert "relay_networks" in error.message


def test_unknown_key_in_a_pool_source_table_names_the_source() -> None:
    text = (
        '[[egress]]\nname = "a"\naddress = "192.0.2.1"\n'
        '[[pool]]\nname = "p"\nsources = ["a"]\n'
        '[[pool]]\nname = "q"\nsources = [{ name = "a", wieght = 2 }]\n'
    )
    error = error_for(text)
    assert error.path == "pool[1].sources[0].wieght"
    assert "unknown key" in error.message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('[smtp.inbound]\nmax_recipients = "100"\n', "smtp.inbound.max_recipients"),
        ("[smtp.inbound]\nmax_recipients = true\n", "smtp.inbound.max_recipients"),
        ("[smtp.inbound]\nmax_recipients = 1.5\n", "smtp.inbound.max_recipients"),
        ('[smtp.inbound]\nlisten = "0.0.0.0:25"\n', "smtp.inbound.listen"),
        ("[smtp.inbound]\nlisten = [25]\n", "smtp.inbound.listen[0]"),
        ("[server]\nnode_name = 5\n", "server.node_name"),
        ("[[pool]]\nname = 'p'\nsources = [5]\n", "pool[0].sources[0]"),
        ("[delivery]\nport = '25'\n", "delivery.port"),
    ],
)
def test_wrong_types_name_the_key(text: str, path: str) -> None:
    # [server] appears in MINIMAL, so it cannot be repeated: parse these alone.
    if text.startswith("[server]"):
        with pytest.raises(ConfigError) as caught:
            parse_config(text)
        error = caught.value
    else:
        error = error_for(text)
    assert error.path == path


@pytest.mark.parametrize(
    ("text", "path"),
    [("smtp = 5\n", "smtp"), ('egress = "a"\n', "egress"), ("egress = [1]\n", "egress[0]")],
)
def test_a_value_where_a_table_belongs_is_refused(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.path == path


def test_invalid_values_name_the_key() -> None:
    assert error_for("[delivery]\nport = 70000\n").path == "delivery.port"
    assert error_for("[delivery]\nstarttls = 'always'\n").path == "delivery.starttls"
    assert error_for("[smtp.inbound]\nmax_line_length = 998\n").path == (
        "smtp.inbound.max_line_length"
    )
    assert error_for("[smtp.inbound]\nrelay_networks = ['10.0.0.0/8', 'ten']\n").path == (
        "smtp.inbound.relay_networks[1]"
    )
    assert error_for("[smtp.inbound]\nhard_error_limit = 0\n").path == (
        "smtp.inbound.hard_error_limit"
    )
    assert error_for("[tls]\ncert = '/etc/cert.pem'\n").path == "tls"
    assert error_for("[logging]\nformat = 'xml'\n").path == "logging.format"
    assert error_for("[[egress]]\nname = 'a'\naddress = 'not-an-ip'\n").path == "egress[0].address"
    # Names that go into dovecot.conf and chown as they are.
    for key in ("dovecot_group", "dovecot_mail_user", "dovecot_mail_group"):
        assert error_for(f"[mailbox]\n{key} = 'vmail gid=0'\n").path == f"mailbox.{key}"


def test_bad_hostname_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[server]\nhostname = "mail example"\n')
    assert caught.value.path == "server.hostname"


@dataclasses.dataclass(frozen=True, slots=True)
class _Required:
    name: str
    port: int = 25


def test_missing_required_keys_are_named() -> None:
    from postroom.config.loader import build

    with pytest.raises(ConfigError) as caught:
        build(_Required, {"port": 26}, "thing")
    assert caught.value.path == "thing"
    assert "missing required key(s): name" in caught.value.message
    assert build(_Required, {"name": "x"}, "thing") == _Required("x", 25)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[[egress]]\naddress = '192.0.2.1'\n", "egress[0].name"),
        (
            "[[egress]]\nname = 'a'\naddress = '192.0.2.1'\n[[pool]]\nsources = ['a']\n",
            "pool[0].name",
        ),
        (
            "[[egress]]\nname = 'a'\naddress = '192.0.2.1'\n[[pool]]\nname = 'p'\n",
            "pool[0].sources",
        ),
        ("[[delivery.destination]]\nmax_connections = 3\n", "delivery.destination[0].match"),
        ("[[delivery.rule]]\nsender_domain = 'a.test'\n", "delivery.rule[0].pool"),
        ("[[delivery.rule]]\npool = 'p'\n", "delivery.rule[0]"),
        (
            "[[delivery.rule]]\npool = 'p'\nclient_network = '10.0.0.0/33'\n",
            "delivery.rule[0].client_network",
        ),
    ],
)
def test_keys_a_table_cannot_do_without(text: str, path: str) -> None:
    assert error_for(text).path == path


# -- cross references -------------------------------------------------------------

EGRESS = (
    "[[egress]]\nname = 'tx-1'\naddress = '192.0.2.10'\n"
    "[[egress]]\nname = 'bulk-1'\naddress = '192.0.2.11'\n"
)


def test_pool_sources_must_name_an_egress_source() -> None:
    error = error_for(
        EGRESS
        + "[[pool]]\nname = 'transactional'\nsources = ['tx-1']\n"
        + "[[pool]]\nname = 'mailings'\nsources = ['bulk-1', 'bulk-2']\n"
    )
    assert error.path == "pool[1].sources[1]"
    assert "bulk-2" in error.message


def test_weighted_pool_sources_are_checked_too() -> None:
    error = error_for(EGRESS + "[[pool]]\nname = 'p'\nsources = [{ name = 'nope', weight = 2 }]\n")
    assert error.path == "pool[0].sources[0]"
    error = error_for(EGRESS + "[[pool]]\nname = 'p'\nsources = [{ name = 'tx-1', weight = 0 }]\n")
    assert error.path == "pool[0].sources[0].weight"


def test_duplicate_names_are_refused() -> None:
    assert error_for(EGRESS + EGRESS).path == "egress[2].name"
    pools = "[[pool]]\nname = 'p'\nsources = ['tx-1']\n"
    assert error_for(EGRESS + pools + pools).path == "pool[1].name"


def test_default_pool_must_exist() -> None:
    error = error_for(
        EGRESS + "[delivery]\ndefault_pool = 'bulk'\n[[pool]]\nname = 'p'\nsources = ['tx-1']\n"
    )
    assert error.path == "delivery.default_pool"
    assert "bulk" in error.message


def test_rule_pool_must_exist() -> None:
    error = error_for(
        EGRESS
        + "[[pool]]\nname = 'p'\nsources = ['tx-1']\n"
        + "[[delivery.rule]]\npool = 'p'\nsender_domain = 'a.test'\n"
        + "[[delivery.rule]]\npool = 'q'\nsender_domain = 'b.test'\n"
    )
    assert error.path == "delivery.rule[1].pool"


def test_valid_cross_references_load() -> None:
    config = parse_config(
        MINIMAL
        + EGRESS
        + "[delivery]\ndefault_pool = 'mailings'\n"
        + "[[delivery.rule]]\npool = 'transactional'\nclient_network = '10.0.0.0/8'\n"
        + "[[pool]]\nname = 'transactional'\nsources = ['tx-1']\n"
        + "[[pool]]\nname = 'mailings'\nsources = [{ name = 'bulk-1', weight = 3 }, 'tx-1']\n"
    )
    assert config.default_pool == "mailings"
    assert config.pool[1].weighted_sources() == (PoolSource("bulk-1", 3), PoolSource("tx-1", 1))
    assert config.delivery.rule == (PoolRule("transactional", "", "10.0.0.0/8"),)


def test_default_pool_is_the_first_pool_when_unset() -> None:
    config = parse_config(
        MINIMAL + EGRESS + "[[pool]]\nname = 'a'\nsources = ['tx-1']\n"
        "[[pool]]\nname = 'b'\nsources = ['bulk-1']\n"
    )
    assert config.default_pool == "a"
    assert parse_config(MINIMAL).default_pool == ""


# -- listen addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("0.0.0.0:25", ("0.0.0.0", 25)),
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:25", ("::1", 25)),
        ("[::]:587", ("::", 587)),
        ("[2001:db8::1]:465", ("2001:db8::1", 465)),
        ("localhost:8025", ("localhost", 8025)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_addresses_parse(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(value, "http.listen[0]") == parsed


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        "127.0.0.1:",
        ":25",
        "127.0.0.1:port",
        "127.0.0.1:65536",
        "mail.test:25",
        "::1:25",
        "2001:db8::1:25",
        "[::1]",
        "[::1:25",
    ],
)
def test_bad_listen_addresses_are_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen(value, "http.listen[0]")
    assert caught.value.path == "http.listen[0]"


def test_bad_listen_address_in_a_file_names_its_index() -> None:
    error = error_for(
        '[smtp.submission]\nlisten = ["[::1]:587"]\ntls_listen = ["[::1]:465", "x:1"]\n'
    )
    assert error.path == "smtp.submission.tls_listen[1]"
    assert error_for('[dns]\nnameservers = ["127.0.0.1"]\n').path == "dns.nameservers[0]"
    assert error_for('[http]\nlisten = ["127.0.0.1:99999"]\n').path == "http.listen[0]"


def test_ipv6_listeners_load() -> None:
    config = parse_config(MINIMAL + '[smtp.inbound]\nlisten = ["[::1]:25", "127.0.0.1:25"]\n')
    assert config.smtp.inbound.listen == ("[::1]:25", "127.0.0.1:25")


# -- files -------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.source == str(missing)
    assert str(missing) in str(caught.value)
    assert "cannot read" in caught.value.message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nhostname = "unterminated\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "not valid TOML" in caught.value.message


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[server]\nhostname = "café.test"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "UTF-8" in caught.value.message


def test_key_errors_from_a_file_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "postroom.toml"
    path.write_text('[smtp.inbound]\nlistn = ["127.0.0.1:25"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == "smtp.inbound.listn"
    assert str(caught.value).startswith(f"{path}:2: smtp.inbound.listn: ")


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    config = load_config(path)
    assert config.delivery == DeliveryConfig()
    assert config.database_url == "sqlite:////var/lib/postroom/postroom.db"
    assert config.node_name == config.server.hostname


# -- the reference config ------------------------------------------------------------------


def test_reference_config_loads() -> None:
    config = load_config(REFERENCE_CONFIG)
    assert config.server.hostname
    assert [egress.name for egress in config.egress] == ["tx-1", "bulk-1"]
    assert [pool.name for pool in config.pool] == ["transactional", "mailings"]
    assert config.default_pool == "transactional"
    google = config.delivery.destination[0]
    assert (google.match, google.max_connections, google.max_per_minute) == (".google.com", 10, 600)
    assert config.delivery.rule


def _schema_class(hint: Any) -> type | None:
    """The schema dataclass a field holds (directly, in a tuple, or in a union)."""
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        found = _schema_class(arg)
        if found is not None:
            return found
    return None


def _tables(value: Any) -> list[dict[str, Any]]:
    """The TOML tables a key holds: one table, or the tables in an array."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _undocumented(cls: type, tables: list[dict[str, Any]], path: str) -> list[str]:
    """Fields of `cls` that appear in none of `tables` (recursively)."""
    missing = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = field.name
        present = [table[key] for table in tables if key in table]
        if not present:
            missing.append(f"{path}.{key}" if path else key)
            continue
        nested = _schema_class(hints[key])
        if nested is not None:
            nested_tables = [table for value in present for table in _tables(value)]
            missing += _undocumented(nested, nested_tables, f"{path}.{key}" if path else key)
    return missing


def test_every_schema_key_is_in_the_reference_config() -> None:
    data = tomllib.loads(REFERENCE_CONFIG.read_text(encoding="utf-8"))
    assert _undocumented(Config, [data], "") == []


def test_the_coverage_walk_notices_an_undocumented_key() -> None:
    data = tomllib.loads(REFERENCE_CONFIG.read_text(encoding="utf-8"))
    del data["delivery"]["max_per_hour"]
    for pool in data["pool"]:
        pool["sources"] = [s["name"] if isinstance(s, dict) else s for s in pool["sources"]]
    assert _undocumented(Config, [data], "") == [
        "delivery.max_per_hour",
        "pool.sources.name",
        "pool.sources.weight",
    ]


# Keys whose reference value is an example, not the default.
EXAMPLE_KEYS = {"server.hostname", "egress", "pool", "delivery.destination", "delivery.rule"}


def test_reference_config_shows_the_defaults() -> None:
    config = load_config(REFERENCE_CONFIG)
    defaults = Config()
    for section in dataclasses.fields(Config):
        if section.name in EXAMPLE_KEYS:
            continue
        value, default = getattr(config, section.name), getattr(defaults, section.name)
        for key in _leaf_fields(default):
            path = f"{section.name}.{key}"
            if path in EXAMPLE_KEYS:
                continue
            assert _get(value, key) == _get(default, key), path


def _leaf_fields(instance: Any, prefix: str = "") -> list[str]:
    names = []
    for field in dataclasses.fields(instance):
        child = getattr(instance, field.name)
        if dataclasses.is_dataclass(child):
            names += _leaf_fields(child, f"{prefix}{field.name}.")
        else:
            names.append(f"{prefix}{field.name}")
    return names


def _get(instance: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        instance = getattr(instance, part)
    return instance


def test_reference_config_has_the_contract_keys() -> None:
    text = REFERENCE_CONFIG.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for table, key in [
        ("server", "hostname"),
        ("database", "url"),
        ("tls", "cert"),
        ("tls", "key"),
        ("dns", "nameservers"),
        ("delivery", "port"),
        ("delivery", "default_pool"),
        ("http", "listen"),
        ("state", "dir"),
    ]:
        assert key in data[table], f"[{table}] {key}"
    for key in ("listen", "relay_networks"):
        assert key in data["smtp"]["inbound"]
    for key in ("listen", "tls_listen"):
        assert key in data["smtp"]["submission"]
    assert all({"name", "address", "helo"} <= set(egress) for egress in data["egress"])
    assert all({"name", "sources"} <= set(pool) for pool in data["pool"])


def test_reference_config_sections_follow_the_flow() -> None:
    headers = [
        line.strip()
        for line in REFERENCE_CONFIG.read_text(encoding="utf-8").splitlines()
        if line.startswith("[")
    ]
    order = [
        "[server]",
        "[state]",
        "[secrets]",
        "[database]",
        "[smtp.inbound]",
        "[smtp.submission]",
        "[tls]",
        "[dns]",
        "[checks]",
        "[dkim]",
        "[delivery]",
        "[[delivery.destination]]",
        "[[delivery.rule]]",
        "[[egress]]",
        "[[pool]]",
        "[bounce]",
        "[rating]",
        "[addresses]",
        "[campaign]",
        "[http]",
        "[mailbox]",
        "[logging]",
    ]
    first_seen = list(dict.fromkeys(headers))
    assert first_seen == order


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[bounce]\nworker_threads = 0\n", "bounce.worker_threads"),
        ("[bounce]\nworker_backlog = -1\n", "bounce.worker_backlog"),
        ('[bounce]\ntime_limit = "0s"\n', "bounce.time_limit"),
    ],
)
def test_the_feedback_worker_settings_are_checked(text: str, path: str) -> None:
    assert error_for(text).path == path
    config = parse_config('[bounce]\nworker_threads = 1\nworker_backlog = 0\ntime_limit = "2s"\n')
    assert (config.bounce.worker_threads, config.bounce.worker_backlog) == (1, 0)
    assert config.bounce.time_limit == 2.0
