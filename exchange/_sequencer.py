"""The sequencer: the exchange's one writer.

    submit(command) ──► queue ──► thread bulkex-sequencer: take a batch (up
    to batch_max_commands), stamp it (one clock read per batch, never going
    back), give each command the next seq, apply it to the core in memory,
    derive the journal and projection rows (and a snapshot every N commands)
    ──► thread bulkex-committer: write them in ONE transaction, commit
    ──► resolve each ticket with its Ack, then tell the listeners.

The two threads form a pipeline: batch N+1 is applied while batch N
commits (at most COMMITS_IN_FLIGHT batches wait). The core is touched only
by the first thread, the database only by the second; still nothing is
acknowledged before its commit. If a commit (or the core) fails, the writer
stops: every pending ticket fails with WriterStopped, new submissions are
refused, and the in-memory state is abandoned; a restart recovers from the
journal. Exactly one writer per database: ``open`` takes the writer lock
(see ``_store``) and raises WriterLocked when it is held.

``execute`` is the synchronous path (tests, tools, bulk loads): the same
steps in the caller's thread, only while the threads are not running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from queue import Empty, Queue, SimpleQueue
from typing import Any, NamedTuple

from exchange._codec import COMMANDS, MAX_BODY_BYTES, checksum, encode
from exchange._core import Core
from exchange._db import upgrade
from exchange._errors import QueueFull, WriterStopped
from exchange._projections import BatchProjection
from exchange._recovery import RecoveryReport, encode_snapshot, recover
from exchange._settings import MAX_BATCH_COMMANDS, Settings
from exchange._store import Batch, Store
from exchange._ticket import Ticket
from matching import Event, Instrument, ListInstrument

__all__ = ["Ack", "Listener", "Sequencer"]

log = logging.getLogger("bulkex.sequencer")


class Ack(NamedTuple):
    """The answer to a command, sent only after its commit."""

    seq: int
    ts_ns: int
    events: list[Event]


Listener = Callable[[Sequence[tuple[Any, Ack]]], None]
"""Called in the writer thread after each commit with the batch's (command, ack) pairs."""

_Item = tuple[Any, str, bytes, int, "Ticket[Ack] | None"]  # command, kind, body, crc32, ticket
_Work = tuple[list[_Item], list[Ack], Batch]

_STOP = object()

COMMITS_IN_FLIGHT = 2
"""Applied batches waiting for their commit, at most: the sequencer applies
batch N+1 while batch N commits; more would only add latency and memory."""


class Sequencer:
    def __init__(
        self,
        database_url: str,
        *,
        batch_max_commands: int = 4096,
        batch_max_wait_ms: int = 0,
        snapshot_every_commands: int = 100_000,
        queue_max_commands: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
        use_snapshots: bool = True,
    ) -> None:
        assert 1 <= batch_max_commands <= MAX_BATCH_COMMANDS, batch_max_commands
        assert batch_max_wait_ms >= 0, batch_max_wait_ms
        assert snapshot_every_commands >= 0, snapshot_every_commands
        assert queue_max_commands >= 1, queue_max_commands
        self.database_url = database_url
        self.batch_max_commands = batch_max_commands
        self.batch_max_wait_s = batch_max_wait_ms / 1000
        self.snapshot_every_commands = snapshot_every_commands
        self.queue_max_commands = queue_max_commands
        self.clock = clock
        self.use_snapshots = use_snapshots
        self.listeners: list[Listener] = []
        self.core = Core()
        self.last_seq = 0  # the last seq applied in memory
        self.committed_seq = 0  # the last seq committed (and acknowledged)
        self.last_ts_ns = 0
        self.last_snapshot_seq = 0
        self.recovery: RecoveryReport | None = None
        self._store: Store | None = None
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: str | None = None  # why the writer stopped, None while it runs

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], int] = time.time_ns) -> Sequencer:
        return cls(
            settings.database_url,
            batch_max_commands=settings.batch_max_commands,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            snapshot_every_commands=settings.snapshot_every_commands,
            queue_max_commands=settings.queue_max_commands,
            clock=clock,
        )

    # ------------------------------------------------------------ lifecycle

    def open(self) -> RecoveryReport:
        """Take the writer lock, bring the schema up to date and recover the state."""
        assert self._store is None, "already open"
        store = Store(self.database_url)
        try:
            store.lock()
            upgrade(self.database_url)
            store.connect()
            core, report = recover(store, self.use_snapshots)
        except BaseException:
            store.close()
            raise
        self._store = store
        self.core = core
        self.recovery = report
        self.last_seq = report.last_seq
        self.committed_seq = report.last_seq
        self.last_ts_ns = report.last_ts_ns
        self.last_snapshot_seq = report.last_seq  # count commands since the recovered state
        self._stopped = None
        return report

    def start(self) -> None:
        """Start the writer thread (opening first when needed)."""
        if self._store is None:
            self.open()
        assert self._thread is None, "already started"
        self._thread = threading.Thread(target=self._run, name="bulkex-sequencer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Sequence what is queued, stop the thread, release the lock."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._stopped is None:
            self._stopped = "closed"
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Sequencer:
        if self._store is None:
            self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._stopped is None

    def state_hash(self) -> str:
        return self.core.state_hash()

    def list_on_first_start(self, instruments: Iterable[Instrument]) -> int:
        """On an empty journal, journal a ListInstrument per instrument (in
        the caller's thread, before start()); returns how many were listed."""
        if self.last_seq != 0:
            return 0
        return len(self.execute(ListInstrument(instrument) for instrument in instruments))

    # --------------------------------------------------------------- submit

    def submit(self, command: Any) -> Ticket[Ack]:
        """Queue a command; the ticket resolves with its Ack after commit."""
        if self._stopped is not None:
            raise WriterStopped(self._stopped)
        assert self._thread is not None, "start() the sequencer before submitting"
        if self._queue.qsize() >= self.queue_max_commands:
            raise QueueFull(self.queue_max_commands)
        kind, body, crc = self._encode(command)
        ticket: Ticket[Ack] = Ticket()
        self._queue.put((command, kind, body, crc, ticket))
        return ticket

    def submit_many(self, commands: Sequence[Any]) -> list[Ticket[Ack]]:
        """Queue several commands at once (one queue operation; they stay in order and
        may share a batch)."""
        if self._stopped is not None:
            raise WriterStopped(self._stopped)
        assert self._thread is not None, "start() the sequencer before submitting"
        if self._queue.qsize() + len(commands) > self.queue_max_commands:
            raise QueueFull(self.queue_max_commands)
        encode_one = self._encode
        tickets: list[Ticket[Ack]] = [Ticket() for _ in commands]
        items: list[_Item] = [
            (command, *encode_one(command), ticket) for command, ticket in zip(commands, tickets, strict=True)
        ]
        self._queue.put(items)
        return tickets

    def execute(self, commands: Iterable[Any]) -> list[Ack]:
        """Sequence, apply and commit `commands` in the caller's thread, in
        batches of batch_max_commands; returns their Acks."""
        assert self._thread is None, "execute() is for a sequencer whose thread is not running"
        if self._stopped is not None:
            raise WriterStopped(self._stopped)
        assert self._store is not None, "open() the sequencer first"
        acks: list[Ack] = []
        batch: list[_Item] = []
        for command in commands:
            batch.append((command, *self._encode(command), None))
            if len(batch) >= self.batch_max_commands:
                acks.extend(self._process(batch))
                batch = []
        if batch:
            acks.extend(self._process(batch))
        return acks

    @staticmethod
    def _encode(command: Any) -> tuple[str, bytes, int]:
        """(kind, body, crc32), in the submitter's thread: a command that cannot be journaled is refused here."""
        if COMMANDS.get(getattr(command, "KIND", None) or "") is not type(command):
            raise TypeError(f"{type(command).__name__} is not a registered command")
        kind, body = encode(command)
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"{kind} command encodes to {len(body)} bytes, more than {MAX_BODY_BYTES}")
        return kind, body, checksum(kind, body)

    # --------------------------------------------------------------- writer

    def _run(self) -> None:
        """Stage 1 (thread bulkex-sequencer): batch, sequence, apply, build rows."""
        queue = self._queue
        limit = self.batch_max_commands
        wait_s = self.batch_max_wait_s
        commits: Queue[Any] = Queue(maxsize=COMMITS_IN_FLIGHT)
        committer = threading.Thread(target=self._commit_loop, args=(commits,), name="bulkex-committer", daemon=True)
        committer.start()
        stopping = False
        while not stopping:
            item = queue.get()
            if item is _STOP:
                break
            batch = item if type(item) is list else [item]
            deadline = time.monotonic() + wait_s
            while len(batch) < limit:
                try:
                    if wait_s:
                        remaining = deadline - time.monotonic()
                        item = queue.get(timeout=remaining) if remaining > 0 else queue.get_nowait()
                    else:
                        item = queue.get_nowait()
                except Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if type(item) is list:
                    batch.extend(item)  # a submit_many group stays whole (a batch may exceed the limit by it)
                else:
                    batch.append(item)
            if self._stopped is not None:
                # Stopped: answer everything still arriving (until close) with the reason.
                self._fail_items(batch)
                continue
            try:
                work = self._apply(batch)
            except BaseException as exc:
                self._stop(exc)
                self._fail_items(batch)
                continue
            commits.put(work)
        commits.put(_STOP)
        committer.join()

    def _commit_loop(self, commits: Queue[Any]) -> None:
        """Stage 2 (thread bulkex-committer): one transaction per batch, then the acks."""
        while True:
            work = commits.get()
            if work is _STOP:
                return
            if self._stopped is not None:
                self._fail_items(work[0])
                continue
            try:
                self._commit(work)
            except BaseException as exc:
                self._stop(exc)
                self._fail_items(work[0])

    def _stop(self, exc: BaseException) -> None:
        """A commit or the core failed: the core is ahead of the journal, so stop for good."""
        if self._stopped is None:
            log.error("the writer stopped: %r", exc)
            self._stopped = f"the writer failed: {exc!r}"

    def _fail_items(self, batch: list[Any]) -> None:
        error = WriterStopped(self._stopped or "stopped")
        for item in batch:
            ticket = item[4]
            if ticket is not None and not ticket.done():
                ticket.set_exception(error)

    def _process(self, batch: list[_Item]) -> list[Ack]:
        """Apply and commit one batch in the caller's thread (the synchronous path)."""
        try:
            work = self._apply(batch)
            self._commit(work)
        except BaseException as exc:
            self._stop(exc)
            raise
        return work[1]

    def _apply(self, batch: list[_Item]) -> _Work:
        ts_ns = max(self.clock(), self.last_ts_ns)
        seq = self.last_seq
        apply = self.core.apply
        projection = BatchProjection()
        add = projection.add
        journal: list[tuple[int, int, str, bytes, int]] = []
        acks: list[Ack] = []
        for command, kind, body, crc, _ticket in batch:
            seq += 1
            out: list[Event] = []
            apply(command, seq, ts_ns, out)
            add(out, ts_ns)
            journal.append((seq, ts_ns, kind, body, crc))
            acks.append(Ack(seq, ts_ns, out))
        snapshot = None
        if self.snapshot_every_commands and seq - self.last_snapshot_seq >= self.snapshot_every_commands:
            state_hash, compressed = encode_snapshot(self.core)
            snapshot = (seq, ts_ns, state_hash, compressed)
            self.last_snapshot_seq = seq
        self.last_seq = seq
        self.last_ts_ns = ts_ns
        rows = Batch(journal, projection.order_inserts(), projection.order_updates(), projection.trades, snapshot)
        return batch, acks, rows

    def _commit(self, work: _Work) -> None:
        batch, acks, rows = work
        store = self._store
        assert store is not None
        store.write(rows)
        self.committed_seq = acks[-1].seq
        for item, ack in zip(batch, acks, strict=True):
            ticket = item[4]
            if ticket is not None:
                ticket.set_result(ack)
        if self.listeners:
            pairs = [(item[0], ack) for item, ack in zip(batch, acks, strict=True)]
            for listener in self.listeners:
                try:
                    listener(pairs)
                except Exception:
                    log.exception("a sequencer listener failed")
