"""Database faults: the writer on a PostgreSQL server of its own that is killed and brought back.

    bulkex torture dbfault --rounds 3 --seed 7

``ThrowawayPostgres`` runs ``initdb`` and ``pg_ctl`` (from /usr/lib/postgresql/*/bin) in a
temporary directory, on a free loopback port, as the ``postgres`` user when started as root
(initdb refuses root), and removes everything at the end. The shared development server is
never touched.

Each round: a sequencer on that server under a steady flow of orders and deposits (a submitter
thread, up to a few hundred commands in flight), then the server is stopped with
``pg_ctl stop -m immediate`` (every backend killed, no checkpoint: a crash) at a random moment,
left down for a while, and started again. Checked:

1. the writer stops: the failed commit stops it (``running`` turns false), every command in
   flight fails with WriterStopped, new submissions are refused at once, and no command is
   acknowledged after the writer stopped;
2. nothing unacknowledged was acknowledged: every acknowledged seq is in the journal with its
   kind once the server is back (a commit that succeeded but whose answer was lost may be
   journaled without an ack: that is allowed, and answered as a duplicate when sent again);
3. opening while the server is down fails with a clear error (no half-open writer);
4. restart rebuilds cleanly (the design: "a failed commit stops the writer; restart rebuilds
   from snapshot + journal"): the new writer recovers, the state from the snapshot equals a
   full replay, the core's invariants hold, and it goes on taking commands.

Hung and reset connections (``db_hang``; ``bulkex torture dbfault --fault hang|cut``): the
writer reaches the server through a ``bench._pgproxy.FaultProxy``. ``hang``: a freeze below
the commit timeout is ridden out (nothing acknowledged while frozen, everything queued
acknowledged after thaw, nothing failed); one above it stops the writer at the bound with
DatabaseTimeout (no ack after, every ticket answered, close and open bounded too). ``cut``:
every connection reset; the next commit fails and stops the writer. After both: the journal
gapless, every ack in it, and a restart through the proxy recovers (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from exchange import (
    DEFAULT_COMMIT_TIMEOUT_MS,
    OrderFlow,
    Sequencer,
    Settings,
    WriterStopped,
    decode,
    funding_commands,
    load_instruments,
    make_engine,
    simulated_accounts,
)
from matching import CONTINUOUS, SetTradingState

__all__ = ["DbFaultFailure", "DbFaultReport", "PostgresMissing", "ThrowawayPostgres", "db_faults", "postgres_bin"]


class PostgresMissing(RuntimeError):
    """No initdb/pg_ctl on this machine."""


class DbFaultFailure(AssertionError):
    """A check failed; the message names the seed and the round."""


def postgres_bin() -> str:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl (PostgresMissing if none)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for folder in candidates:
        if os.path.exists(os.path.join(folder, "initdb")) and os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(found)
    raise PostgresMissing("initdb and pg_ctl not found under /usr/lib/postgresql/*/bin or on PATH")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL cluster: ``start``, ``crash`` (immediate stop), ``stop``, ``remove``."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.folder = tempfile.mkdtemp(prefix="bulkex-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, os.path.join(self.bin, program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        log = os.path.join(self.folder, "server.log")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", log, "-o", options)

    def crash(self) -> None:
        """Kill the server and every backend now (no checkpoint), as a crash would."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", self.data)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", self.data)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()


@dataclass
class DbFaultReport:
    seed: int
    rounds: int = 0
    acked: int = 0
    failed_in_flight: int = 0
    refused_after_stop: int = 0
    journaled_unacked: int = 0
    down_s: float = 0.0
    open_refused: list[str] = field(default_factory=list)
    last_seq: int = 0
    gateway_accepted: int = 0
    gateway_unavailable: int = 0

    def lines(self) -> list[str]:
        return [
            f"database faults, seed {self.seed}: {self.rounds} immediate stops of a private PostgreSQL "
            f"({self.down_s:.1f} s down in all), journal at seq {self.last_seq}",
            f"  {self.acked} commands acknowledged, all journaled; {self.failed_in_flight} in flight failed with "
            f"WriterStopped, {self.refused_after_stop} refused at submit after the stop, none acknowledged after it",
            f"  {self.journaled_unacked} commands committed whose answer was lost with the connection (allowed)",
            f"  opening while the server was down: {self.open_refused[0] if self.open_refused else 'not tried'}",
            f"  through the gateway: {self.gateway_accepted} orders accepted (all journaled), then "
            f"{self.gateway_unavailable} answered UNAVAILABLE once the database died, none accepted after",
        ]


@contextlib.contextmanager
def _writer(url: str, commit_timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS) -> Iterator[Sequencer]:
    sequencer = Sequencer(
        url, snapshot_every_commands=2_000, batch_max_commands=256, commit_timeout_ms=commit_timeout_ms
    )
    sequencer.open()
    try:
        yield sequencer
    finally:
        sequencer.close()


class _Load:
    """A submitter thread: orders (and a deposit per wave) until the writer refuses."""

    def __init__(self, sequencer: Sequencer, seed: int, prefix: str) -> None:
        self.sequencer = sequencer
        instruments = load_instruments(Settings().instruments_file)
        self.flow = OrderFlow(instruments, seed=seed, first_seq=sequencer.last_seq + 1, client_prefix=prefix)
        self.prefix = prefix
        self.acked: dict[int, str] = {}
        self.acked_ts_ns: dict[int, int] = {}  # seq -> its batch's stamp (one per commit)
        self.submitted = 0
        self.acked_after_stop = 0
        self.failed = 0
        self.refused = 0
        self.stopped_seen = threading.Event()
        self.stop = threading.Event()  # set to end the flow while the writer still runs
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_done(self, kind: str) -> Callable[[Any], None]:
        def done(ticket: Any) -> None:
            with self.lock:
                if ticket.exception() is not None:
                    self.failed += 1
                    return
                if self.stopped_seen.is_set():
                    self.acked_after_stop += 1
                ack = ticket.result()
                self.acked[ack.seq] = kind
                self.acked_ts_ns[ack.seq] = ack.ts_ns

        return done

    def _run(self) -> None:
        try:
            self._flow()
        except BaseException as exc:  # reported by the round: a submitter that died proves nothing
            self.errors.append(exc)
            raise

    def _flow(self) -> None:
        sequencer = self.sequencer
        wave = 0
        waves: list[Any] = []
        while not self.stop.is_set():
            wave += 1
            commands = self.flow.take(40)
            try:
                tickets = sequencer.submit_many(commands)
            except WriterStopped:
                self.refused += 1
                if self.refused >= 5:
                    return
                time.sleep(0.01)
                continue
            with self.lock:
                self.submitted += len(tickets)
            for command, ticket in zip(commands, tickets, strict=True):
                ticket.add_done_callback(self._on_done(type(command).KIND))
            if not sequencer.running:
                self.stopped_seen.set()
            waves.append(tickets[-1])
            if len(waves) >= 4:  # up to four waves in flight: batches commit while others queue
                with contextlib.suppress(WriterStopped):
                    waves.pop(0).result(timeout=30)
            if not sequencer.running:
                self.stopped_seen.set()
            # the flow predicts order ids from seqs: keep it the only submitter, pace it
            time.sleep(0.002)
        for ticket in waves:  # stopped on request: let what is in flight finish
            with contextlib.suppress(WriterStopped):
                ticket.result(timeout=60)


def _journal(url: str) -> dict[int, tuple[str, bytes, int]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT seq, kind, body, crc32 FROM journal"))
            return {int(r[0]): (str(r[1]), bytes(r[2]), int(r[3])) for r in rows}
    finally:
        engine.dispose()


async def _gateway_round(server: ThrowawayPostgres, rnd: random.Random, report: DbFaultReport) -> list[int]:
    """The same fault seen through the WebSocket gateway: a trader pipelines orders, the database
    dies; every answer after that is an error (UNAVAILABLE: the writer stopped), none hangs.
    Returns the seqs of the orders answered `accepted`."""
    from api._client import RequestError
    from api._harness import running_exchange
    from api._limits import GatewayLimits

    accepted: list[int] = []
    limits = GatewayLimits(connection_rate_per_s=1e6, connection_burst=10**6, key_rate_per_s=1e6, key_burst=10**6)
    async with running_exchange(server.url, limits, open_markets=False) as ex:  # opened by the first round
        async with _trader(ex) as client:
            loop = asyncio.get_running_loop()
            crash_at = loop.time() + rnd.uniform(0.3, 1.0)
            crashed = False
            refused_waves = 0
            n = 0
            while True:
                if not crashed and loop.time() >= crash_at:
                    await asyncio.to_thread(server.crash)
                    crashed = True
                wave = []
                for _ in range(20):
                    n += 1
                    side = "buy" if n % 2 else "sell"
                    wave.append(client.place_order("RB-HRB400E-20", side, "3500.00", 1, client_order_id=f"g{n}"))
                results = await asyncio.wait_for(asyncio.gather(*wave, return_exceptions=True), 60)
                refused = 0
                for result in results:
                    if isinstance(result, RequestError):
                        if result.code != "UNAVAILABLE":
                            raise DbFaultFailure(f"gateway: an order was answered {result.code}: {result}")
                        refused += 1
                    elif isinstance(result, dict):
                        if refused_waves:
                            raise DbFaultFailure(f"gateway: order accepted after the writer stopped: {result}")
                        accepted.append(result["seq"])
                    else:
                        raise DbFaultFailure(f"gateway: no answer: {result!r}")
                report.gateway_unavailable += refused
                if refused == len(results):
                    refused_waves += 1
                    if refused_waves >= 4:  # refused for good, promptly, wave after wave
                        break
        await asyncio.to_thread(server.start)  # the harness closes its key store on a live server
    return accepted


def _trader(ex: Any) -> Any:
    from api._client import Client

    return Client(ex.url, *ex.trader_key("G001"))


def db_faults(rounds: int, seed: int, log: Callable[[str], None] = print) -> DbFaultReport:
    """Run the rounds on a private PostgreSQL; raise DbFaultFailure on a failed check."""
    if not (1 <= rounds <= 1_000):
        raise ValueError(f"rounds must be 1..1000, not {rounds}")
    rnd = random.Random(seed)
    report = DbFaultReport(seed)
    with ThrowawayPostgres() as server:
        url = server.url
        with _writer(url) as sequencer:
            sequencer.list_on_first_start(load_instruments(Settings().instruments_file))
            opening = [SetTradingState(symbol, CONTINUOUS) for symbol in sequencer.core.trading_states()]
            sequencer.execute(opening + funding_commands(simulated_accounts(50)))
        for number in range(rounds):

            def fail(message: str, number: int = number) -> DbFaultFailure:
                return DbFaultFailure(f"seed {seed}, round {number}: {message}")

            with _writer(url) as sequencer:
                report_before = sequencer.recovery
                assert report_before is not None
                sequencer.start()
                load = _Load(sequencer, rnd.randrange(1 << 30), f"r{number}-")
                load.thread.start()
                time.sleep(rnd.uniform(0.3, 1.5))
                server.crash()
                down_at = time.monotonic()
                load.thread.join(timeout=60)
                if load.thread.is_alive():
                    raise fail("the submitter still runs: the writer never refused after the database died")
                if sequencer.running:
                    raise fail("the writer still runs after its database was killed")
                if load.acked_after_stop:
                    raise fail(f"{load.acked_after_stop} commands acknowledged after the writer stopped")
                try:
                    sequencer.submit(opening[0])
                except WriterStopped:
                    pass
                else:
                    raise fail("a stopped writer took a new command")
                try:  # a second writer while the database is down: refused with an error, nothing half-open
                    with _writer(url):
                        raise fail("a writer opened on a database that is down")
                except DbFaultFailure:
                    raise
                except Exception as exc:
                    report.open_refused = [f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"]
                time.sleep(rnd.uniform(0.2, 1.0))
                server.start()
                report.down_s += time.monotonic() - down_at
            journal = _journal(url)
            for seq, (kind, body, crc) in journal.items():
                decode(seq, kind, body, crc)  # JournalCorrupt on a torn or damaged record
            for seq, kind in load.acked.items():
                if journal.get(seq, ("",))[0] != kind:
                    raise fail(f"acknowledged {kind} at seq {seq} is not in the journal")
            mine = [
                s
                for s, row in journal.items()
                if s > report_before.last_seq and row[0] in ("new_order", "cancel_order")
            ]
            report.journaled_unacked += sum(1 for s in mine if s not in load.acked)
            with _writer(url) as recovered:  # restart: snapshot + journal
                recovered.core.check_invariants()
                live = recovered.state_hash()
                last_seq = recovered.last_seq
            with Sequencer(url, use_snapshots=False) as replayed:
                if replayed.last_seq != last_seq or replayed.state_hash() != live:
                    raise fail("recovery from the snapshot differs from a full replay")
            with _writer(url) as resumed:  # and it goes on taking commands
                resumed.start()
                resumed.submit(opening[0]).result(timeout=30)
            report.acked += len(load.acked)
            report.failed_in_flight += load.failed
            report.refused_after_stop += load.refused
            report.rounds += 1
            log(
                f"round {number}: {len(load.acked)} acknowledged, {load.failed} failed in flight, "
                f"{load.refused} refused at submit, database down and back"
            )
        accepted = asyncio.run(_gateway_round(server, rnd, report))
        journal = _journal(url)
        missing = [seq for seq in accepted if journal.get(seq, ("",))[0] != "new_order"]
        if missing:
            raise DbFaultFailure(f"seed {seed}, gateway: accepted orders not journaled: {missing[:5]}")
        report.gateway_accepted = len(accepted)
        with _writer(url) as recovered:
            recovered.core.check_invariants()
        log(f"gateway: {len(accepted)} orders accepted, all journaled; {report.gateway_unavailable} UNAVAILABLE")
        report.last_seq = max(_journal(url), default=0)
    return report


# ----------------------------------------------------------------- hung and cut connections

SETTLE_S = 0.3
"""After freeze(): time for an answer that passed the proxy just before to be handled by the
writer (acks counted in this window must all come from that one commit)."""
RESUME_WITHIN_S = 10.0
"""After thaw() of a short freeze: the writer must acknowledge again within this time."""
OPEN_RETRY_S = 10.0
"""A restart retries WriterLocked this long: the old session holds the writer lock until the
server sees its connection end."""


@dataclass
class DbHangReport:
    fault: str
    seed: int
    commit_timeout_ms: int
    rounds: list[str] = field(default_factory=list)
    acked: int = 0
    acked_while_frozen: int = 0  # after the settle window, before thaw: must stay 0
    settled_at_freeze: int = 0  # acked in the settle window: the one commit answered before the freeze
    queued_at_thaw: int = 0  # submitted and unanswered when a short freeze ended, all acked after
    stopped_after_s: list[float] = field(default_factory=list)  # freeze (or cut) -> writer stopped
    close_frozen_s: float = 0.0  # closing a stopped writer while still frozen
    open_frozen: str = ""  # opening a writer through a frozen proxy
    open_cut: str = ""  # opening a writer through a cut proxy
    stop_reasons: list[str] = field(default_factory=list)
    journaled_unacked: int = 0
    locked_after_thaw_s: float = 0.0  # a restart found the old session's writer lock, this long

    def lines(self) -> list[str]:
        bound = self.commit_timeout_ms
        what = "hung (frozen)" if self.fault == "hang" else "reset (cut)"
        out = [f"{what} database connections, seed {self.seed}, commit timeout {bound} ms:"]
        out += [f"  {line}" for line in self.rounds]
        out.append(f"  {self.acked} commands acknowledged, all journaled (journal gapless, every record decodes)")
        if self.fault == "hang":
            out += [
                f"  {self.acked_while_frozen} acknowledged while frozen (after the {SETTLE_S:.1f} s settle window; "
                f"{self.settled_at_freeze} in it, from one commit at most)",
                f"  {self.queued_at_thaw} commands waiting when the short freezes ended, every one acknowledged after",
            ]
        out.append(f"  {self.journaled_unacked} commands committed whose answer never came back (allowed)")
        if self.stopped_after_s:
            out.append("  writer stopped after " + ", ".join(f"{s:.2f} s" for s in self.stopped_after_s))
        out += [f"  stopped with: {reason}" for reason in dict.fromkeys(self.stop_reasons)]
        if self.open_frozen:
            out.append(f"  opening through the frozen proxy: {self.open_frozen}")
        if self.close_frozen_s:
            out.append(f"  closing the stopped writer while frozen took {self.close_frozen_s:.2f} s")
        if self.locked_after_thaw_s:
            out.append(
                f"  a restart met WriterLocked (the old writer's sessions still open) "
                f"for {self.locked_after_thaw_s:.2f} s"
            )
        if self.open_cut:
            out.append(f"  opening through the cut proxy: {self.open_cut}")
        return out


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def _open_retrying(url: str, timeout_ms: int, report: DbHangReport) -> Sequencer:
    from exchange import WriterLocked

    began = time.monotonic()
    while True:
        sequencer = Sequencer(url, snapshot_every_commands=2_000, batch_max_commands=256, commit_timeout_ms=timeout_ms)
        try:
            sequencer.open()
        except WriterLocked:
            if time.monotonic() - began > OPEN_RETRY_S:
                raise
            time.sleep(0.05)
            continue
        report.locked_after_thaw_s = max(report.locked_after_thaw_s, time.monotonic() - began)
        return sequencer


def _verify(
    direct_url: str, url: str, load: _Load, last_seq_before: int, report: DbHangReport, fail: Callable[[str], Exception]
) -> None:
    """After a round: every ack journaled (read straight from the server), the restart through the
    proxy rebuilds the same state from the snapshot as from a full replay, and it takes commands."""
    journal = _journal(direct_url)
    if sorted(journal) != list(range(1, len(journal) + 1)):
        raise fail("the journal has a gap")
    for seq, (kind, body, crc) in journal.items():
        decode(seq, kind, body, crc)
    for seq, kind in load.acked.items():
        if journal.get(seq, ("",))[0] != kind:
            raise fail(f"acknowledged {kind} at seq {seq} is not in the journal")
    mine = [s for s, row in journal.items() if s > last_seq_before and row[0] in ("new_order", "cancel_order")]
    report.journaled_unacked += sum(1 for s in mine if s not in load.acked)
    recovered = _open_retrying(url, DEFAULT_COMMIT_TIMEOUT_MS, report)
    try:
        recovered.core.check_invariants()
        live = recovered.state_hash()
        last_seq = recovered.last_seq
    finally:
        recovered.close()
    with Sequencer(url, use_snapshots=False) as replayed:
        if replayed.last_seq != last_seq or replayed.state_hash() != live:
            raise fail("recovery from the snapshot differs from a full replay")
    with _writer(url) as resumed:
        resumed.start()
        resumed.submit(SetTradingState(next(iter(resumed.core.trading_states())), CONTINUOUS)).result(timeout=30)
    report.acked += len(load.acked)


def _acks_during_freeze(load: _Load, freeze_s: float, fail: Callable[[str], Exception]) -> tuple[int, float]:
    """Called right after freeze(): checks that only the one commit answered just before it is
    acknowledged in the settle window and nothing after it, for `freeze_s` in all (or until the
    writer stops). Returns (acked in the settle window, seconds until the writer stopped or 0)."""
    frozen_at = time.monotonic()
    with load.lock:
        before = set(load.acked)
    time.sleep(SETTLE_S)
    with load.lock:
        settled = set(load.acked)
    stamps = {load.acked_ts_ns[seq] for seq in settled - before}
    if len(stamps) > 1:
        raise fail(f"{len(stamps)} commits acknowledged after the freeze began (one answer at most was in transit)")
    stopped_after = 0.0
    while time.monotonic() - frozen_at < freeze_s:
        if not load.sequencer.running and not stopped_after:
            stopped_after = time.monotonic() - frozen_at
        with load.lock:
            late = set(load.acked) - settled
        if late:
            raise fail(f"{len(late)} commands acknowledged while the database was frozen (first: seq {min(late)})")
        time.sleep(0.01)
    return len(settled - before), stopped_after


def _start_round(
    proxy: Any, rnd: random.Random, timeout_ms: int, report: DbHangReport, prefix: str
) -> tuple[Sequencer, _Load, int]:
    """A writer through the proxy under a started load, a moment in: (writer, load, last seq recovered)."""
    sequencer = _open_retrying(proxy.url(), timeout_ms, report)
    try:
        assert sequencer.recovery is not None
        last_seq_before = sequencer.recovery.last_seq
        sequencer.start()
        load = _Load(sequencer, rnd.randrange(1 << 30), prefix)
        load.thread.start()
    except BaseException:
        sequencer.close()
        raise
    time.sleep(rnd.uniform(0.3, 1.0))
    return sequencer, load, last_seq_before


def _check_stopped_load(load: _Load, fail: Callable[[str], Exception]) -> None:
    """After the writer stopped: the submitter ended, nothing was acknowledged after the stop,
    every ticket was answered."""
    load.thread.join(timeout=60)
    if load.thread.is_alive() or load.errors:
        raise fail(f"the submitter still runs after the writer stopped: {load.errors[:1]}")
    if load.acked_after_stop:
        raise fail(f"{load.acked_after_stop} commands acknowledged after the writer stopped")
    if len(load.acked) + load.failed != load.submitted:
        raise fail(f"{load.submitted - len(load.acked) - load.failed} tickets never answered")


def _open_refused(url: str, timeout_ms: int, what: str, fail: Callable[[str], Exception]) -> tuple[Exception, float]:
    """Opening a writer through a broken connection fails: (the error, seconds it took)."""
    began = time.monotonic()
    try:
        with _writer(url, timeout_ms):
            raise fail(f"a writer opened through a {what} connection")
    except DbFaultFailure:
        raise
    except Exception as exc:
        return exc, time.monotonic() - began


def _record_stop(report: DbHangReport, stopped_after: float, reason: str) -> None:
    report.stopped_after_s.append(stopped_after)
    report.stop_reasons.append(" ".join(reason.split())[:240])


def _hang_round(
    server: ThrowawayPostgres,
    proxy: Any,
    rnd: random.Random,
    freeze_s: float,
    timeout_ms: int,
    number: int,
    report: DbHangReport,
    fail: Callable[[str], Exception],
) -> None:
    """Freeze the proxy under load for `freeze_s`. Shorter than the bound: the writer waits and
    then acknowledges everything queued; longer: the watchdog cuts the commit at the bound and
    the writer stops with DatabaseTimeout."""
    bound_s = timeout_ms / 1000
    url = proxy.url()
    rides_out = freeze_s < bound_s
    sequencer, load, last_seq_before = _start_round(proxy, rnd, timeout_ms, report, f"h{number}-")
    try:
        proxy.freeze()
        in_window, stopped_after = _acks_during_freeze(load, freeze_s, fail)
        report.settled_at_freeze += in_window
        with load.lock:
            waiting = load.submitted - len(load.acked) - load.failed
        if rides_out:
            if not sequencer.running:
                raise fail(f"the writer stopped during a {freeze_s:.1f} s freeze, below the {bound_s:.1f} s bound")
            if waiting <= 0:
                raise fail("nothing was waiting at thaw: the freeze held no commit")
            with load.lock:
                acked_at_thaw = len(load.acked)
            proxy.thaw()
            resume_deadline = time.monotonic() + RESUME_WITHIN_S
            while len(load.acked) <= acked_at_thaw:
                if time.monotonic() > resume_deadline:
                    raise fail(f"no acknowledgement within {RESUME_WITHIN_S} s after thaw")
                time.sleep(0.01)
            time.sleep(rnd.uniform(0.3, 0.8))
            load.stop.set()
            load.thread.join(timeout=60)
            if load.thread.is_alive() or load.errors:
                raise fail(f"the submitter did not finish after thaw: {load.errors[:1]}")
            if not sequencer.running or load.failed:
                raise fail(f"the writer stopped after a short freeze ({load.failed} failed)")
            if len(load.acked) != load.submitted:
                raise fail(f"{load.submitted - len(load.acked)} of {load.submitted} commands never acknowledged")
            report.queued_at_thaw += waiting
            report.rounds.append(
                f"freeze {freeze_s:.1f} s (< bound): {waiting} commands waited, all acknowledged after thaw; "
                f"{len(load.acked)} acknowledged in the round, none failed"
            )
        else:
            if not stopped_after:
                raise fail(f"the writer still runs {freeze_s:.1f} s into a freeze, past the {bound_s:.1f} s bound")
            # The stuck commit began at most one commit's time before the freeze; the watchdog
            # cuts it within 1.05 x the bound of its start (plus the check's own 10 ms step).
            if not (bound_s - 0.5 <= stopped_after <= bound_s * 1.05 + 1.0):
                raise fail(f"the writer stopped {stopped_after:.2f} s into the freeze, bound {bound_s:.1f} s")
            reason = sequencer._stopped or ""
            if "DatabaseTimeout" not in reason:
                raise fail(f"the writer stopped for another reason than the bound: {reason}")
            _check_stopped_load(load, fail)
            began = time.monotonic()
            sequencer.close()  # still frozen: the lock's release is cut at the bound too
            report.close_frozen_s = time.monotonic() - began
            if report.close_frozen_s > bound_s * 1.05 + 3.0:
                raise fail(f"closing the stopped writer took {report.close_frozen_s:.1f} s while frozen")
            exc, took = _open_refused(url, timeout_ms, "frozen", fail)
            if took > max(2.0, bound_s) * 2 + 3.0:
                raise fail(f"opening through the frozen proxy took {took:.1f} s to fail") from exc
            report.open_frozen = f"{_first_line(exc)} after {took:.1f} s"
            _record_stop(report, stopped_after, reason)
            report.rounds.append(
                f"freeze {freeze_s:.1f} s (> bound): writer stopped after {stopped_after:.2f} s with "
                f"DatabaseTimeout; {len(load.acked)} acknowledged, {load.failed} failed with WriterStopped"
            )
            proxy.thaw()
    finally:
        sequencer.close()
        proxy.thaw()
    _verify(server.url, url, load, last_seq_before, report, fail)


def _cut_round(
    server: ThrowawayPostgres,
    proxy: Any,
    rnd: random.Random,
    timeout_ms: int,
    number: int,
    report: DbHangReport,
    fail: Callable[[str], Exception],
) -> None:
    """Reset every connection under load; the next commit fails and the writer stops; opening
    while cut fails at once; once the proxy forwards again a restart recovers."""
    url = proxy.url()
    sequencer, load, last_seq_before = _start_round(proxy, rnd, timeout_ms, report, f"c{number}-")
    try:
        proxy.cut()
        cut_at = time.monotonic()
        while sequencer.running and time.monotonic() - cut_at < 30:
            time.sleep(0.005)
        stopped_after = time.monotonic() - cut_at
        if sequencer.running:
            raise fail("the writer still runs 30 s after its connections were reset")
        _check_stopped_load(load, fail)
        reason = sequencer._stopped or ""
        sequencer.close()
        exc, took = _open_refused(url, timeout_ms, "cut", fail)
        report.open_cut = f"{_first_line(exc)} after {took:.2f} s"
        _record_stop(report, stopped_after, reason)
        report.rounds.append(
            f"cut: writer stopped after {stopped_after:.3f} s; {len(load.acked)} acknowledged, "
            f"{load.failed} failed with WriterStopped, {load.refused} refused at submit"
        )
        time.sleep(rnd.uniform(0.2, 0.6))
    finally:
        sequencer.close()
        proxy.thaw()
    _verify(server.url, url, load, last_seq_before, report, fail)


FAULTS = ("hang", "cut")


def db_hang(
    fault: str,
    seed: int,
    short_freeze_s: float,
    long_freeze_s: float,
    commit_timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS,
    rounds: int = 1,
    log: Callable[[str], None] = print,
) -> DbHangReport:
    """On a private PostgreSQL reached through a FaultProxy, under a steady flow of orders:

    ``hang``: per round, a freeze of `short_freeze_s` (below the bound: ridden out) and one of
    `long_freeze_s` (above it: the writer stops with DatabaseTimeout), then recovery;
    ``cut``: per round, every connection reset mid-run, then recovery.
    Raises DbFaultFailure on a failed check."""
    from bench._pgproxy import FaultProxy

    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {', '.join(FAULTS)}, not {fault!r}")
    if not (1 <= rounds <= 100):
        raise ValueError(f"rounds must be 1..100, not {rounds}")
    if not (1_000 <= commit_timeout_ms <= 120_000):
        raise ValueError(f"commit_timeout_ms must be 1000..120000 here, not {commit_timeout_ms}")
    bound_s = commit_timeout_ms / 1000
    if fault == "hang" and not (0.5 <= short_freeze_s < bound_s - 0.5 and long_freeze_s > bound_s + 1.0):
        raise ValueError(
            f"freezes must straddle the {bound_s:.1f} s bound: short 0.5 .. bound-0.5 s, long > bound+1 s "
            f"(not {short_freeze_s} and {long_freeze_s})"
        )
    rnd = random.Random(seed)
    report = DbHangReport(fault, seed, commit_timeout_ms)
    with ThrowawayPostgres() as server, FaultProxy(server.port) as proxy:
        with _writer(server.url) as sequencer:
            sequencer.list_on_first_start(load_instruments(Settings().instruments_file))
            opening = [SetTradingState(symbol, CONTINUOUS) for symbol in sequencer.core.trading_states()]
            sequencer.execute(opening + funding_commands(simulated_accounts(50)))
        for number in range(rounds):

            def fail(message: str, number: int = number) -> DbFaultFailure:
                return DbFaultFailure(f"seed {seed}, {fault} round {number}: {message}")

            if fault == "hang":
                for freeze_s in (short_freeze_s, long_freeze_s):
                    _hang_round(server, proxy, rnd, freeze_s, commit_timeout_ms, number, report, fail)
                    log(report.rounds[-1])
            else:
                _cut_round(server, proxy, rnd, commit_timeout_ms, number, report, fail)
                log(report.rounds[-1])
    return report
