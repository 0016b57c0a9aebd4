"""Errors of the exchange runtime (sequencer, journal, database, settings).

Operator errors and damaged data are answered with one of these, each saying
what is wrong and how to fix it; programmer errors stay assertions.

    ExchangeError
    ├── ConfigError          bad settings or instruments file (names the instrument and field)
    ├── WriterLocked         another writer holds the database's writer lock
    ├── WriterStopped        the writer stopped after a failed commit; restart to recover
    ├── QueueFull            too many commands wait to be sequenced; retry later
    ├── DatabaseTimeout      the database did not answer a statement in time; the connection was cut
    └── JournalError         the journal cannot be replayed as it is
        ├── JournalGap       a sequence number is missing (names it)
        └── JournalCorrupt   a record fails its checksum or does not decode (names its seq)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseTimeout",
    "ExchangeError",
    "JournalCorrupt",
    "JournalError",
    "JournalGap",
    "QueueFull",
    "WriterLocked",
    "WriterStopped",
]


class ExchangeError(Exception):
    """Base of every error the exchange runtime raises on purpose."""


class ConfigError(ExchangeError):
    """The settings or the instruments file are invalid; the message names the field."""


class WriterLocked(ExchangeError):
    """Another process (or connection) already writes to this database."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"another bulkex writer holds the writer lock of {where}; stop it first "
            "(exactly one sequencer may write to a journal)"
        )
        self.where = where

    def __reduce__(self) -> tuple[type[WriterLocked], tuple[str]]:
        return WriterLocked, (self.where,)  # it crosses from the committer process


class WriterStopped(ExchangeError):
    """The writer stopped (a commit failed or it was shut down); nothing more is accepted."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the sequencer is stopped ({reason}); restart the exchange to recover from the journal")
        self.reason = reason

    def __reduce__(self) -> tuple[type[WriterStopped], tuple[str]]:
        return WriterStopped, (self.reason,)


class QueueFull(ExchangeError):
    """The sequencer's queue holds its limit of waiting commands."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} commands are waiting to be sequenced (the queue limit); retry shortly")
        self.limit = limit

    def __reduce__(self) -> tuple[type[QueueFull], tuple[int]]:
        return QueueFull, (self.limit,)


class DatabaseTimeout(ExchangeError):
    """A statement got no answer within the bound (a hung server or a network partition)."""

    def __init__(self, what: str, timeout_ms: int) -> None:
        super().__init__(
            f"the database did not answer the {what} within {timeout_ms} ms (BULKEX_COMMIT_TIMEOUT_MS), "
            "so its connection was cut; its outcome is unknown until a restart reads the journal"
        )
        self.what = what
        self.timeout_ms = timeout_ms

    def __reduce__(self) -> tuple[type[DatabaseTimeout], tuple[str, int]]:
        return DatabaseTimeout, (self.what, self.timeout_ms)  # it crosses from the committer process


class JournalError(ExchangeError):
    """The journal cannot be replayed as it is."""


class JournalGap(JournalError):
    """The journal skips a sequence number."""

    def __init__(self, missing_seq: int, found_seq: int | None) -> None:
        found = "the journal ends" if found_seq is None else f"the next record is seq {found_seq}"
        super().__init__(
            f"journal gap: seq {missing_seq} is missing ({found}); restore the journal from a backup, "
            "it must be gapless"
        )
        self.missing_seq = missing_seq
        self.found_seq = found_seq

    def __reduce__(self) -> tuple[type[JournalGap], tuple[int, int | None]]:
        return JournalGap, (self.missing_seq, self.found_seq)


class JournalCorrupt(JournalError):
    """A journal record fails its checksum or does not decode to a command."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"journal record seq {seq} is corrupt: {reason}; restore the journal from a backup")
        self.seq = seq
        self.reason = reason

    def __reduce__(self) -> tuple[type[JournalCorrupt], tuple[int, str]]:
        return JournalCorrupt, (self.seq, self.reason)
