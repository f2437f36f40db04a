"""The CLI's outbox signs a project's mail only with that project's own keys.

Project "owner" links and verifies b.test (real keys, encrypted with the
appliance secret, as `domain verify` stores them); project "other" confirmed a
sender on b.test before: its mail must leave unsigned, never with owner's key.
"""

from __future__ import annotations

from pathlib import Path

from postroom.config.schema import Config, StateConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.mailbox.directory import Directory
from postroom.mailbox.keyring import Keyring
from postroom.mta.queue.outbox import Outbox

MESSAGE = b"From: News <news@b.test>\r\nTo: ann@dest.test\r\nSubject: hi\r\n\r\nhello\r\n"


def test_only_the_projects_own_domain_keys_sign_its_mail(tmp_path: Path) -> None:
    config = Config(state=StateConfig(dir=str(tmp_path)))
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    upgrade(engine)
    directory = Directory(engine)
    owner = directory.add_project("owner")
    other = directory.add_project("other")
    directory.add_domain("b.test", "owner")
    keyring = Keyring(directory, config.dkim, Path(config.secret_key_file), tmp_path)
    directory.mark_verified("b.test", keyring.first_keys("b.test"))

    outbox = Outbox(engine, config)
    assert outbox.sign(MESSAGE, owner.id).startswith(b"DKIM-Signature:")
    assert outbox.sign(MESSAGE, None).startswith(b"DKIM-Signature:")  # the appliance's own
    assert outbox.sign(MESSAGE, other.id) == MESSAGE
