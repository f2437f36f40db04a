"""Alembic environment: runs migrations on the engine that `db.migrate` passes in."""

from alembic import context

from postroom.db.models import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
