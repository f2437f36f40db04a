"""The producer tests' world, on any database URL (SQLite here, PostgreSQL in flow).

`ProducerWorld(url, directory, contacts_count=N, project="acme")`: the project
with the verified domain PROJECT.test, a confirmed sender news@PROJECT.test, a
template greeting `contact.first_name`, N contacts c0000@dest.test ... (with a
first_name) on the list "customers", and a draft campaign over that list
(`campaign_id`); `launch(...)` launches it with the real `campaign.launch.launch`
(address checks without DNS, the world's clock; the sender is two-way, so no DMARC
lookup).
`producer(node)` is a `CampaignProducer` over a real `QueueStore` whose delivery
engine is a `JobSink` (it keeps the jobs handed over); start the store inside a
running loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine, insert, select, update

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.campaign.audience import AudienceFilter
from postroom.campaign.drafts import Campaigns
from postroom.campaign.launch import Launched, launch
from postroom.campaign.launch_settings import SendingSettings
from postroom.campaign.producer import CampaignProducer
from postroom.campaign.render import TemplateSource
from postroom.campaign.templates import Templates
from postroom.config.schema import Config, ServerConfig, StateConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import (
    DomainState,
    SenderState,
    campaign_recipients,
    contacts,
    domains,
    projects,
    senders,
)
from postroom.mta.queue.records import Job
from postroom.mta.queue.store import QueueStore
from postroom.rating.contacts import Contacts
from postroom.rating.rules import Rules

TEMPLATE = TemplateSource(
    subject="Hello {{ contact.first_name }}",
    html="<p>Hi {{ contact.first_name }} of {{ project.name }}</p>",
)


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class JobSink:
    """The delivery engine as the producer sees it: a backlog and `submit`."""

    jobs: list[Job] = field(default_factory=list)
    backlog: int = 0

    def submit(self, jobs: list[Job]) -> None:
        self.jobs.extend(jobs)


class ProducerWorld:
    def __init__(
        self, url: str, directory: Path, contacts_count: int = 5, project: str = "acme"
    ) -> None:
        self.engine: Engine = make_engine(url)
        upgrade(self.engine)
        self.config = Config(
            server=ServerConfig(hostname="mx.example.test"), state=StateConfig(dir=str(directory))
        )
        self.clock = Clock()
        now = time.time()
        with self.engine.begin() as conn:
            project_id = conn.execute(
                insert(projects).values(name=project, created_at=now).returning(projects.c.id)
            ).scalar_one()
            conn.execute(
                insert(domains).values(
                    project_id=project_id,
                    name=f"{project}.test",
                    state=DomainState.VERIFIED.value,
                    verification_token="t",
                    created_at=now,
                )
            )
            conn.execute(
                insert(senders).values(
                    project_id=project_id,
                    address=self.sender(project),
                    display_name="Acme News",
                    state=SenderState.CONFIRMED.value,
                    created_at=now,
                    confirmed_at=now,
                )
            )
        self.project_id = int(project_id)
        Templates(self.engine).add(project, "spring", TEMPLATE)
        rated = Contacts(self.engine, Rules(self.config.rating))
        for index in range(contacts_count):
            rated.add(project, self.address(index), "customers")
        with self.engine.begin() as conn:
            conn.execute(
                update(contacts)
                .where(contacts.c.project_id == self.project_id)
                .values(variables='{"first_name": "Ann"}')
            )
        audience = AudienceFilter(lists=("customers",))
        self.campaign_id = Campaigns(self.engine).create(
            project, "spring", self.sender(project), "spring", audience
        )

    def launch(
        self,
        *,
        start_at: float | None = None,
        interval_s: float = 0.0,
        part_size: int | None = None,
        part_gap_s: float = 0.0,
        pool: str = "mailings",
        from_name: str | None = None,
        history: bool = True,
    ) -> Launched:
        """The real launch of the campaign, starting now on the world's clock by default."""
        settings = SendingSettings(
            start_at=start_at,
            interval_s=interval_s,
            parts=None,
            part_size=part_size,
            part_gap_s=part_gap_s,
            pool=pool,
            from_name=from_name,
            history=history,
        )
        validator = Validator(ValidationPolicy(dns=False))
        return launch(
            self.engine, self.config, self.campaign_id, settings, validator, clock=self.clock
        )

    @staticmethod
    def sender(project: str) -> str:
        return f"news@{project}.test"

    @staticmethod
    def address(index: int) -> str:
        return f"c{index:04d}@dest.test"

    def store(self, node: str) -> QueueStore:
        return QueueStore(self.engine, node_name=node, clock=self.clock)

    def producer(
        self, node: str, store: QueueStore | None = None, batch_rows: int = 100
    ) -> tuple[CampaignProducer, JobSink]:
        config = replace(self.config, server=replace(self.config.server, node_name=node))
        sink = JobSink()
        producer = CampaignProducer(
            self.engine,
            config,
            store or self.store(node),
            sink,  # type: ignore[arg-type]
            batch_rows=batch_rows,
            clock=self.clock,
        )
        return producer, sink

    def rows(self) -> list:  # type: ignore[type-arg]
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(campaign_recipients)
                    .where(campaign_recipients.c.campaign_id == self.campaign_id)
                    .order_by(campaign_recipients.c.seq)
                )
            )


async def one_pass(producer: CampaignProducer) -> float:
    """One production pass with its batch stored (a pass leaves its commit in flight)."""
    pause = await producer.produce_once()
    await producer.settled()
    return pause
