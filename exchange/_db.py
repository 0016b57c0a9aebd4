"""Database access: engines with the right settings, and schema upgrades.

SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged commit
survives a power cut) and foreign keys on; its folder is created when
missing. PostgreSQL goes through psycopg2, with libpq's own bounds set from
`timeout_ms` (the writer's BULKEX_COMMIT_TIMEOUT_MS): ``connect_timeout`` (a
server that accepts the connection and never answers), TCP keepalives (an idle
connection to a host that is gone) and ``tcp_user_timeout`` (sent bytes that the
other host's kernel never acknowledges: a network partition). None of them sees
a server that is hung while its host's kernel still acknowledges (or a proxy in
between that holds the bytes); the writer's commit watchdog (``exchange._store``)
bounds that case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from exchange._errors import ConfigError
from exchange._settings import DEFAULT_COMMIT_TIMEOUT_MS

__all__ = ["MIGRATIONS_DIR", "is_sqlite", "make_engine", "pg_connect_args", "sqlite_path", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path:
    """The database file of a SQLite URL (an in-memory database is refused:
    the journal must outlive the process)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise ConfigError(f"database_url {url!r}: an in-memory SQLite database cannot hold a journal; name a file")
    return Path(database).resolve()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def pg_connect_args(timeout_ms: int) -> dict[str, int]:
    """libpq parameters bounding how long a dead or partitioned server can go unnoticed
    (none for 0). Keepalives: the first probe after a third of the bound idle, then every
    second, three probes."""
    assert timeout_ms >= 0, timeout_ms
    if timeout_ms == 0:
        return {}
    timeout_s = max(1, timeout_ms // 1000)
    return {
        "connect_timeout": max(2, timeout_s),  # libpq rounds anything below 2 s up to 2 s
        "keepalives": 1,
        "keepalives_idle": max(1, timeout_s // 3),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": timeout_ms,
    }


def make_engine(url: str, timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS) -> Engine:
    """An engine for `url` (SQLite: WAL, synchronous=FULL, folder created; PostgreSQL: the
    libpq bounds of `pg_connect_args`)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            # Plain postgresql:// means psycopg2 here (newer SQLAlchemy would pick psycopg 3).
            parsed = parsed.set(drivername="postgresql+psycopg2")
        return create_engine(parsed, pool_pre_ping=True, connect_args=pg_connect_args(timeout_ms))
    raise ConfigError(f"database_url {url!r}: only sqlite and postgresql are supported")


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema of `url` to `revision` (default: the newest)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
