"""Which names public DNS can never serve, and which config keys hold one."""

from __future__ import annotations

import pytest

from postroom.config import parse_config
from postroom.core.hostnames import hostname_problem, public_name_problems


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("localhost", "resolves only on this machine"),
        ("LOCALHOST.", "resolves only on this machine"),
        ("mail.localhost", "resolves only on this machine"),
        ("debian", "single label"),
        ("192.0.2.1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("mail.1", "numeric label"),
        ("box.local", "under .local"),
        ("mail.example.test", "under .test"),
        ("mx.internal", "under .internal"),
        ("router.home.arpa", "under .arpa"),
    ],
)
def test_names_that_cannot_work(name: str, problem: str) -> None:
    assert problem in (hostname_problem(name) or "")


@pytest.mark.parametrize("name", ["mail.example.com", "MX1.Example.ORG.", "smtp.xn--bcher-kva.de"])
def test_public_names(name: str) -> None:
    assert hostname_problem(name) is None


def test_every_published_name_of_the_config_is_checked() -> None:
    config = parse_config(
        """
        [server]
        hostname = "localhost"
        [bounce]
        domain = "bounces"
        [[egress]]
        name = "a"
        address = "192.0.2.1"
        helo = "a.example.com"
        [[egress]]
        name = "b"
        address = "192.0.2.2"
        helo = "b.local"
        """
    )
    problems = public_name_problems(config)
    assert [(p.key, p.name) for p in problems] == [
        ("server.hostname", "localhost"),
        ("egress[1].helo", "b.local"),
        ("bounce.domain", "bounces"),
    ]
    assert str(problems[0]) == "server.hostname 'localhost' resolves only on this machine"
    assert "public FQDN" in problems[0].advice and "PTR" in problems[1].advice
    assert [p.key for p in public_name_problems(config, egress=False)] == [
        "server.hostname",
        "bounce.domain",
    ]
