"""Port 25 policy: relay networks and envelope address checks (no relay tricks)."""

from __future__ import annotations

import pytest

from postroom.mta.inbound.policy import (
    RelayNetworks,
    check_address,
    normalise_sender,
)

# -- relay networks ---------------------------------------------------------------


@pytest.fixture
def relay() -> RelayNetworks:
    return RelayNetworks(["127.0.0.0/8", "10.1.0.0/16", "::1/128", "2001:db8:10::/48"])


@pytest.mark.parametrize(
    "client_ip",
    ["127.0.0.1", "127.4.5.6", "10.1.255.1", "::1", "2001:db8:10::25", "2001:db8:10:ffff::1"],
)
def test_clients_inside_the_networks_may_relay(relay: RelayNetworks, client_ip: str) -> None:
    assert relay.allows(client_ip)


@pytest.mark.parametrize(
    "client_ip",
    ["128.0.0.1", "10.2.0.1", "192.0.2.1", "::2", "2001:db8:11::1", "", "garbage", "10.1.0.0/16"],
)
def test_clients_outside_the_networks_may_not(relay: RelayNetworks, client_ip: str) -> None:
    assert not relay.allows(client_ip)


def test_v4_mapped_v6_clients_are_judged_by_their_ipv4_address(relay: RelayNetworks) -> None:
    assert relay.allows("::ffff:127.0.0.1")
    assert relay.allows("::ffff:10.1.2.3")
    assert not relay.allows("::ffff:192.0.2.1")


def test_host_bits_in_a_cidr_are_tolerated() -> None:
    assert RelayNetworks(["10.1.2.3/16"]).allows("10.1.200.200")


def test_no_networks_allow_nobody() -> None:
    assert not RelayNetworks([]).allows("127.0.0.1")


def test_an_invalid_cidr_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        RelayNetworks(["not-a-network"])


# -- sender normalisation --------------------------------------------------------------


def test_null_sender_is_stored_empty() -> None:
    assert normalise_sender("<>") == ""
    assert normalise_sender("") == ""
    assert normalise_sender("a@b.test") == "a@b.test"


# -- address checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "first.last@mail.example.co.uk",
        "user+tag@example.com",
        "o'brien@example.com",
        "x@a-b.example",
        "USER@EXAMPLE.COM",
        "1234@123.example",
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "user@[ipv6:::1]",
    ],
)
def test_normal_addresses_pass(address: str) -> None:
    assert check_address(address, smtputf8=False) is None


@pytest.mark.parametrize(
    "address",
    ["user%victim.test@example.com", "a%b%c@example.com", "%@example.com"],
)
def test_percent_hack_is_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.7.1")
    assert "percent hack" in reply.text


@pytest.mark.parametrize("address", ["victim.test!user@example.com", "a!b!c@example.com"])
def test_bang_paths_are_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.7.1")


@pytest.mark.parametrize(
    "address", ['"user@victim.test"@example.com', '"john doe"@example.com', '"x"@example.com']
)
def test_quoted_local_parts_are_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.7.1")
    assert "quoted" in reply.text


@pytest.mark.parametrize(
    "address",
    [
        "user@[192.0.2.300]",
        "user@[192.0.2]",
        "user@[not-an-ip]",
        "user@[IPv6:2001:db8::g]",
        "user@[192.0.2.1",
        "user@[]",
    ],
)
def test_invalid_ip_literals_are_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.1.3")
    assert "literal" in reply.text


def test_too_long_local_part_is_refused() -> None:
    assert check_address("a" * 64 + "@example.com", smtputf8=False) is None
    reply = check_address("a" * 65 + "@example.com", smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.1.3")
    assert "too long" in reply.text


def test_too_long_address_is_refused() -> None:
    domain = ".".join(["a" * 60] * 4) + ".test"  # 248 octets, a valid domain
    longest = "users@" + domain
    assert len(longest) == 254
    assert check_address(longest, smtputf8=False) is None
    reply = check_address("userss@" + domain, smtputf8=False)  # 255 octets
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.1.3")
    assert "too long" in reply.text


def test_local_part_length_counts_octets_not_characters() -> None:
    local = "é" * 33  # 33 characters, 66 octets
    reply = check_address(local + "@example.com", smtputf8=True)
    assert reply is not None
    assert "too long" in reply.text


def test_non_ascii_needs_smtputf8() -> None:
    for address in ("jöran@example.com", "user@bücher.example"):
        reply = check_address(address, smtputf8=False)
        assert reply is not None
        assert (reply.code, reply.enhanced) == (553, "5.6.7")
        assert check_address(address, smtputf8=True) is None


@pytest.mark.parametrize(
    "address",
    [
        "user@example",
        "user@-example.com",
        "user@example-.com",
        "user@exa_mple.com",
        "user@example..com",
        "user@.example.com",
        "user@example.com.",
        "user@" + "a" * 64 + ".com",
        "user@exa mple.com",
    ],
)
def test_malformed_domains_are_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.1.2")


@pytest.mark.parametrize(
    "address",
    [
        "userexample.com",
        "@example.com",
        "user@",
        "",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        "a(b)@example.com",
    ],
)
def test_malformed_addresses_are_refused(address: str) -> None:
    reply = check_address(address, smtputf8=False)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (553, "5.1.3")


def test_refusals_name_the_address() -> None:
    reply = check_address("user%victim.test@example.com", smtputf8=False)
    assert reply is not None
    assert "<user%victim.test@example.com>" in reply.text


@pytest.mark.parametrize(
    ("address", "recipient_code", "sender_code"),
    [
        ("a" * 65 + "@example.com", "5.1.3", "5.1.7"),  # bad mailbox syntax
        ("user@dest..test", "5.1.2", "5.1.8"),  # bad system address
        ("user%dest.test@x.test", "5.7.1", "5.7.1"),  # policy, not syntax: the same
    ],
)
def test_a_senders_refusals_name_the_sender(
    address: str, recipient_code: str, sender_code: str
) -> None:
    as_recipient = check_address(address, smtputf8=False)
    as_sender = check_address(address, smtputf8=False, sender=True)
    assert as_recipient is not None and as_sender is not None
    assert (as_recipient.code, as_recipient.enhanced) == (553, recipient_code)
    assert (as_sender.code, as_sender.enhanced, as_sender.text) == (
        553,
        sender_code,
        as_recipient.text,
    )
