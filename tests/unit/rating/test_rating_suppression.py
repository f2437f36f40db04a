"""Transactional mail to a blocked contact: send (logged), hold or refuse."""

from __future__ import annotations

import logging

import pytest

from postroom.core.reply import Reply
from postroom.mailbox.directory import Directory
from postroom.rating.contacts import Contacts
from postroom.rating.suppression import Suppression


@pytest.fixture
def project_id(directory: Directory, contacts: Contacts) -> int:
    project = directory.add_project("shop")
    contacts.add("shop", "ok@far.test")
    contacts.add("shop", "gone@far.test")
    contacts.block("shop", "gone@far.test")
    return project.id


@pytest.mark.parametrize("policy", ["send", "hold", "refuse"])
async def test_a_contact_that_is_not_blocked_is_always_sent(
    contacts: Contacts, project_id: int, policy: str
) -> None:
    suppression = Suppression(contacts, policy)
    assert await suppression.check(project_id, "ok@far.test", "Q1") is False
    assert await suppression.check(project_id, "stranger@far.test", "Q1") is False


async def test_send_is_the_default_and_is_logged(
    contacts: Contacts, project_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="postroom.rating"):
        verdict = await Suppression(contacts, "send").check(project_id, "GONE@far.test", "Q7")
    assert verdict is False
    assert "queue_id=Q7 rcpt=<GONE@far.test> is a blocked contact: send" in caplog.text


async def test_hold(contacts: Contacts, project_id: int) -> None:
    assert await Suppression(contacts, "hold").check(project_id, "gone@far.test", "Q1") is True


async def test_refuse_is_550_5_7_1(contacts: Contacts, project_id: int) -> None:
    verdict = await Suppression(contacts, "refuse").check(project_id, "gone@far.test", "Q1")
    assert isinstance(verdict, Reply)
    assert (verdict.code, verdict.enhanced) == (550, "5.7.1")


async def test_another_projects_block_does_not_count(
    directory: Directory, contacts: Contacts, project_id: int
) -> None:
    other = directory.add_project("other")
    assert await Suppression(contacts, "refuse").check(other.id, "gone@far.test", "Q1") is False
