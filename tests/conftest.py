"""Shared fixtures.

``database_url`` runs a test on SQLite (a fresh file) and on PostgreSQL (a
database created for the test session, its schema emptied before each
test, dropped at the end). When the server is unreachable the PostgreSQL
runs are skipped locally and fail when the environment says CI=true.
Server: BULKEX_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# A failing property test prints its falsifying example and a @reproduce_failure blob that
# replays exactly that run (hypothesis' seed for it), beside the seeds our own random runs print.
settings.register_profile("bulkex", print_blob=True)
settings.load_profile("bulkex")

POSTGRES_ADMIN_URL = os.environ.get("BULKEX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connection() -> Any:  # psycopg2 has no type information
    import psycopg2

    conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test session (dropped afterwards)."""
    import psycopg2

    try:
        admin = _admin_connection()
    except psycopg2.OperationalError as exc:
        message = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {str(exc).strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"bulkex_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _reset_postgres(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE")
        cur.execute("CREATE SCHEMA public")
    conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once SQLite and once PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bulkex.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _reset_postgres(url)
    return url
