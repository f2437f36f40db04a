"""The PostgreSQL peer starts a real server that SQLAlchemy (psycopg 3) can query."""

from __future__ import annotations

import pytest
import sqlalchemy
from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.flow


def test_postgres_server_answers_select_1() -> None:
    with PostgresServer() as server:
        assert server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert server.url.endswith("/postroom_test")
        engine = sqlalchemy.create_engine(server.url)
        try:
            with engine.connect() as connection:
                assert connection.execute(sqlalchemy.text("select 1")).scalar_one() == 1
                database = connection.execute(sqlalchemy.text("select current_database()"))
                assert database.scalar_one() == "postroom_test"
                fsync = connection.execute(sqlalchemy.text("show fsync")).scalar_one()
                assert fsync == "on"
        finally:
            engine.dispose()
        data_dir = server.data_dir
        assert data_dir.exists()
    assert not data_dir.exists()
