"""SMTP access and the project message limit on a real PostgreSQL server: the same
code as on SQLite (dialect INSERT ... ON CONFLICT, conditional UPDATE), with
several engines racing as several nodes sharing one database would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.peers.postgres import PostgresServer

from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.directory import Directory
from postroom.mailbox.passwords import hash_password
from postroom.mailbox.smtp_access import SmtpAccess, SmtpAccessError, SmtpState
from postroom.mailbox.usage import ProjectUsage

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with PostgresServer() as server:
        engine = make_engine(server.url)
        upgrade(engine)
        yield engine
        engine.dispose()


def test_racing_nodes_never_pass_the_limit(engine: Engine) -> None:
    project_id = Directory(engine).add_project("race", message_limit=400).id
    workers = 4
    engines = [
        make_engine(engine.url.render_as_string(hide_password=False)) for _ in range(workers)
    ]
    granted = [0] * workers
    start = threading.Barrier(workers)

    def hammer(index: int) -> None:
        usage = ProjectUsage(engines[index])
        start.wait()
        for attempt in range(200):
            reservation = usage.reserve(project_id, 1 + attempt % 3)
            if reservation is not None:
                granted[index] += reservation.count

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in engines:
        other.dispose()
    usage = ProjectUsage(engine)
    assert sum(granted) == usage.usage(project_id)[0] == 400
    assert usage.reserve(project_id) is None


def test_release_and_a_new_month(engine: Engine) -> None:
    project_id = Directory(engine).add_project("months", message_limit=2).id
    now = [1_769_903_999.0]  # 2026-01-31 23:59:59 UTC
    usage = ProjectUsage(engine, lambda: now[0])
    january = usage.reserve(project_id, 2)
    assert january is not None and usage.reserve(project_id) is None
    now[0] += 1
    assert usage.reserve(project_id, 2) is not None  # February starts at zero
    usage.release(january)
    usage.release(january)
    now[0] -= 1
    assert usage.usage(project_id) == (0, 2)
    with pytest.raises(LookupError):
        usage.reserve(999_999)


def test_moderation_and_auth(engine: Engine, tmp_path: Path) -> None:
    directory = Directory(engine)
    directory.add_project("apps")
    directory.add_domain("apps.example", "apps")
    directory.mark_verified("apps.example", [])
    Accounts(engine, tmp_path).add_mailbox("app@apps.example", hash_password("s3cret-pass"), 0)
    access = SmtpAccess(engine)
    assert access.request("App@Apps.Example", "receipts", 10).state is SmtpState.PENDING
    with pytest.raises(SmtpAccessError, match="already under moderation"):
        access.request("app@apps.example", "again", 10)
    assert access.reject("app@apps.example", "why?").reason == "why?"
    assert access.authenticate("app@apps.example", "s3cret-pass").failure == (
        "not approved (rejected)"
    )
    access.request("app@apps.example", "receipts, invoices", 20)
    approved = access.approve("app@apps.example", domain_senders=True)
    assert approved.reason == "" and approved.domain_senders
    outcome = access.authenticate("APP@apps.example", "s3cret-pass")
    assert outcome.ok and outcome.account == approved
    assert access.authenticate("app@apps.example", "wrong").failure == "bad credentials"
    assert [a.address for a in access.accounts(SmtpState.APPROVED)] == ["app@apps.example"]
