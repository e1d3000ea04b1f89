"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailgate.store import schema
from mailgate.store.db import make_engine
from mailgate.store.models import Base


def test_migrations_match_the_models(db_url: str) -> None:
    """After `db upgrade`, Alembic finds no difference between the database and the models."""
    engine = make_engine(db_url)
    schema.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_instances_starting_together_upgrade_one_after_the_other(db_url: str) -> None:
    """Several daemons upgrading one fresh database at once: every one succeeds, the schema is at head."""
    from concurrent.futures import ThreadPoolExecutor

    engines = [make_engine(db_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            for result in [pool.submit(schema.upgrade, engine) for engine in engines]:
                result.result(timeout=120)
        assert all(schema.is_current(engine) for engine in engines)
    finally:
        for engine in engines:
            engine.dispose()
