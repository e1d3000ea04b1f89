"""Throwaway databases: a SQLite file per test, or a PostgreSQL schema per test on the machine's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("MAILGATE_TEST_PG_URL", DEFAULT_PG_URL)


def postgres_unavailable_reason() -> str | None:
    """None when the PostgreSQL server answers, else why it cannot be used."""
    import psycopg

    try:
        with psycopg.connect(postgres_base_url(), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {postgres_base_url()} is not reachable: {str(error).strip().splitlines()[0]}"
    return None


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections see only a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"mg_test_{uuid.uuid4().hex[:12]}"
    base = postgres_base_url()
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
