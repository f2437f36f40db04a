"""Config errors name the line: locate_key over the common TOML layouts."""

from __future__ import annotations

import pytest

from postroom.config import ConfigError, parse_config
from postroom.config.locate import locate_key

TEXT = """\
# comment
[server]
hostname = "x.test"

[smtp.inbound]
listen = ["127.0.0.1:25"]
max_recipients = 0

[[egress]]
name = "a"
address = "127.0.0.2"

[[pool]]
name = "p"
sources = ["a"]

[[pool]]
name = "q"
sources = [
  { name = "a", weight = 0 },
]

[[delivery.rule]]
pool = "q"
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("server.hostname", 3),
        ("smtp.inbound.max_recipients", 7),
        ("smtp.inbound.listen[0]", 6),
        ("smtp.inbound", 5),
        ("egress[0].address", 11),
        ("pool[1].sources[0].weight", 19),
        ("pool[0].name", 14),
        ("delivery.rule[0].pool", 24),
        ("delivery.rule[0].sender_domain", 23),  # not written: its table's header
        ("nosuch.key", None),
        ("", None),
    ],
)
def test_locate_key(path: str, line: int | None) -> None:
    assert locate_key(TEXT, path) == line


def test_parse_config_error_carries_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(TEXT, "postroom.toml")
    error = caught.value
    assert (error.source, error.line, error.path) == (
        "postroom.toml",
        7,
        "smtp.inbound.max_recipients",
    )
    assert str(error).startswith("postroom.toml:7: smtp.inbound.max_recipients: ")
