"""Alembic environment: the engine comes from bot.store.database.Database."""

from alembic import context

from bot.store.models import Base

config = context.config


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if config.attributes.get("connection") is not None:  # Database.upgrade holds a lock on it
    run(config.attributes["connection"])
else:
    with config.attributes["engine"].connect() as connection:
        run(connection)
