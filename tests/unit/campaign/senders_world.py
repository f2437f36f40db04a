"""The sender unit tests' world: a migrated SQLite database, a config, a clock.

`SenderWorld(tmp_path)` has projects acme and other; acme owns the verified
domain acme.test and the unverified domain pending.test, other owns other.test.
`senders` is a `Senders` over them with `clock` (advance it with `clock.now += s`),
a code lifetime of one hour and 3 tries. `mailed_code(record)` reads the code
back from the mail the queue holds for it, as the sender's owner would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, insert, select

from postroom.campaign.senders import SenderRecord, Senders
from postroom.config.loader import Duration
from postroom.config.schema import Config, ServerConfig, StateConfig
from postroom.config.tenancy import CampaignConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import DomainState, domains, messages, projects

HOSTNAME = "mx.example.test"
START = 1_800_000_000.0
LIFETIME_S = 3600
MAX_FAILURES = 3


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


class SenderWorld:
    def __init__(self, directory: Path, url: str | None = None) -> None:
        """`url`: another database than a SQLite file in `directory` (an empty one)."""
        self.engine: Engine = make_engine(url or f"sqlite:///{directory}/db.sqlite")
        upgrade(self.engine)
        self.config = Config(
            server=ServerConfig(hostname=HOSTNAME),
            state=StateConfig(dir=str(directory)),
            campaign=CampaignConfig(
                code_lifetime=Duration(LIFETIME_S), code_max_failures=MAX_FAILURES
            ),
        )
        self.clock = Clock()
        self.senders = Senders(self.engine, self.config, clock=self.clock)
        with self.engine.begin() as conn:
            for name in ("acme", "other"):
                conn.execute(insert(projects).values(name=name, created_at=START))
            for domain, project, state in (
                ("acme.test", "acme", DomainState.VERIFIED),
                ("pending.test", "acme", DomainState.UNVERIFIED),
                ("other.test", "other", DomainState.VERIFIED),
            ):
                conn.execute(
                    insert(domains).values(
                        project_id=self.project_id(project, conn),
                        name=domain,
                        state=state.value,
                        verification_token="t",
                        created_at=START,
                    )
                )

    def project_id(self, name: str, conn=None) -> int:  # type: ignore[no-untyped-def]
        if conn is None:
            with self.engine.connect() as own:
                return self.project_id(name, own)
        return int(conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar_one())

    def mail(self, record: SenderRecord) -> bytes:
        with self.engine.connect() as conn:
            body = conn.execute(
                select(messages.c.body).where(messages.c.id == record.code_message_id)
            ).scalar_one()
        return bytes(body)

    def mailed_code(self, record: SenderRecord) -> str:
        subject = re.search(rb"^Subject: (\d{6}) ", self.mail(record), re.MULTILINE)
        assert subject is not None
        return subject.group(1).decode()
