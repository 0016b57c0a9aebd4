"""Crash torture: the real exchange server killed with SIGKILL at random moments under load.

    bulkex torture crash --iterations 20 --seed 7 [--database-url URL] [--clients 4]

Each iteration starts the exchange (``GatewayServer``: sequencer, core, journal, WebSocket
endpoint) as a child process on the same database, and drives it from two sides at once:

- several trader clients in this process, over real WebSockets: pipelined new orders on two
  instruments, cancels of their own live orders, a subscription to their private ``orders``
  stream, and now and then a reconnect that must resume that stream without a gap;
- a back office thread inside the child, submitting straight to the sequencer: bank
  deposits, withdrawals (request, then the bank's result, confirmed or refused), and for
  every trade of a seller with locked receipts the buyer's payment and the operator's
  delivery confirmation (delivery versus payment). It prints ``sent`` before and ``ack``
  after each commit.

Snapshots are taken every few hundred commands (a forked child exports them), so kills land
mid-batch, mid-snapshot and mid-delivery. After a random time the child gets SIGKILL; then,
with the server down, the checks (any failure raises TortureFailure naming the seed):

1. every acknowledged command (order answers over the socket, back office acks) is in the
   journal at its seq with its kind (a NewOrder with its client order id);
2. the journal replays from seq 1 without a gap or a bad checksum, and the replayed state hash
   equals the hash every snapshot recorded when the live server took it, and the state that
   recovery builds from the newest snapshot plus the tail;
3. nothing is half-applied: the core's invariants hold (every order's hold, receipt locks),
   the ledger sums to custody with nothing negative, custody equals the deposits minus the
   confirmed withdrawals of the replayed events, goods are conserved per warehouse, and the
   orders/trades projections equal those built by the replay;
4. exactly once: the in-flight (sent, unanswered) orders and deposits are sent again, with one
   acknowledged order and deposit: each repeat is answered as the first and changes nothing;
   no (account, client order id) has two orders;
5. private streams: inside a run every stream is gapless across reconnects; after the restart
   the client sees the new epoch at login and rebuilds its stream (never a replay from another
   run), and the orders projection it rebuilds from holds every acknowledged order.

Then a graceful stop (SIGTERM) must leave the journal at the hash the server printed, a
corrupted newest snapshot must be skipped (reported) with the same recovered hash, and a torn
last journal record, a gap and a bit flip must each stop recovery with JournalCorrupt or
JournalGap naming the seq (never silently accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from websockets.exceptions import InvalidHandshake

from clearing import BANK_CUSTODY, C_TRANSFER, BankDeposit, RequestWithdrawal, TransferCode, WithdrawalResult
from exchange import (
    Core,
    JournalCorrupt,
    JournalGap,
    OrdersModel,
    Sequencer,
    Settings,
    Store,
    decode,
    funding_commands,
    load_instruments,
    make_engine,
    upgrade,
)
from matching import ACCEPTED, BUY, CONTINUOUS, DUPLICATE, SELL, TRADE, NewOrder, SetTradingState
from warehouse import DL_SETTLED, AddOperator, AddWarehouse, ConfirmDelivery, ConfirmReceipt, PayDeal, RegisterReceipt

__all__ = ["TortureFailure", "TortureReport", "crash", "scratch_database"]

BANK = "SIMBANK"
DATE = "2025-03-03"
WAREHOUSE = "W1"
OPERATOR = "op1"
STEEL = ("RB-HRB400E-20", "HC-Q235B-5.75")
RECEIPT_KG = 50_000  # 50 t: five 10 t lots
MAX_ITERATIONS = 10_000
MAX_CLIENTS = 64


class TortureFailure(AssertionError):
    """A check failed; the message names the seed and the iteration."""


@dataclass
class TortureReport:
    seed: int
    database: str
    iterations: int = 0
    kills: int = 0
    orders_acked: int = 0
    back_office_acked: int = 0
    retried: int = 0
    files_retried: int = 0
    files_acked: int = 0
    files_in_flight: int = 0
    duplicates_answered: int = 0
    reconnects: int = 0
    snapshots_checked: int = 0
    recovered_from_snapshot: int = 0
    replay_unavailable: int = 0
    faults_detected: list[str] = field(default_factory=list)
    deposits_fen: int = 0
    withdrawals_fen: int = 0
    deliveries_settled: int = 0
    last_seq: int = 0
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"torture crash on {self.database}, seed {self.seed}: {self.iterations} iterations, {self.kills} SIGKILLs, "
            f"{self.elapsed_s:.1f} s, journal at seq {self.last_seq}",
            f"  acknowledged: {self.orders_acked} orders over WebSocket, {self.back_office_acked} back office commands "
            f"(deposits, {self.files_acked} bank files of {FILE_RECORDS} deposits, withdrawals, payments, deliveries)",
            f"  after each kill: all acknowledged present, replay = {self.snapshots_checked} live snapshot hashes, "
            f"{self.recovered_from_snapshot} recoveries from a snapshot, invariants and conservation held",
            f"  final state: {self.deposits_fen} fen deposited, {self.withdrawals_fen} fen withdrawn, "
            f"{self.deliveries_settled} deliveries settled",
            f"  exactly once: {self.retried} commands sent again ({self.files_retried} bank files, "
            f"{self.files_in_flight} of them in flight at a kill), {self.duplicates_answered} answered as duplicates; "
            f"{self.reconnects} reconnects resumed gapless, "
            f"{self.replay_unavailable} streams rebuilt after a restart (new epoch)",
            *(f"  fault detected: {fault}" for fault in self.faults_detected),
        ]


# ------------------------------------------------------------------- database


@contextlib.contextmanager
def scratch_database(database_url: str | None) -> Iterator[str]:
    """A fresh database: a new one on the PostgreSQL server of `database_url` (dropped
    afterwards), the SQLite file named, or a temporary SQLite file."""
    if database_url and database_url.startswith("postgresql"):
        admin = make_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
        name = f"bulkex_torture_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        base, _, _ = database_url.rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    if database_url:
        yield database_url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'torture.db'}"


def _traders(count: int) -> list[str]:
    return [f"T{n:03d}" for n in range(count)]


def _setup(
    url: str, traders: list[str], receipts: int = 30, require_receipts: bool = True
) -> list[tuple[str, str, str]]:
    """List, open, fund, give every trader `receipts` receipts of 50 t per steel instrument (a
    sell order locks whole receipts: many small ones let many sells open deliveries); an API
    key per trader. `require_receipts` false turns the receipt rule off (a load test of the
    gateway, whose sellers would otherwise run out of goods)."""
    from api._keys import KeyStore
    from exchange._warehouse_rule import RequireReceipts

    with Sequencer(url) as sequencer:
        sequencer.list_on_first_start(load_instruments(Settings().instruments_file))
        commands: list[Any] = [SetTradingState(symbol, CONTINUOUS) for symbol in sequencer.core.trading_states()]
        if not require_receipts:
            commands += [RequireReceipts(symbol, False, "staff") for symbol in sequencer.core.trading_states()]
        commands += funding_commands(traders, bank=BANK)
        commands.append(AddWarehouse(WAREHOUSE, "East Steel Yard", ("EAST-STEEL",), "staff"))
        commands.append(AddOperator(OPERATOR, WAREHOUSE, "staff"))
        for trader in traders:
            for symbol in STEEL:
                for n in range(receipts):
                    number = f"R-{trader}-{symbol[:2]}-{n}"
                    commands.append(
                        RegisterReceipt(
                            OPERATOR, number, trader, symbol, RECEIPT_KG, RECEIPT_KG // 2_000, f"HEAT-{number}",
                            f"CERT-{number}", 0, 0, 0, "HRB400E", "20 mm x 12 m", "bay 1",
                        )
                    )  # fmt: skip
                    commands.append(ConfirmReceipt(number, trader))
        sequencer.execute(commands)
    keys = KeyStore(url)
    try:
        return [(trader, *keys.create("trader", trader, f"torture {trader}")) for trader in traders]
    finally:
        keys.close()


FILE_KEY = b"torture-bank-key-0123456789abcdef"
FILE_RECORDS = 50


def deposit_file(file_id: str, members: list[str]) -> tuple[Any, int]:
    """A signed bank file of FILE_RECORDS deposits, parsed into its import command (the same
    id always gives the same file); returns (command, total fen)."""
    from clearing.bankfiles import DEPOSITS, DepositRecord, parse_text_file, to_import_command, write_text_file

    records = [
        DepositRecord(f"{file_id}-{k}", f"S-{members[k % len(members)]}", 1_000 + k, DATE) for k in range(FILE_RECORDS)
    ]
    data = write_text_file(DEPOSITS, BANK, file_id, DATE, records, FILE_KEY)
    parsed = parse_text_file(data, {BANK: FILE_KEY}, name=file_id)
    return to_import_command(parsed, data), sum(r.amount_fen for r in records)


# ---------------------------------------------------------------------- child


def child(url: str, seed: int, snapshot_every: int) -> None:  # pragma: no cover - runs in the child
    """The server under test (run as ``python -m bench.torture URL SEED SNAPSHOT_EVERY``)."""
    from api._server import GatewayServer, run_server

    settings = Settings(database_url=url, host="127.0.0.1", port=1, snapshot_every_commands=snapshot_every)
    out_lock = threading.Lock()

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def ready(server: GatewayServer) -> None:
        assert server.sequencer is not None
        back_office = threading.Thread(target=_back_office, args=(server.sequencer, seed, say), daemon=True)
        back_office.start()
        say(f"ready {server.port}")

    asyncio.run(run_server(settings, host="127.0.0.1", port=0, schedule=False, ready=ready))
    with Sequencer(url) as recovered:  # after the graceful stop: the state as journaled
        say(f"closed {recovered.last_seq} {recovered.state_hash()}")


def _back_office(sequencer: Sequencer, seed: int, say: Callable[[str], None]) -> None:  # pragma: no cover - child
    """Deposits, withdrawals, payments and delivery confirmations, at most 32 in flight."""
    rnd = random.Random(seed)
    traders = sorted({m for m in sequencer.core.clearing.members if m.startswith("T")})
    deals: list[tuple[int, str, int]] = []  # (deal id, buyer, lots) of steel trades
    deals_lock = threading.Lock()
    in_flight = threading.Semaphore(32)

    def on_commit(pairs: Any) -> None:
        found = [(e[2], e[7], e[5]) for _c, ack in pairs for e in ack.events if e[0] == TRADE and e[3] in STEEL]
        if found:
            with deals_lock:
                deals.extend(found)

    sequencer.listeners.append(on_commit)

    def send(command: Any, ref: str, then: Callable[[], None] | None = None) -> None:
        in_flight.acquire()
        say(f"sent {type(command).KIND} {ref}")
        ticket = sequencer.submit(command)

        def done(t: Any) -> None:
            in_flight.release()
            if t.exception() is None:
                say(f"ack {t.result().seq} {type(command).KIND} {ref}")
                if then is not None:
                    then()

        ticket.add_done_callback(done)

    n = 0
    while True:
        n += 1
        roll = rnd.randrange(10)
        member = rnd.choice(traders)
        try:
            if roll == 9:  # a whole bank file: one command, applied whole or not at all
                file_id = f"FILE-{seed}-{n}"
                command, _total = deposit_file(file_id, traders)
                send(command, file_id)
            elif roll < 4:
                amount = rnd.randint(1, 10**8)
                record = f"DEP-{seed}-{n}"
                send(BankDeposit(BANK, record, member, amount, DATE), f"{record} {member} {amount}")
            elif roll < 6:
                request = f"WD-{seed}-{n}"
                ok = rnd.random() < 0.7
                result = WithdrawalResult(BANK, f"WR-{seed}-{n}", request, ok, "" if ok else "account closed")
                send(
                    RequestWithdrawal(member, request, rnd.randint(1, 10**6), "torture"),
                    request,
                    lambda result=result: send(result, result.record_id),  # type: ignore[misc]
                )
            else:
                with deals_lock:
                    deal = deals.pop(0) if deals else None
                if deal is None:
                    time.sleep(0.005)
                    continue
                deal_id, buyer, lots = deal
                weight = lots * 9_900 + rnd.randint(0, lots * 200)  # 10 t lots, inside the 3 % tolerance
                confirm = ConfirmDelivery(deal_id, OPERATOR, weight, True, 5)
                send(PayDeal(deal_id, buyer), f"pay {deal_id}", lambda c=confirm: send(c, f"deliver {c.deal_id}"))  # type: ignore[misc]
        except Exception as exc:  # the writer stopped: say so and wait to be killed
            say(f"stopped {exc!r}")
            time.sleep(3600)


# --------------------------------------------------------------------- clients


@dataclass
class _Trader:
    account: str
    key_id: str
    secret: str
    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # client order id -> (order id, seq)
    in_flight: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)  # id -> (symbol, side, ticks, lots)
    sent: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)  # every order sent, as in_flight
    counter: int = 0
    client: Any = None
    seen_epochs: list[str] = field(default_factory=list)


async def _trade(trader: _Trader, url: str, rnd: random.Random, refs: dict[str, int], stop: asyncio.Event) -> int:
    """Pipelined orders until the connection dies or `stop`; returns reconnects done."""
    from api._client import Client, RequestError

    reconnects = 0
    if trader.client is None:
        trader.client = Client(url, trader.key_id, trader.secret)
        await trader.client.connect()
        await trader.client.subscribe_private("orders")
    else:
        trader.client.url = url
        await trader.client.connect()  # resumes (or is told REPLAY_UNAVAILABLE after a restart)
    client = trader.client
    trader.seen_epochs.append(client.epoch)
    live: list[int] = []
    try:  # the orders left resting by earlier runs go (as a trader back from an outage does), so
        # that the open orders stay under the account's limit however many runs the loop makes
        await client.mass_cancel()
    except (ConnectionError, OSError):
        return reconnects  # the server died meanwhile
    except RequestError as exc:
        if exc.code != "SHUTTING_DOWN":
            raise TortureFailure(f"{trader.account}: unexpected error {exc}") from None
    while not stop.is_set():
        if rnd.random() < 0.05:
            lost = client.replay_lost
            try:
                await client.reconnect()
            except InvalidHandshake:
                return reconnects  # the server died during the opening handshake: as a dead connection
            if client.replay_lost != lost:
                raise TortureFailure(f"{trader.account}: a reconnect inside one run lost its private stream")
            reconnects += 1
        wave: list[tuple[str | None, Any]] = []
        for _ in range(rnd.randint(5, 25)):
            if live and rnd.random() < 0.2:
                wave.append((None, client.cancel_order(live.pop(rnd.randrange(len(live))))))
                continue
            symbol = rnd.choice(STEEL)
            side = rnd.choice(("buy", "sell"))
            offset = rnd.randint(-8, 4) if side == "buy" else rnd.randint(-4, 8)
            price = f"{refs[symbol] + offset}.00"
            lots = rnd.randint(1, 5)
            trader.counter += 1
            cid = f"{trader.account}-{trader.counter}"
            order = (symbol, BUY if side == "buy" else SELL, refs[symbol] + offset, lots)  # tick: 1 CNY/t
            trader.in_flight[cid] = trader.sent[cid] = order
            wave.append((cid, client.place_order(symbol, side, price, lots, client_order_id=cid)))
        results = await asyncio.gather(*(w[1] for w in wave), return_exceptions=True)
        for (wave_cid, _), result in zip(wave, results, strict=True):
            if isinstance(result, ConnectionError | OSError):
                return reconnects  # the server died: in-flight stays in-flight
            if isinstance(result, RequestError):
                if wave_cid is not None:
                    trader.in_flight.pop(wave_cid, None)  # refused: an answer (nothing to retry)
                if result.code not in (
                    "UNKNOWN_ORDER", "NOT_YOUR_ORDER", "INSUFFICIENT_RECEIPTS", "SHUTTING_DOWN", "TOO_MANY_ORDERS"
                ):  # fmt: skip
                    raise TortureFailure(f"{trader.account}: unexpected error {result}")
                continue
            if isinstance(result, BaseException):
                raise result
            if wave_cid is not None:
                trader.in_flight.pop(wave_cid, None)
                trader.acked[wave_cid] = (result["order_id"], result["seq"])
                if result["open_lots"] > 0:
                    live.append(result["order_id"])
    return reconnects


# ---------------------------------------------------------------------- checks


def _fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _replay_check(url: str, fail: Callable[[str], TortureFailure], report: TortureReport) -> Core:
    """Replay from seq 1: the hash at every snapshot equals the hash the live server recorded;
    projections equal the replay's; money and goods conserved. Returns (core, snapshots checked)."""
    snapshots = {int(r[0]): str(r[1]) for r in _fetch(url, "SELECT seq, state_hash FROM snapshots")}
    store = Store(url)
    store.connect()
    core = Core()
    model = OrdersModel()
    deposits_fen = withdrawals_fen = 0
    expected = 1
    checked = 0
    try:
        for seq, ts_ns, kind, body, crc in store.journal(0):
            if seq != expected:
                raise fail(f"journal gap: seq {expected} missing")
            out: list[Any] = []
            core.apply(decode(seq, kind, bytes(body), crc), seq, ts_ns, out)
            model.add(out, ts_ns)
            for e in out:
                if e[0] == C_TRANSFER and e[3] == TransferCode.DEPOSIT:
                    deposits_fen += e[8]
                elif e[0] == C_TRANSFER and e[3] == TransferCode.WITHDRAWAL:
                    withdrawals_fen += e[8]
            if seq in snapshots:
                if core.state_hash() != snapshots[seq]:
                    raise fail(f"replay to seq {seq} differs from the live snapshot's hash")
                checked += 1
            expected += 1
    finally:
        store.close()
    core.check_invariants()
    custody = core.clearing.ledger.exchange[BANK_CUSTODY]
    if custody != deposits_fen - withdrawals_fen:
        raise fail(f"custody {custody} fen != deposits {deposits_fen} - withdrawals {withdrawals_fen}")
    problems = core.warehouse.conservation_problems()
    if problems:
        raise fail(f"goods not conserved: {problems[:3]}")
    orders = _fetch(
        url,
        "SELECT order_id, account, instrument, client_order_id, side, time_in_force, price_ticks, quantity_lots, "
        "filled_lots, open_lots, cancelled_lots, status, last_seq FROM orders ORDER BY order_id",
    )
    if orders != [model.orders[k] for k in sorted(model.orders)]:
        raise fail("the orders projection differs from the replay")
    trades = _fetch(url, "SELECT COUNT(*) FROM trades")[0][0]
    if trades != len(model.trades):
        raise fail(f"{trades} trades projected, {len(model.trades)} replayed")
    report.snapshots_checked += checked
    report.deposits_fen, report.withdrawals_fen = deposits_fen, withdrawals_fen
    report.deliveries_settled = sum(1 for d in core.warehouse.deliveries.values() if d.state == DL_SETTLED)
    return core


def _check_acked(
    url: str, traders: list[_Trader], office: dict[int, str], fail: Callable[[str], TortureFailure]
) -> None:
    rows = {
        int(r[0]): (str(r[1]), bytes(r[2]), int(r[3]))
        for r in _fetch(url, "SELECT seq, kind, body, crc32 FROM journal")
    }
    for trader in traders:
        for cid, (_order_id, seq) in trader.acked.items():
            row = rows.get(seq)
            if row is None:
                raise fail(f"acknowledged order {cid} (seq {seq}) is not in the journal")
            command = decode(seq, row[0], row[1], row[2])
            if not isinstance(command, NewOrder) or command.client_order_id != cid or command.account != trader.account:
                raise fail(f"seq {seq} holds {command!r}, not the acknowledged order {cid}")
    for seq, kind in office.items():
        if rows.get(seq, ("",))[0] != kind:
            raise fail(f"acknowledged {kind} at seq {seq} is not in the journal")
    twice = _fetch(
        url, "SELECT account, client_order_id FROM orders GROUP BY account, client_order_id HAVING COUNT(*) > 1"
    )
    if twice:
        raise fail(f"orders entered twice: {twice[:3]}")


def _retry(
    url: str, traders: list[_Trader], office_sent: dict[str, str], office_acked: set[str], rnd: random.Random,
    report: TortureReport, fail: Callable[[str], TortureFailure],
) -> None:  # fmt: skip
    """Send the in-flight commands again and one acknowledged of each kind: exactly once."""
    with Sequencer(url) as sequencer:
        if sequencer.recovery is not None and sequencer.recovery.snapshot_seq:
            report.recovered_from_snapshot += 1
        core = sequencer.core
        ledger = core.clearing.ledger
        for trader in traders:
            repeats = rnd.sample(sorted(trader.acked), min(2, len(trader.acked)))
            for cid in repeats:
                symbol, side, ticks, lots = trader.sent[cid]
                ack = sequencer.execute([NewOrder(trader.account, symbol, cid, side, ticks, lots)])[0]
                first = trader.acked[cid][0]
                if not any(e[0] == DUPLICATE and e[4] == first for e in ack.events):
                    raise fail(f"repeat of acknowledged order {cid} not answered as order {first}: {ack.events}")
                report.duplicates_answered += 1
                report.retried += 1
            for cid, (symbol, side, ticks, lots) in sorted(trader.in_flight.items()):
                ack = sequencer.execute([NewOrder(trader.account, symbol, cid, side, ticks, lots)])[0]
                report.retried += 1
                kinds = [e[0] for e in ack.events]
                if DUPLICATE in kinds:  # committed before the kill, its answer lost: not applied again
                    report.duplicates_answered += 1
                    order_id = next(e[4] for e in ack.events if e[0] == DUPLICATE)
                else:
                    order_id = next((e[2] for e in ack.events if e[0] == ACCEPTED), 0)
                if order_id:  # an order's id is the seq of the command that entered it
                    trader.acked[cid] = (order_id, order_id)
            trader.in_flight.clear()
        deposits = [(ref, ref in office_acked) for ref in office_sent if office_sent[ref] == "bank_deposit"]
        unanswered = [ref for ref, acked in deposits if not acked]
        answered = [ref for ref, acked in deposits if acked]
        for ref in unanswered + answered[-1:]:
            record, member, amount_text = ref.split()
            amount = int(amount_text)
            seen = f"r|{BANK}|{record}" in core.clearing.seen
            before = ledger.exchange[BANK_CUSTODY]
            sequencer.execute([BankDeposit(BANK, record, member, amount, DATE)])
            report.retried += 1
            delta = ledger.exchange[BANK_CUSTODY] - before
            if delta != (0 if seen else amount):
                raise fail(f"deposit {record} sent again moved {delta} fen (applied before: {seen})")
            report.duplicates_answered += int(seen)
        files = [(ref, ref in office_acked) for ref in office_sent if office_sent[ref] == "bank_file_import"]
        members = sorted(m for m in core.clearing.members if m.startswith("T"))
        report.files_in_flight += sum(1 for _ref, acked in files if not acked)
        for ref in [r for r, acked in files if not acked] + [r for r, acked in files if acked][-1:]:
            command, total = deposit_file(ref, members)
            seen = f"{BANK}|{ref}" in core.clearing.file_hashes
            before = ledger.exchange[BANK_CUSTODY]
            sequencer.execute([command])
            report.retried += 1
            report.files_retried += 1
            delta = ledger.exchange[BANK_CUSTODY] - before
            if delta != (0 if seen else total):
                raise fail(f"bank file {ref} imported again moved {delta} fen (applied before: {seen})")
            report.duplicates_answered += int(seen)
        core.check_invariants()


# ------------------------------------------------------------------------ run


class _Child:
    def __init__(self, url: str, seed: int, snapshot_every: int) -> None:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.torture", url, str(seed), str(snapshot_every)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        self.lines: list[str] = []
        self.port = 0
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if not raw.endswith(b"\n"):
                break  # a line cut by the kill: never acknowledged
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith("ready "):
                self.port = int(line.split()[1])
                self.ready.set()
        self.ready.set()

    def finish(self, sig: int) -> str:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        self.process.wait(timeout=120)
        self.reader.join(timeout=30)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read().decode(errors="replace")
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return stderr


async def _run_clients(traders: list[_Trader], url: str, rnd: random.Random, run_s: float, child: _Child) -> int:
    refs = {"RB-HRB400E-20": 3_500, "HC-Q235B-5.75": 3_800}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_trade(t, url, random.Random(rnd.randrange(1 << 30)), refs, stop)) for t in traders]
    await asyncio.sleep(run_s)
    child.process.send_signal(signal.SIGKILL)  # while the clients are mid-wave
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    reconnects = 0
    for result in results:
        if isinstance(result, TortureFailure):
            raise result
        if isinstance(result, int):
            reconnects += result
        elif not isinstance(result, ConnectionError | OSError | InvalidHandshake):
            raise result
    for trader in traders:
        if trader.client is not None:
            with contextlib.suppress(Exception):
                await trader.client.close()
    return reconnects


def crash(
    database_url: str,
    iterations: int,
    seed: int,
    clients: int = 4,
    min_run_s: float = 0.5,
    max_run_s: float = 2.5,
    snapshot_every: int = 150,
    log: Callable[[str], None] = print,
) -> TortureReport:
    """Run the crash loop on `database_url` (an empty database); raise TortureFailure on a failed check."""
    if not (1 <= iterations <= MAX_ITERATIONS):
        raise ValueError(f"iterations must be 1..{MAX_ITERATIONS}, not {iterations}")
    if not (1 <= clients <= MAX_CLIENTS):
        raise ValueError(f"clients must be 1..{MAX_CLIENTS}, not {clients}")
    started = time.perf_counter()
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    report = TortureReport(seed, backend)
    rnd = random.Random(seed)
    upgrade(database_url)
    traders = [_Trader(a, k, s) for a, k, s in _setup(database_url, _traders(clients))]
    office_sent: dict[str, str] = {}
    office_acked: set[str] = set()
    for iteration in range(iterations):

        def fail(message: str, iteration: int = iteration) -> TortureFailure:
            return TortureFailure(f"seed {seed}, iteration {iteration}: {message}")

        child_seed = rnd.randrange(1 << 30)
        run_s = rnd.uniform(min_run_s, max_run_s)
        child = _Child(database_url, child_seed, snapshot_every)
        if not child.ready.wait(timeout=120) or not child.port:
            raise fail(f"the server never got ready: {child.finish(signal.SIGKILL)[-2000:]}")
        url = f"ws://127.0.0.1:{child.port}"
        epochs_before = [t.client.epoch if t.client is not None else None for t in traders]
        lost_before = [t.client.replay_lost if t.client is not None else 0 for t in traders]
        seq_before = [t.client.private_seq.get("orders", 0) if t.client is not None else 0 for t in traders]
        seen_before = [len(t.seen_epochs) for t in traders]
        report.reconnects += asyncio.run(_run_clients(traders, url, rnd, run_s, child))
        stderr = child.finish(signal.SIGKILL)
        report.kills += 1
        office: dict[int, str] = {}
        for line in child.lines:
            parts = line.split(" ", 2)
            if parts[0] == "sent":
                kind, ref = parts[1], parts[2]
                office_sent[ref] = kind
            elif parts[0] == "ack":
                seq_text, rest = parts[1], parts[2]
                kind, _, ref = rest.partition(" ")
                office[int(seq_text)] = kind
                office_acked.add(ref)
                report.files_acked += int(kind == "bank_file_import")
            elif parts[0] == "stopped":
                raise fail(f"the writer stopped under load: {line}; {stderr[-2000:]}")
        for n, trader in enumerate(traders):
            if epochs_before[n] is not None:
                if len(trader.seen_epochs) == seen_before[n]:
                    continue  # killed before this client reached the new server
                if trader.seen_epochs[-1] == epochs_before[n]:
                    raise fail(f"{trader.account}: a restarted server kept the old epoch")
                if seq_before[n] and trader.client.replay_lost == lost_before[n]:
                    raise fail(f"{trader.account}: a stream resumed across a restart (another epoch)")
                report.replay_unavailable += int(bool(seq_before[n]))
        acked_now = sum(len(t.acked) for t in traders)
        report.back_office_acked += len(office)
        log(
            f"iteration {iteration}: child seed {child_seed}, killed after {run_s:.2f} s, "
            f"{acked_now - report.orders_acked} orders and {len(office)} back office commands acknowledged"
        )
        report.orders_acked = acked_now
        _check_acked(database_url, traders, office, fail)
        _replay_check(database_url, fail, report)
        _retry(database_url, traders, office_sent, office_acked, rnd, report, fail)
        office_sent.clear()  # every deposit and file sent was retried above: answered now
        _check_acked(database_url, traders, {}, fail)
        report.iterations += 1
    _graceful(database_url, rnd.randrange(1 << 30), snapshot_every, report, seed)
    report.faults_detected += damaged_records(database_url, seed)
    report.last_seq = _fetch(database_url, "SELECT COALESCE(MAX(seq), 0) FROM journal")[0][0]
    report.elapsed_s = time.perf_counter() - started
    return report


def _graceful(url: str, child_seed: int, snapshot_every: int, report: TortureReport, seed: int) -> None:
    """SIGTERM: the server drains, closes, and the journal holds exactly the state it printed."""
    child = _Child(url, child_seed, snapshot_every)
    if not child.ready.wait(timeout=120) or not child.port:
        raise TortureFailure(f"seed {seed}: the server never got ready: {child.finish(signal.SIGKILL)[-2000:]}")
    time.sleep(0.5)
    stderr = child.finish(signal.SIGTERM)
    closed = [line for line in child.lines if line.startswith("closed ")]
    if not closed:
        raise TortureFailure(f"seed {seed}: the graceful stop printed no final state: {stderr[-2000:]}")
    _, last_seq, live_hash = closed[-1].split()
    with Sequencer(url, use_snapshots=False) as replayed:
        if replayed.last_seq != int(last_seq) or replayed.state_hash() != live_hash:
            raise TortureFailure(f"seed {seed}: after a graceful stop the replay differs from the live state")


def damaged_records(url: str, seed: int) -> list[str]:
    """Damage the newest snapshot, then the journal (torn last record, flipped byte, gap), one at a
    time: recovery must notice each one. Restores every row afterwards; returns what was detected."""
    found: list[str] = []
    engine = make_engine(url)
    try:
        with Sequencer(url, use_snapshots=False) as replayed:
            truth = replayed.state_hash()
        if not _newest_snapshot(url):  # the runs were too short to take one: take one now
            with Sequencer(url, snapshot_every_commands=1) as sequencer:
                sequencer.execute([SetTradingState(STEEL[0], CONTINUOUS)])
        snap = _fetch(url, "SELECT seq, body FROM snapshots ORDER BY seq DESC")
        if snap:
            seq, body = int(snap[0][0]), bytes(snap[0][1])
            _set_body(engine, "snapshots", seq, body[: len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]))
            with Sequencer(url) as recovered:
                report = recovered.recovery
                assert report is not None
                if recovered.state_hash() != truth or report.snapshot_seq == seq or not report.skipped_snapshots:
                    raise TortureFailure(f"seed {seed}: a corrupt snapshot at seq {seq} was not skipped")
            found.append(f"corrupt snapshot at seq {seq}: skipped ({report.skipped_snapshots[0]}), same hash")
            forged = zlib.compress(zlib.decompress(body).replace(b'"next_hold_id":', b'"next_hold_id": ', 1), 1)
            _set_body(engine, "snapshots", seq, forged)  # decompresses, but is not what its hash says
            with Sequencer(url) as recovered:
                report = recovered.recovery
                assert report is not None
                if recovered.state_hash() != truth or report.snapshot_seq == seq:
                    raise TortureFailure(f"seed {seed}: a snapshot not matching its hash at seq {seq} was used")
            found.append(f"altered snapshot at seq {seq}: skipped ({report.skipped_snapshots[0]}), same hash")
            _set_body(engine, "snapshots", seq, body)
        last = int(_fetch(url, "SELECT MAX(seq) FROM journal")[0][0])
        original = bytes(_fetch(url, f"SELECT body FROM journal WHERE seq = {last}")[0][0])
        middle = last // 2
        middle_body = bytes(_fetch(url, f"SELECT body FROM journal WHERE seq = {middle}")[0][0])
        flipped = middle_body[:-1] + bytes([middle_body[-1] ^ 0x01])
        cases: list[tuple[str, int, Callable[[], None], Callable[[], None]]] = [
            ("torn last record", last, lambda: _set_body(engine, "journal", last, original[: len(original) // 2]),
             lambda: _set_body(engine, "journal", last, original)),
            ("flipped byte", middle, lambda: _set_body(engine, "journal", middle, flipped),
             lambda: _set_body(engine, "journal", middle, middle_body)),
        ]  # fmt: skip
        for name, seq, damage, restore in cases:
            damage()
            for use_snapshots in (True, False):
                try:
                    with Sequencer(url, use_snapshots=use_snapshots):
                        pass
                except JournalCorrupt as exc:
                    if str(seq) not in str(exc):
                        raise TortureFailure(f"seed {seed}: {name} reported without its seq: {exc}") from None
                    detected = str(exc)
                else:
                    if use_snapshots and seq <= _newest_snapshot(url):
                        continue  # the damaged record lies under the snapshot: not read
                    raise TortureFailure(f"seed {seed}: recovery accepted a {name} at seq {seq}")
            found.append(f"{name} at seq {seq}: recovery refused ({detected})")
            restore()
        row = _fetch(url, f"SELECT seq, ts_ns, kind, body, crc32 FROM journal WHERE seq = {last - 1}")[0]
        with engine.begin() as conn:
            conn.execute(text(f"DELETE FROM journal WHERE seq = {last - 1}"))
        try:
            with Sequencer(url, use_snapshots=False):
                pass
        except JournalGap as exc:
            found.append(f"gap at seq {last - 1}: recovery refused ({exc})")
        else:
            raise TortureFailure(f"seed {seed}: recovery accepted a journal gap at seq {last - 1}")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO journal (seq, ts_ns, kind, body, crc32) VALUES (:s, :t, :k, :b, :c)"),
                {"s": row[0], "t": row[1], "k": row[2], "b": bytes(row[3]), "c": row[4]},
            )
        with Sequencer(url) as restored:
            if restored.state_hash() != truth:
                raise TortureFailure(f"seed {seed}: the restored journal does not recover the same state")
    finally:
        engine.dispose()
    return found


def _newest_snapshot(url: str) -> int:
    return int(_fetch(url, "SELECT COALESCE(MAX(seq), 0) FROM snapshots")[0][0])


def _set_body(engine: Any, table: str, seq: int, body: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET body = :b WHERE seq = :s"), {"b": body, "s": seq})


if __name__ == "__main__":  # pragma: no cover - the child process
    child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
