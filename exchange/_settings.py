"""Settings of the exchange, from the environment (prefix ``BULKEX_``).

BULKEX_DATABASE_URL              default sqlite:///<cwd>/var/bulkex.db (folder created on first use)
BULKEX_BATCH_MAX_COMMANDS        commands per journal transaction, at most (default 4096)
BULKEX_BATCH_MAX_WAIT_MS         how long the writer waits to fill a batch (default 0: it never
                                 waits; while a batch commits the next one gathers in the queue)
BULKEX_SNAPSHOT_EVERY_COMMANDS   a snapshot after this many commands (default 100000; 0: never)
BULKEX_QUEUE_MAX_COMMANDS        submitted but not yet sequenced commands, at most (default 100000)
BULKEX_COMMIT_TIMEOUT_MS         PostgreSQL: a commit (or the writer lock's release) that gets no answer
                                 in this time cuts its connection, and the writer stops with
                                 DatabaseTimeout (a hung server or a network partition); also the
                                 libpq connect, keepalive and tcp_user_timeout bound (default 10000;
                                 0: no bound, a hung database then holds the writer until it answers)
BULKEX_INSTRUMENTS_FILE          instruments listed on first start (default: the packaged file)
BULKEX_HOST, BULKEX_PORT         where the WebSocket gateway listens (default 127.0.0.1:8765)
BULKEX_WRITER_PROCESS            the server runs the sequencer (core, journal, commits) in a process of
                                 its own beside the gateway's (default true; false: both in one
                                 process, sharing one interpreter lock; see exchange/_writer.py)
BULKEX_COMMITTER_PROCESS         the sequencer writes its transactions from a process of its own
                                 (default true; false: from a thread of the sequencer's process,
                                 sharing its interpreter lock; see exchange/_committer.py)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_COMMIT_TIMEOUT_MS",
    "MAX_COMMIT_TIMEOUT_MS",
    "PACKAGED_INSTRUMENTS_FILE",
    "Settings",
    "default_database_url",
]

PACKAGED_INSTRUMENTS_FILE = Path(__file__).resolve().parent / "instruments.toml"

DEFAULT_COMMIT_TIMEOUT_MS = 10_000
"""How long the writer waits for PostgreSQL to answer a commit before it gives up (see
``exchange._store``): far above a healthy commit (milliseconds), short enough that a hung
database stops the writer, and with it every waiting client, in seconds rather than never."""
MAX_COMMIT_TIMEOUT_MS = 3_600_000

MAX_BATCH_COMMANDS = 65_536
"""Upper limit of `batch_max_commands`: one transaction stays a few megabytes."""


def default_database_url() -> str:
    """SQLite in ./var/bulkex.db under the current directory (the folder is made when the database opens)."""
    return f"sqlite:///{Path.cwd() / 'var' / 'bulkex.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULKEX_", extra="ignore", frozen=True)

    database_url: str = Field(default_factory=default_database_url)
    batch_max_commands: int = Field(default=4096, ge=1, le=MAX_BATCH_COMMANDS)
    batch_max_wait_ms: int = Field(default=0, ge=0, le=1000)
    snapshot_every_commands: int = Field(default=100_000, ge=0)
    queue_max_commands: int = Field(default=100_000, ge=1)
    commit_timeout_ms: int = Field(default=DEFAULT_COMMIT_TIMEOUT_MS, ge=0, le=MAX_COMMIT_TIMEOUT_MS)
    instruments_file: Path = PACKAGED_INSTRUMENTS_FILE
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65_535)
    writer_process: bool = True
    committer_process: bool = True
