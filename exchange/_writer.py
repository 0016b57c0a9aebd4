"""The sequencer in a process of its own, for a serving process.

    gateway process                                  writer process
    ───────────────                                  ──────────────
    WriterProcess.submit_batch(commands)
      journal records encoded here ──("submit", records)──► decoded to commands
      (a command that cannot be journaled                   Sequencer.submit_records:
      is refused at once, as in-process)                    apply, journal, commit
    reader thread ◄──("acks", [Ack, ...])── listener, after each commit
      pairs each Ack with its command, resolves tickets,
      calls the listeners: the same (command, Ack) pairs

One interpreter lock per process: the gateway's event loop (frames, answers,
feeds) and the writer's threads (core, journal, commit) no longer take turns
on one core (``docs/architecture.md``). Everything the gateway uses of a
``Sequencer`` is here with the same meaning: ``open`` (recovery in the
writer), ``list_on_first_start``, ``core`` (a copy made from a snapshot of
the writer's core at the start, for the gateway's read models), ``start``,
``submit``/``submit_many``/``submit_batch`` with their tickets and
``QueueFull``/``WriterStopped``, ``listeners``, ``running``, ``close``.

What travels is what the journal holds: the records (kind, body, crc32)
decode in the writer exactly as recovery replays them, so the writer
applies what it journals. Records and acks travel as ``marshal`` data (plain
tuples, ints and strings: about twice as fast as pickle both ways); the few
messages of the start-up dialogue are pickled. Answers come back in submission order (one
submitter, one queue), so they are paired by position, not by id.

Nothing acknowledged is lost: an Ack is sent only after its commit, and a
command counts as acknowledged only when its Ack arrives. If the writer
process dies (or its pipe breaks), the proxy stops: pending tickets fail
with WriterStopped and ``running`` turns false, as when an in-process
writer stops. The writer dies with its gateway (``PR_SET_PDEATHSIG`` on
Linux; elsewhere it stops when the pipe closes), so a killed server never
leaves a writer holding the journal's lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from exchange._child import child_environment, die_with_parent, exit_status, portable, reap
from exchange._codec import JournalRecordBody, decode, encode_records
from exchange._core import Core
from exchange._errors import QueueFull, WriterLocked, WriterStopped
from exchange._gc import Freezer, serving_process
from exchange._instruments import load_instruments
from exchange._recovery import RecoveryReport, decode_snapshot, encode_snapshot
from exchange._sequencer import Ack, Listener, Sequencer
from exchange._settings import Settings
from exchange._ticket import Ticket

__all__ = ["LOCK_WAIT_S", "START_TIMEOUT_S", "WriterProcess", "writer_main"]

log = logging.getLogger("bulkex.writer")

START_TIMEOUT_S = 600.0
"""How long ``open`` waits for the writer's recovery (a long journal without a snapshot replays)."""
LOCK_WAIT_S = 10.0
"""How long a starting writer retries a held writer lock (the writer of a server killed a moment
ago is still going away)."""

_ONE = 1  # submit(): a Ticket[Ack]
_EACH = 2  # submit_many(): a list of Ticket[Ack]
_GROUP = 3  # submit_batch(): a Ticket[list[Ack]]


_PICKLED = b"P"
_ACKS = b"A"
_SUBMIT = b"S"
_new_ack = tuple.__new__


def _write(conn: Connection, lock: threading.Lock, data: bytes) -> None:
    """One whole message on the pipe (the lock keeps messages of two threads apart)."""
    with lock:
        conn.send_bytes(data)


def _send(conn: Connection, lock: threading.Lock, message: Any) -> None:
    _write(conn, lock, _PICKLED + pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _encode_acks(acks: list[Ack]) -> bytes:
    """A batch's acks as marshal data (ints, strings, tuples: twice as fast as pickling the Ack
    tuples both ways; the core's events hold plain values only, rejection codes included:
    tests/test_exchange_writer_process.py), pickled should an event ever hold anything else."""
    try:
        return _ACKS + marshal.dumps([tuple(ack) for ack in acks])
    except ValueError:
        return _PICKLED + pickle.dumps(("acks", acks), pickle.HIGHEST_PROTOCOL)


def _recv(conn: Connection) -> Any:
    """The next message: ("acks", [Ack, ...]), ("submit", records) or a pickled tuple."""
    # The peer is this exchange's other process, over a socket pair no one else holds.
    data = conn.recv_bytes()
    head = data[:1]
    if head == _ACKS:
        return "acks", [_new_ack(Ack, values) for values in marshal.loads(memoryview(data)[1:])]  # noqa: S302
    if head == _SUBMIT:
        return "submit", marshal.loads(memoryview(data)[1:])  # noqa: S302
    return pickle.loads(memoryview(data)[1:])  # noqa: S301


class WriterProcess:
    """A ``Sequencer`` running in a child process (see the module's text)."""

    def __init__(self, settings: Settings, lock_wait_s: float = LOCK_WAIT_S) -> None:
        assert lock_wait_s >= 0, lock_wait_s
        self.settings = settings
        self.lock_wait_s = lock_wait_s
        self.queue_max_commands = settings.queue_max_commands
        self.listeners: list[Listener] = []
        self.freezer = Freezer()  # this process's collector policy (no commands: sweeps for growth)
        self.recovery: RecoveryReport | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()  # guards _groups, _in_flight and _stopped
        self._groups: deque[tuple[tuple[Any, ...], int, Any]] = deque()  # (commands, how, answer)
        self._partial: list[Ack] = []  # acks of the oldest group, while a batch split it
        self._in_flight = 0
        self._stopped: str | None = "not started"
        self._reader: threading.Thread | None = None
        self._core: Core | None = None
        self._closed = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterProcess:
        return cls(settings)

    # ------------------------------------------------------------ lifecycle

    def open(self) -> RecoveryReport:
        """Start the writer process; it takes the writer lock and recovers. Raises what its
        ``Sequencer.open`` raised (WriterLocked, a database error as RuntimeError). Call it from a
        thread that lives as long as the writer (the event loop's): the writer is killed when the
        thread that started it ends (PR_SET_PDEATHSIG follows the thread, not the process)."""
        assert self._process is None, "already open"
        parent, child = socket.socketpair()
        env = child_environment()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from exchange._writer import writer_main; writer_main()",
                 str(child.fileno()), str(os.getpid()), str(self.lock_wait_s), self.settings.model_dump_json()],
                pass_fds=(child.fileno(),),
                env=env,
            )  # fmt: skip
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        try:
            kind, value = self._call(None, START_TIMEOUT_S)  # the writer reports its recovery unasked
        except BaseException:
            self._abandon()
            raise
        assert kind == "opened", kind
        report: RecoveryReport = value
        self.recovery = report
        return report

    def list_on_first_start(self, _instruments: Any = None) -> int:
        """On an empty journal, list the instruments of the settings' instruments file."""
        _kind, listed = self._call(("list",), START_TIMEOUT_S)
        assert isinstance(listed, int)
        return listed

    @property
    def core(self) -> Core:
        """A copy of the writer's core made from its snapshot before ``start``: the state at the
        start, for the gateway's read models and set-up code; unlike ``Sequencer.core`` it does
        not follow the commands after (the gateway follows them through the listeners)."""
        if self._core is None:
            _kind, (seq, state_hash, compressed) = self._call(("core",), START_TIMEOUT_S)
            self._core = decode_snapshot(seq, state_hash, compressed)
        return self._core

    def start(self) -> None:
        if self._process is None:
            self.open()
        assert self._reader is None, "already started"
        _ = self.core  # the copy of the state at the start (what ``core`` gives from now on)
        self._call(("start",), START_TIMEOUT_S)
        self._stopped = None
        self._reader = threading.Thread(target=self._read, name="bulkex-writer-reader", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Let the writer sequence and commit what is queued, then stop it."""
        conn, process = self._conn, self._process
        if conn is None or process is None:
            return
        with contextlib.suppress(OSError):
            _send(conn, self._send_lock, ("close",))
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        else:
            with contextlib.suppress(EOFError, OSError):
                while _recv(conn)[0] != "closed":
                    pass
        reap(process, START_TIMEOUT_S)
        conn.close()
        self._conn = None
        self._process = None
        self._stop("closed")

    def _abandon(self) -> None:
        """After a failed start: the writer process is ended and reaped, the pipe closed."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            reap(process, 5)

    def __enter__(self) -> WriterProcess:
        if self._process is None:
            self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._reader is not None and self._stopped is None

    def _call(self, request: tuple[Any, ...] | None, timeout_s: float) -> tuple[str, Any]:
        """A request of the start-up dialogue (None: only its answer), answered before ``start``."""
        conn = self._conn
        assert conn is not None
        assert self._reader is None
        if request is not None:
            _send(conn, self._send_lock, request)
        if not conn.poll(timeout_s):
            what = "open" if request is None else request[0]
            raise TimeoutError(f"the writer process did not answer {what!r} in {timeout_s:.0f} s")
        try:
            kind, value = _recv(conn)
        except (EOFError, OSError):
            raise RuntimeError(f"the writer process exited (status {exit_status(self._process)})") from None
        if kind == "error":
            raise value
        return kind, value

    # --------------------------------------------------------------- submit

    def submit(self, command: Any) -> Ticket[Ack]:
        ticket: Ticket[Ack] = Ticket()
        self._submit((command,), _ONE, ticket)
        return ticket

    def submit_many(self, commands: Sequence[Any]) -> list[Ticket[Ack]]:
        commands = tuple(commands)
        tickets: list[Ticket[Ack]] = [Ticket() for _ in commands]
        self._submit(commands, _EACH, tickets)
        return tickets

    def submit_batch(self, commands: Sequence[Any]) -> Ticket[list[Ack]]:
        ticket: Ticket[list[Ack]] = Ticket()
        self._submit(tuple(commands), _GROUP, ticket)
        return ticket

    def _submit(self, commands: tuple[Any, ...], how: int, answer: Any) -> None:
        conn = self._conn
        if self._stopped is not None or conn is None:
            raise WriterStopped(self._stopped or "closed")
        assert self._reader is not None, "start() the writer before submitting"
        if not commands:  # nothing to answer later: an empty group holds no place in the answers' order
            if how == _GROUP:
                answer.set_result([])
            return
        records = encode_records(commands)  # here: a command that cannot be journaled is refused at once
        data = _SUBMIT + marshal.dumps(records)  # (kind, body, crc32): plain values
        with self._send_lock:  # the groups' order is the order they are sent in
            with self._state_lock:
                if self._in_flight + len(commands) > self.queue_max_commands:
                    raise QueueFull(self.queue_max_commands)
                self._in_flight += len(commands)
                self._groups.append((commands, how, answer))
            try:
                conn.send_bytes(data)
            except OSError as exc:
                failed = exc
            else:
                return
        self._stop(f"the writer process is gone ({failed})")
        raise WriterStopped(self._stopped or "closed")

    # --------------------------------------------------------------- answers

    def _read(self) -> None:
        """Thread bulkex-writer-reader: acks in, tickets resolved, listeners told."""
        conn = self._conn
        assert conn is not None
        reason = "the writer process exited"
        try:
            while True:
                kind, value = _recv(conn)
                if kind == "acks":
                    self._acknowledge(value)
                elif kind == "stopped":
                    reason = value
                    self._stop(value)
                elif kind == "closed":
                    reason = "closed"
                    break
        except (EOFError, OSError) as exc:
            reason = f"the writer process exited ({type(exc).__name__})"
        except Exception:
            log.exception("the writer process's answer could not be read")
            reason = "the writer process's answer could not be read"
        self._stop(reason)

    def _acknowledge(self, acks: list[Ack]) -> None:
        """Pair a committed batch's acks with the oldest groups (tickets resolved and listeners
        called outside the lock: a callback may submit again)."""
        done: list[tuple[tuple[Any, ...], int, Any, list[Ack]]] = []
        pairs: list[tuple[Any, Ack]] = []
        with self._state_lock:
            partial = self._partial
            for ack in acks:
                commands, how, answer = self._groups[0]
                pairs.append((commands[len(partial)], ack))
                partial.append(ack)
                if len(partial) == len(commands):
                    self._groups.popleft()
                    done.append((commands, how, answer, partial))
                    partial = []
            self._partial = partial
            self._in_flight -= len(acks)
        for _commands, how, answer, mine in done:
            if how == _ONE:
                answer.set_result(mine[0])
            elif how == _EACH:
                for ticket, ack in zip(answer, mine, strict=True):
                    ticket.set_result(ack)
            else:
                answer.set_result(mine)
        for listener in self.listeners:
            try:
                listener(pairs)
            except Exception:
                log.exception("a writer listener failed")

    def _stop(self, reason: str) -> None:
        """Stopped (the first reason stays): every pending ticket fails with WriterStopped."""
        with self._state_lock:
            groups = list(self._groups)
            self._groups.clear()
            self._partial = []
            self._in_flight = 0
            if self._stopped is None:
                self._stopped = reason
        error = WriterStopped(reason)
        for _commands, how, answer in groups:
            for ticket in answer if how == _EACH else [answer]:
                if not ticket.done():
                    ticket.set_exception(error)


# ------------------------------------------------------------------ the child


def _open_waiting(sequencer: Sequencer, lock_wait_s: float) -> RecoveryReport:
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            return sequencer.open()
        except WriterLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def writer_main() -> None:  # pragma: no cover - runs in the writer process (tests drive it end to end)
    """The writer process: ``python -c '...writer_main()' FD PARENT_PID LOCK_WAIT_S SETTINGS_JSON``."""
    fd, parent_pid, lock_wait_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    settings = Settings(**json.loads(sys.argv[4]))
    die_with_parent(parent_pid)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # the server decides when to stop (a group's Ctrl-C)
        signal.signal(stop_signal, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = Connection(fd)
    lock = threading.Lock()
    sequencer = Sequencer.from_settings(settings)
    try:
        report = _open_waiting(sequencer, lock_wait_s)
    except Exception as exc:
        _send(conn, lock, ("error", portable(exc)))
        return
    _send(conn, lock, ("opened", report))
    serving_process()  # the sequencer's Freezer sweeps by commands (exchange/_gc.py)
    try:
        if not _dialogue(conn, lock, sequencer, settings):
            return
        _serve(conn, lock, sequencer)
    finally:
        sequencer.close()
        with contextlib.suppress(OSError):
            _send(conn, lock, ("closed", None))


def _dialogue(conn: Connection, lock: threading.Lock, sequencer: Sequencer, settings: Settings) -> bool:
    """Before start: listing, the core's snapshot; True once started (False: closed or gone)."""
    while True:
        try:
            request = _recv(conn)
        except (EOFError, OSError):
            return False
        try:
            if request[0] == "list":
                listed = sequencer.list_on_first_start(load_instruments(settings.instruments_file))
                _send(conn, lock, ("listed", listed))
            elif request[0] == "core":
                state_hash, compressed = encode_snapshot(sequencer.core)
                _send(conn, lock, ("core", (sequencer.last_seq, state_hash, compressed)))
            elif request[0] == "start":
                sequencer.listeners.append(lambda pairs: _write(conn, lock, _encode_acks([ack for _c, ack in pairs])))
                sequencer.start()
                _send(conn, lock, ("started", sequencer.last_seq))
                return True
            elif request[0] == "close":
                return False
        except Exception as exc:
            _send(conn, lock, ("error", portable(exc)))


def _serve(conn: Connection, lock: threading.Lock, sequencer: Sequencer) -> None:
    """Submissions until "close" or a closed pipe; the listener sends the acks."""
    told = threading.Event()

    def stopped(ticket: Ticket[list[Ack]]) -> None:
        error = ticket.exception()
        if error is not None and not told.is_set():
            told.set()
            with contextlib.suppress(OSError):
                _send(conn, lock, ("stopped", str(error)))

    while True:
        try:
            request = _recv(conn)
        except (EOFError, OSError):
            return
        if request[0] == "close":
            return
        records: list[JournalRecordBody] = request[1]
        try:
            commands = [decode(0, kind, body, crc32) for kind, body, crc32 in records]
            ticket = sequencer.submit_records(commands, records)
        except Exception as exc:  # the writer stopped (or a record does not decode: nothing applied)
            if not told.is_set():
                told.set()
                with contextlib.suppress(OSError):
                    _send(conn, lock, ("stopped", str(exc)))
            continue
        ticket.add_done_callback(stopped)
