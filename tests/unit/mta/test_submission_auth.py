"""AUTH's brute-force lock is the account's, however the username spells it (issue 12,
item 4): on a real session, with real argon2 hashes and the real throttle. Each attempt
comes from a loopback address of its own, so only the username's counter can lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.mta.submission_rig import submission_rig

from postroom.mta.inbound.throttle import ThrottlePolicy

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

# Spellings that log in to app@shop.test: final dots, case, UTS 46 width mapping.
SPELLINGS = ["app@shop.test.", "app@shop.test..", "APP@ｓｈｏｐ.ｔｅｓｔ"]


async def test_the_spellings_of_an_account_lock_it_together(tmp_path: Path) -> None:
    policy = ThrottlePolicy(free_failures=3, max_failures=3)  # locks at 3, no delays
    async with submission_rig(tmp_path, throttle=policy) as rig:
        replies = []
        for number, spelling in enumerate(SPELLINGS):
            client = await rig.connect(source=f"127.0.0.{50 + number}")
            replies.append(await client.login(spelling, "wrong-password-123"))
            client.hang_up()
        assert [reply[:9] for reply in replies] == [b"535 5.7.8"] * 3, replies
        # Locked for the account, whatever spelling comes next, even with the password.
        for number, spelling in enumerate(["app@shop.test", *SPELLINGS]):
            client = await rig.connect(source=f"127.0.0.{60 + number}")
            reply = await client.login(spelling)
            assert reply.startswith(b"454 4.7.0"), (spelling, reply)
            client.hang_up()
        await rig.settle()


async def test_every_spelling_logs_in_to_the_one_account(tmp_path: Path) -> None:
    async with submission_rig(tmp_path) as rig:
        for spelling in SPELLINGS:
            client = await rig.connect()
            assert (await client.login(spelling)).startswith(b"235"), spelling
            assert (await client.command("MAIL FROM:<app@shop.test>")).startswith(b"250")
            client.hang_up()
        await rig.settle()
