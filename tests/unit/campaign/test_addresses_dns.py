"""The DNS step with a fake resolver: MX, implicit MX, null MX, NXDOMAIN, failures, cache."""

from __future__ import annotations

import asyncio

import pytest

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.campaign.addresses.dns_step import MailDomainChecker, reasons_from_mx

GLOBAL_ADDRESS = "93.184.215.14"


def validator_with(resolver: object, **policy: object) -> Validator:
    return Validator(ValidationPolicy(**policy), resolver=resolver)  # type: ignore[arg-type]


async def test_mx_records_make_a_domain_valid(make_resolver: type) -> None:
    resolver = make_resolver(mx={"mx.example.org": [(10, "in.mx.example.org")]})
    [result] = await validator_with(resolver).validate(["ann@mx.example.org"])
    assert (result.verdict, result.reasons) == ("valid", ())


async def test_no_mx_but_an_address_is_valid(make_resolver: type) -> None:
    resolver = make_resolver(hosts={"a.example.org": [GLOBAL_ADDRESS]})
    [result] = await validator_with(resolver).validate(["ann@a.example.org"])
    assert (result.verdict, result.reasons) == ("valid", ("implicit_mx",))


async def test_no_mx_and_no_address_is_invalid(make_resolver: type) -> None:
    resolver = make_resolver(hosts={"bare.example.org": []})
    [result] = await validator_with(resolver).validate(["ann@bare.example.org"])
    assert (result.verdict, result.reasons) == ("invalid", ("no_mx",))


async def test_no_mx_and_only_a_loopback_address_is_invalid(make_resolver: type) -> None:
    resolver = make_resolver(hosts={"parked.example.org": ["127.0.0.1", "::1"]})
    [result] = await validator_with(resolver).validate(["ann@parked.example.org"])
    assert result.reasons == ("no_mx",)


async def test_null_mx_is_invalid(make_resolver: type) -> None:
    resolver = make_resolver(
        mx={"nomail.example.org": [(0, ".")]}, hosts={"nomail.example.org": [GLOBAL_ADDRESS]}
    )
    [result] = await validator_with(resolver).validate(["ann@nomail.example.org"])
    assert (result.verdict, result.reasons) == ("invalid", ("null_mx",))


async def test_nonexistent_domain_is_invalid(make_resolver: type) -> None:
    [result] = await validator_with(make_resolver()).validate(["ann@nowhere.example.org"])
    assert (result.verdict, result.reasons) == ("invalid", ("no_domain",))


@pytest.mark.parametrize(
    ("mx", "hosts"),
    [
        ({"flaky.example.org": "temporary"}, {}),
        ({}, {"flaky.example.org": "temporary"}),  # NODATA for MX, then A/AAAA fails
    ],
)
async def test_temporary_failure_is_risky_never_invalid(
    make_resolver: type, mx: dict[str, object], hosts: dict[str, object]
) -> None:
    [result] = await validator_with(make_resolver(mx=mx, hosts=hosts)).validate(
        ["ann@flaky.example.org"]
    )
    assert (result.verdict, result.reasons) == ("risky", ("dns_temporary",))


async def test_timeout_is_temporary(make_resolver: type) -> None:
    resolver = make_resolver(mx={"slow.example.org": "hang"})
    validator = validator_with(resolver, dns_timeout_s=0.05)
    [result] = await asyncio.wait_for(validator.validate(["ann@slow.example.org"]), 5)
    assert result.reasons == ("dns_temporary",)


async def test_unexpected_resolver_error_is_temporary() -> None:
    class Broken:
        async def mx(self, domain: str) -> list[tuple[int, str]]:
            raise RuntimeError("bug")

        async def addresses(self, host: str) -> list[str]:
            raise AssertionError("not reached")

    [result] = await validator_with(Broken()).validate(["ann@example.org"])
    assert result.reasons == ("dns_temporary",)


async def test_one_lookup_per_domain_within_and_across_calls(make_resolver: type) -> None:
    resolver = make_resolver(mx={"example.org": [(10, "mx.example.org")]})
    validator = validator_with(resolver)
    inputs = [f"user{number}@Example.org" for number in range(30)]
    results = await validator.validate(inputs)
    assert {item.verdict for item in results} == {"valid"}
    await validator.validate(["someone.else@example.org"])
    assert resolver.lookups == {("MX", "example.org"): 1}


async def test_temporary_failures_are_not_cached(make_resolver: type) -> None:
    resolver = make_resolver(mx={"flaky.example.org": "temporary"})
    validator = validator_with(resolver)
    await validator.validate(["a@flaky.example.org"])
    await validator.validate(["b@flaky.example.org"])
    assert resolver.lookups[("MX", "flaky.example.org")] == 2


async def test_dns_is_skipped_when_off_or_already_invalid(make_resolver: type) -> None:
    resolver = make_resolver()
    off = validator_with(resolver, dns=False)
    [result] = await off.validate(["ann@nowhere.example.org"])
    assert result.verdict == "valid"
    on = validator_with(resolver)
    await on.validate(["ann@mailinator.com", "ann@gmial.com", "ann@example.tld", "not-an-address"])
    assert not resolver.lookups


async def test_concurrency_is_bounded() -> None:
    running = peak = 0

    class Counting:
        async def mx(self, domain: str) -> list[tuple[int, str]]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return [(10, "mx." + domain)]

        async def addresses(self, host: str) -> list[str]:
            raise AssertionError("not reached")

    checker = MailDomainChecker(Counting(), concurrency=3)
    results = await checker.check(f"d{number}.example.org" for number in range(12))
    assert len(results) == 12
    assert peak == 3


def test_reasons_from_mx() -> None:
    assert reasons_from_mx([(10, "mx.example.org")]) == ()
    assert reasons_from_mx([(0, ".")]) == ("null_mx",)
    assert reasons_from_mx([(0, "."), (10, "mx.example.org")]) == ()  # RFC 7505: ignore "."
    assert reasons_from_mx([]) is None
