"""The sequencer: the exchange's one writer.

    submit(command) ──► queue ──► thread bulkex-sequencer: take what is
    queued, give each command the next seq, apply it to the core in memory
    into the open batch (stamped once, when it opens: the clock never goes
    back) and fold its events into the batch's projection rows
    ──► thread bulkex-committer: take the open batch whole as soon as it is
    free, write it in ONE transaction, commit
    ──► resolve each ticket with its Ack, then tell the listeners.

With ``committer_process`` (the default of ``from_settings``, BULKEX_COMMITTER_PROCESS) the
transactions are written by a process of their own (``exchange._committer``): the committer
thread hands each batch over as soon as fewer than IN_FLIGHT_MAX are unanswered, thread
bulkex-acknowledger takes the answers in order and acknowledges, and finished snapshot exports
go over once their seq is committed, written beside the batches.

The two threads form a pipeline with group commit: while batch N commits,
batch N+1 stays open and grows with everything that arrives (up to
batch_max_commands; beyond it the sequencer waits), so a batch is as large
as the load makes it and a command waits for at most one commit before its
own. The core is touched only by the first thread, the database only by the
second; still nothing is acknowledged before its commit. If a commit (or the core) fails, the writer
stops: every pending ticket fails with WriterStopped, new submissions are
refused, and the in-memory state is abandoned; a restart recovers from the
journal. A commit PostgreSQL does not answer within commit_timeout_ms (a hung
server, a partition) is cut by the store and fails like any other
(DatabaseTimeout). Exactly one writer per database: ``open`` takes the writer lock
(see ``_store``) and raises WriterLocked when it is held.

``execute`` is the synchronous path (tests, tools, bulk loads): the same
steps in the caller's thread, only while the threads are not running.

What travels: each submission is one queue entry, a *group* (the commands,
their journal records encoded in the submitter's thread, and how to answer:
one ticket, a ticket each, or one ticket for the whole group, see
``submit_batch``). The sequencing thread takes whole groups, so a gateway
that submits what it read from a socket in one call pays one hand-off and,
with ``submit_batch``, one ticket for all of it. Snapshots are exported by a
forked child (``BackgroundSnapshot``) and written with a later batch, so the
writer never stops for them (the synchronous path exports them in place).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

from exchange._codec import JournalRecordBody, encode_record, encode_records
from exchange._committer import CommitterProcess, pack
from exchange._core import Core
from exchange._db import upgrade
from exchange._errors import QueueFull, WriterStopped
from exchange._gc import Freezer, tune_collector
from exchange._projections import BatchProjection
from exchange._recovery import BackgroundSnapshot, RecoveryReport, encode_snapshot, recover
from exchange._settings import DEFAULT_COMMIT_TIMEOUT_MS, MAX_BATCH_COMMANDS, MAX_COMMIT_TIMEOUT_MS, Settings
from exchange._store import Batch, SnapshotRecord, Store
from exchange._ticket import Ticket
from exchange._warehouse_projection import WAREHOUSE_EVENT_KINDS, WarehouseRows
from matching import Event, Instrument, ListInstrument

__all__ = ["IN_FLIGHT_MAX", "SNAPSHOT_QUIET_FACTOR", "Ack", "Listener", "Sequencer"]

log = logging.getLogger("bulkex.sequencer")


class Ack(NamedTuple):
    """The answer to a command, sent only after its commit."""

    seq: int
    ts_ns: int
    events: list[Event]


Listener = Callable[[Sequence[tuple[Any, Ack]]], None]
"""Called in the writer thread after each commit with the batch's (command, ack) pairs."""

# A queue entry: (commands, their journal records, how to answer, answer):
_NO_ANSWER = 0  # execute(): the acks are returned
_ONE_TICKET = 1  # submit(): answer is a Ticket[Ack]
_TICKET_EACH = 2  # submit_many(): answer is a list[Ticket[Ack]]
_GROUP_TICKET = 3  # submit_batch(): answer is a Ticket[list[Ack]]
_Group = tuple[Sequence[Any], list[JournalRecordBody], int, Any]
_Work = tuple[list[_Group], list[Ack], Batch]

_STOP = object()

IN_FLIGHT_MAX = 2
"""Batches handed to the committer process and not yet answered, at most: one being written and
the next one being prepared meanwhile (its COPY text built while the database works)."""
SNAPSHOT_QUIET_FACTOR = 9
"""After a snapshot export that took T seconds, the next one waits at least this times T (and
snapshot_every_commands), so a child shares the writer's memory at most a tenth of the time: each
page the writer touches while a child exports is copied, and the child (at idle priority, see
``exchange._recovery``) takes the CPU time the exchange leaves."""


class Sequencer:
    def __init__(
        self,
        database_url: str,
        *,
        batch_max_commands: int = 4096,
        batch_max_wait_ms: int = 0,
        snapshot_every_commands: int = 100_000,
        queue_max_commands: int = 100_000,
        commit_timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS,
        clock: Callable[[], int] = time.time_ns,
        use_snapshots: bool = True,
        committer_process: bool = False,
    ) -> None:
        assert 1 <= batch_max_commands <= MAX_BATCH_COMMANDS, batch_max_commands
        assert batch_max_wait_ms >= 0, batch_max_wait_ms
        assert snapshot_every_commands >= 0, snapshot_every_commands
        assert queue_max_commands >= 1, queue_max_commands
        assert 0 <= commit_timeout_ms <= MAX_COMMIT_TIMEOUT_MS, commit_timeout_ms
        self.database_url = database_url
        self.batch_max_commands = batch_max_commands
        self.batch_max_wait_s = batch_max_wait_ms / 1000
        self.snapshot_every_commands = snapshot_every_commands
        self.queue_max_commands = queue_max_commands
        self.commit_timeout_ms = commit_timeout_ms
        self.clock = clock
        self.use_snapshots = use_snapshots
        self.committer_process = committer_process
        self.listeners: list[Listener] = []
        self.core = Core()
        self.last_seq = 0  # the last seq applied in memory
        self.committed_seq = 0  # the last seq committed (and acknowledged)
        self.last_ts_ns = 0
        self.last_snapshot_seq = 0
        self.recovery: RecoveryReport | None = None
        self._store: Store | None = None
        self._committer: CommitterProcess | None = None  # while the threads run, with committer_process
        self._started = threading.Event()  # the sequencing thread is ready (its committer process started)
        self._start_error: BaseException | None = None
        self._flight = threading.Condition()  # guards _in_flight and _flight_done
        self._in_flight: deque[_Work] = deque()  # handed to the committer process, not yet answered
        self._flight_done = False  # the acknowledger may stop once _in_flight is empty
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: str | None = None  # why the writer stopped, None while it runs
        self.freezer = Freezer(busy=self.exporting)  # the collector's policy while commands flow (exchange/_gc.py)
        self._snapshot_job: BackgroundSnapshot | None = None  # a snapshot being exported by a child
        self._next_export_s = 0.0  # no snapshot export starts before this (monotonic; SNAPSHOT_QUIET_FACTOR)
        self._queued = 0  # commands submitted and not yet taken by the sequencing thread
        self._queued_lock = threading.Lock()
        self._handoff = threading.Condition()  # guards _open and _closing
        self._open: _OpenBatch | None = None  # the batch being applied, until the committer takes it
        self._closing = False

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], int] = time.time_ns) -> Sequencer:
        return cls(
            settings.database_url,
            batch_max_commands=settings.batch_max_commands,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            snapshot_every_commands=settings.snapshot_every_commands,
            queue_max_commands=settings.queue_max_commands,
            commit_timeout_ms=settings.commit_timeout_ms,
            clock=clock,
            committer_process=settings.committer_process,
        )

    # ------------------------------------------------------------ lifecycle

    def open(self) -> RecoveryReport:
        """Take the writer lock, bring the schema up to date and recover the state."""
        assert self._store is None, "already open"
        store = Store(self.database_url, self.commit_timeout_ms)
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
        assert self._store is not None
        tune_collector()
        self._closing = False
        self._started.clear()
        if self.committer_process:
            self._store.disconnect()  # the data connection moves to the committer process
        self._thread = threading.Thread(target=self._run, name="bulkex-sequencer", daemon=True)
        self._thread.start()
        self._started.wait()
        error = self._start_error  # set by the sequencing thread before _started
        if error is not None:
            self._thread.join()
            self._thread = None
            self._stopped = f"the committer process did not start: {error!r}"
            raise error

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

    def exporting(self) -> bool:
        """A snapshot is being exported by a child process (sharing this one's memory)."""
        job = self._snapshot_job
        return job is not None and not job.done()

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
        self._check_open(1)
        record = encode_record(command)  # here: a command that cannot be journaled is refused at once
        ticket: Ticket[Ack] = Ticket()
        with self._queued_lock:
            self._queued += 1
        self._queue.put(((command,), [record], _ONE_TICKET, ticket))
        return ticket

    def submit_many(self, commands: Sequence[Any]) -> list[Ticket[Ack]]:
        """Queue several commands at once (one queue operation; they stay in order and
        share a batch), a ticket each."""
        commands = tuple(commands)  # the caller may reuse its list
        records = self._records(commands)
        tickets: list[Ticket[Ack]] = [Ticket() for _ in records]
        with self._queued_lock:
            self._queued += len(records)
        self._queue.put((commands, records, _TICKET_EACH, tickets))
        return tickets

    def submit_batch(self, commands: Sequence[Any]) -> Ticket[list[Ack]]:
        """Queue several commands at once with ONE ticket, resolved after their commit with
        their Acks in order (a gateway that read several requests from a connection answers
        them together: no ticket per command)."""
        commands = tuple(commands)  # the caller may reuse its list
        records = self._records(commands)
        ticket: Ticket[list[Ack]] = Ticket()
        with self._queued_lock:
            self._queued += len(records)
        self._queue.put((commands, records, _GROUP_TICKET, ticket))
        return ticket

    def submit_records(self, commands: Sequence[Any], records: list[JournalRecordBody]) -> Ticket[list[Ack]]:
        """``submit_batch`` for commands whose journal records were encoded elsewhere (the
        gateway's process, see ``exchange._writer``): `records[i]` must be `commands[i]`'s."""
        assert len(commands) == len(records), (len(commands), len(records))
        self._check_open(len(commands))
        ticket: Ticket[list[Ack]] = Ticket()
        with self._queued_lock:
            self._queued += len(records)
        self._queue.put((tuple(commands), records, _GROUP_TICKET, ticket))
        return ticket

    def execute(self, commands: Iterable[Any]) -> list[Ack]:
        """Sequence, apply and commit `commands` in the caller's thread, in
        batches of batch_max_commands; returns their Acks."""
        assert self._thread is None, "execute() is for a sequencer whose thread is not running"
        if self._stopped is not None:
            raise WriterStopped(self._stopped)
        assert self._store is not None, "open() the sequencer first"
        acks: list[Ack] = []
        batch: list[Any] = []
        for command in commands:
            batch.append(command)
            if len(batch) >= self.batch_max_commands:
                acks.extend(self._process(batch))
                batch = []
        if batch:
            acks.extend(self._process(batch))
        return acks

    def _check_open(self, count: int) -> None:
        if self._stopped is not None:
            raise WriterStopped(self._stopped)
        assert self._thread is not None, "start() the sequencer before submitting"
        if self._queued + count > self.queue_max_commands:
            raise QueueFull(self.queue_max_commands)

    def _records(self, commands: Sequence[Any]) -> list[JournalRecordBody]:
        """The journal records of `commands`, in the submitter's thread (refusing what cannot be journaled)."""
        self._check_open(len(commands))
        return encode_records(commands)

    # --------------------------------------------------------------- writer

    def _run(self) -> None:
        """Stage 1 (thread bulkex-sequencer): take groups, sequence them and apply them into the
        open batch, which the committer takes whole whenever it is free (group commit: while one
        batch commits, the next one grows with everything that arrives meanwhile)."""
        queue = self._queue
        limit = self.batch_max_commands
        wait_s = self.batch_max_wait_s
        handoff = self._handoff
        self._start_error = None
        if self.committer_process:
            # Started here: the process dies with the thread that started it (PR_SET_PDEATHSIG),
            # and this thread lives exactly as long as the writer.
            assert self._store is not None
            process = CommitterProcess(self.database_url, self.commit_timeout_ms, self._store.lock_fd)
            try:
                process.start()
            except BaseException as exc:
                self._start_error = exc
                self._started.set()
                return
            self._committer = process
        self._started.set()
        acknowledger = None
        if self._committer is not None:
            self._flight_done = False
            acknowledger = threading.Thread(target=self._acknowledge_loop, name="bulkex-acknowledger", daemon=True)
            acknowledger.start()
        committer = threading.Thread(target=self._commit_loop, name="bulkex-committer", daemon=True)
        committer.start()
        stopping = False
        freezer = self.freezer
        freezer.start()
        while not stopping:
            group = queue.get()
            if group is _STOP:
                break
            groups: list[_Group] = [group]
            size = len(group[0])
            room = max(1, limit - self._open_size())
            deadline = time.monotonic() + wait_s
            while size < room:  # a group stays whole (a batch may exceed the limit by one group)
                try:
                    if wait_s:
                        remaining = deadline - time.monotonic()
                        group = queue.get(timeout=remaining) if remaining > 0 else queue.get_nowait()
                    else:
                        group = queue.get_nowait()
                except Empty:
                    break
                if group is _STOP:
                    stopping = True
                    break
                groups.append(group)
                size += len(group[0])
            with self._queued_lock:
                self._queued -= size
            if self._stopped is not None:
                # Stopped: answer everything still arriving (until close) with the reason.
                self._fail_groups(groups)
                continue
            with handoff:
                while self._open is not None and self._open.size >= limit:
                    handoff.wait()  # the open batch is full: wait for the committer to take it
                if self._open is None:
                    self._open = self._new_batch()
                try:
                    self._open.add(groups, in_background=True)
                except BaseException as exc:
                    self._stop(exc)
                    self._fail_groups(groups)
                handoff.notify_all()
            freezer.applied(size)
        with handoff:
            self._closing = True
            handoff.notify_all()
        committer.join()
        if acknowledger is not None:
            with self._flight:
                self._flight_done = True
                self._flight.notify_all()
            acknowledger.join()
            self._fail_in_flight()  # only after a failure can anything be left
        self._finish_snapshot()
        if self._committer is not None:
            self._committer.close()
            self._committer = None

    def _open_size(self) -> int:
        batch = self._open
        return 0 if batch is None else batch.size

    def _commit_loop(self) -> None:
        """Stage 2 (thread bulkex-committer): take the open batch, write it in one transaction,
        then the acks. With the committer process: hand the batch over as soon as fewer than
        IN_FLIGHT_MAX are being written (the acks come in thread bulkex-acknowledger)."""
        handoff = self._handoff
        flight = self._flight
        pipelined = self._committer is not None
        while True:
            if pipelined:
                with flight:
                    while len(self._in_flight) >= IN_FLIGHT_MAX and self._stopped is None:
                        flight.wait()
            with handoff:
                while self._open is None and not self._closing:
                    handoff.wait()
                batch = self._open
                self._open = None
                handoff.notify_all()
            if batch is None:
                break
            if self._stopped is not None:
                self._fail_groups(batch.groups)
                continue
            try:
                work = batch.finish()
                if pipelined:
                    self._send(work)
                else:
                    self._commit(work)
            except BaseException as exc:
                self._stop(exc)
                self._fail_groups(batch.groups)
        with flight:  # closing: every batch handed over answered (or failed) first
            while self._in_flight and self._stopped is None:
                flight.wait()

    def _send(self, work: _Work) -> None:
        """Hand a batch to the committer process (its acks follow in ``_acknowledge_loop``).
        Raises, with nothing handed over, when the writer stopped or the batch cannot be packed
        (the commit loop then fails the batch); once handed over, the batch is answered or
        failed by the acknowledger alone."""
        committer = self._committer
        assert committer is not None
        data = pack(work[2])
        record = self._finished_snapshot(self.committed_seq)
        if record is not None:  # its seq is committed: written beside the batches (send_snapshot)
            committer.send_snapshot(record)
        with self._flight:
            if self._stopped is not None:  # the acknowledger failed what was in flight: not this one
                raise WriterStopped(self._stopped)
            self._in_flight.append(work)  # before sending: the answer finds it
            self._flight.notify_all()
        try:
            committer.send_packed(data)
        except BaseException as exc:
            self._stop(exc)
            committer.abort()  # the acknowledger's receive ends at once and fails what is in flight, this too

    def _acknowledge_loop(self) -> None:
        """Thread bulkex-acknowledger (with the committer process): the answers of the batches
        handed over, in order; each committed batch acknowledged, a failure stops the writer
        and fails every batch in flight (the committer process writes nothing after it)."""
        committer = self._committer
        assert committer is not None
        flight = self._flight
        try:
            while True:
                with flight:
                    while not self._in_flight and not self._flight_done:
                        flight.wait()
                    if not self._in_flight:
                        return
                    work = self._in_flight[0]
                committer.receive()
                self._acknowledge(work)
                with flight:
                    self._in_flight.popleft()
                    flight.notify_all()
        except BaseException as exc:  # a failed commit, a dead committer, or a failing ticket callback
            self._stop(exc)
            committer.abort()  # nothing more is written
            self._fail_in_flight()

    def _fail_in_flight(self) -> None:
        """Fail every batch handed over and not answered (after the writer stopped)."""
        with self._flight:
            failed = list(self._in_flight)
            self._in_flight.clear()
            self._flight.notify_all()
        for groups, _acks, _rows in failed:
            self._fail_groups(groups)

    def _stop(self, exc: BaseException) -> None:
        """A commit or the core failed: the core is ahead of the journal, so stop for good."""
        if self._stopped is None:
            log.error("the writer stopped: %r", exc)
            self._stopped = f"the writer failed: {exc!r}"

    def _fail_groups(self, groups: list[_Group]) -> None:
        error = WriterStopped(self._stopped or "stopped")
        for _commands, _records, how, answer in groups:
            tickets = answer if how == _TICKET_EACH else [answer] if how != _NO_ANSWER else []
            for ticket in tickets:
                if not ticket.done():
                    ticket.set_exception(error)

    def _process(self, commands: list[Any]) -> list[Ack]:
        """Apply and commit one batch in the caller's thread (the synchronous path)."""
        records = [encode_record(command) for command in commands]
        batch = self._new_batch()
        try:
            batch.add([(commands, records, _NO_ANSWER, None)], in_background=False)
            work = batch.finish()
            self._commit(work)
        except BaseException as exc:
            self._stop(exc)
            raise
        return work[1]

    def _new_batch(self) -> _OpenBatch:
        """A batch starting after the last seq, stamped now (the clock never goes back)."""
        ts_ns = max(self.clock(), self.last_ts_ns)
        self.last_ts_ns = ts_ns
        return _OpenBatch(self, self.last_seq + 1, ts_ns)

    def _commit(self, work: _Work) -> None:
        """Write a batch in this thread, then acknowledge it."""
        store = self._store
        assert store is not None
        rows = work[2]
        if rows.snapshot is None:  # a finished export goes with the batch: its seq is journaled by it or before
            rows.snapshot = self._finished_snapshot(rows.last_seq)
        store.write(rows)
        self._acknowledge(work)

    def _finished_snapshot(self, up_to_seq: int) -> SnapshotRecord | None:
        """The background export, once it finished, if its seq is at most `up_to_seq` (None:
        none, not yet, or it failed); the next export then waits its quiet spell."""
        job = self._snapshot_job
        if job is None or not job.done() or job.seq > up_to_seq:
            return None
        self._snapshot_job = None
        self._next_export_s = job.finished_s + SNAPSHOT_QUIET_FACTOR * (job.finished_s - job.started_s)
        return job.result()

    def _acknowledge(self, work: _Work) -> None:
        """A committed batch: its tickets resolved with their acks, then the listeners told."""
        groups, acks, rows = work
        self.committed_seq = rows.last_seq
        index = 0
        for commands, _records, how, answer in groups:
            count = len(commands)
            if how == _ONE_TICKET:
                answer.set_result(acks[index])
            elif how == _TICKET_EACH:
                for ticket, ack in zip(answer, acks[index : index + count], strict=True):
                    ticket.set_result(ack)
            elif how == _GROUP_TICKET:
                answer.set_result(acks[index : index + count])
            index += count
        if self.listeners:
            pairs = list(zip([command for group in groups for command in group[0]], acks, strict=True))
            for listener in self.listeners:
                try:
                    listener(pairs)
                except Exception:
                    log.exception("a sequencer listener failed")

    def _finish_snapshot(self) -> None:
        """At close: wait for a snapshot being exported and write it when its seq is committed."""
        job = self._snapshot_job
        self._snapshot_job = None
        if job is None:
            return
        record = job.result()
        if record is None or self._stopped is not None or self._store is None or job.seq > self.committed_seq:
            return
        try:
            writer = self._committer or self._store
            writer.write(Batch(self.committed_seq + 1, self.last_ts_ns, [], [], [], [], record))
        except Exception:
            log.exception("the snapshot at seq %d could not be written", job.seq)


class _OpenBatch:
    """A batch being applied: commands are sequenced and applied into it (in the sequencing
    thread) until the committer takes it; ``finish`` gives its rows."""

    __slots__ = (
        "sequencer", "first_seq", "ts_ns", "groups", "records", "acks", "projection", "warehouse_rows", "size",
        "snapshot",
    )  # fmt: skip

    def __init__(self, sequencer: Sequencer, first_seq: int, ts_ns: int) -> None:
        self.sequencer = sequencer
        self.first_seq = first_seq
        self.ts_ns = ts_ns
        self.groups: list[_Group] = []
        self.records: list[JournalRecordBody] = []
        self.acks: list[Ack] = []
        self.projection = BatchProjection()
        self.warehouse_rows = WarehouseRows()
        self.size = 0
        self.snapshot: SnapshotRecord | None = None

    def add(self, groups: list[_Group], in_background: bool) -> None:
        """Sequence and apply `groups` (stamped with the batch's ts_ns)."""
        owner = self.sequencer
        ts_ns = self.ts_ns
        seq = owner.last_seq
        assert seq == self.first_seq + self.size - 1, (seq, self.first_seq, self.size)
        apply = owner.core.apply
        append = self.acks.append
        outs: list[list[Event]] = []
        keep = outs.append
        self.groups.extend(groups)
        for group in groups:
            self.records.extend(group[1])
            for command in group[0]:
                seq += 1
                out: list[Event] = []
                apply(command, seq, ts_ns, out)
                keep(out)
                append(Ack(seq, ts_ns, out))
        owner.last_seq = seq
        self.size = seq - self.first_seq + 1
        assert len(self.records) == self.size, (len(self.records), self.size)
        warehouse_events: list[Event] = []  # found by the orders' pass: most batches have none
        self.projection.add_all(outs, ts_ns, WAREHOUSE_EVENT_KINDS, warehouse_events)
        if warehouse_events:  # here: the rows as the core now stands
            self.warehouse_rows.add_all((warehouse_events,), owner.core.warehouse)
        if owner.snapshot_every_commands and seq - owner.last_snapshot_seq >= owner.snapshot_every_commands:
            if in_background and hasattr(os, "fork"):
                # one at a time, and a quiet spell after each: while a child exports, each page the
                # writer touches is copied (copy-on-write), so an export of a large state slows it
                if owner._snapshot_job is None and time.monotonic() >= owner._next_export_s:
                    try:
                        owner._snapshot_job = BackgroundSnapshot(owner.core, seq, ts_ns)
                    except OSError:  # no fork (memory, process limit): the journal holds everything
                        log.exception("the snapshot at seq %d could not start", seq)
                    owner.last_snapshot_seq = seq
            else:
                state_hash, compressed = encode_snapshot(owner.core)
                self.snapshot = (seq, ts_ns, state_hash, compressed)
                owner.last_snapshot_seq = seq

    def finish(self) -> _Work:
        projection = self.projection
        rows = Batch(self.first_seq, self.ts_ns, self.records, projection.order_inserts(),
                     projection.order_updates(), projection.trades, self.snapshot, self.warehouse_rows)  # fmt: skip
        return self.groups, self.acks, rows
