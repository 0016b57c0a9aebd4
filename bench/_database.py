"""Where a database benchmark runs: a database of its own, removed afterwards."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text

from exchange import make_engine

__all__ = ["with_database"]

T = TypeVar("T")


def with_database(database_url: str | None, tag: str, body: Callable[[str], T]) -> T:
    """``body(url)`` on a database of its own: on PostgreSQL a new database on the server of
    `database_url` (named ``bulkex_bench_<tag>_<random>``, dropped afterwards); a given SQLite
    URL as it is; no URL, a SQLite file in a temporary folder."""
    if database_url and database_url.startswith("postgresql"):
        admin = make_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
        name = f"bulkex_bench_{tag}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        base, _, _ = database_url.rpartition("/")
        try:
            return body(f"{base}/{name}")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if database_url:
        return body(database_url)
    with tempfile.TemporaryDirectory() as folder:
        return body(f"sqlite:///{Path(folder) / 'bench.db'}")
