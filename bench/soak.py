"""Soak: the real server under a steady open-loop order rate from many WebSocket clients,
reporting latency percentiles and the server's memory over time.

    bulkex torture soak --seconds 600 --rate 2000 --clients 500 [--database-url URL]

The server (``GatewayServer``: sequencer, core, journal, WebSocket endpoint) runs as a child
process; this process runs the clients in one event loop (``_Load``: one scheduler for all of
them, frames built here, answers read without a task per request). Each client sends at
rate/clients orders per second on its own schedule (open loop: a slow answer does not slow the
sending, so queueing shows in the latency): half resting GTC orders near the reference price,
half IOC orders that cross, and a cancel of its oldest resting order whenever it has more than
20, so the books stay bounded. Every interval prints the orders sent and answered, the answer
rate, latency p50/p99/p99.9/max (from the moment each order was due to its answer,
milliseconds) and the server's resident memory
(VmRSS of the server and its writer process). At the end: every acknowledged order is in
the journal with its seq (nothing lost), and the memory growth between the first and the
last interval is reported against the stated bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from bench.gateway import _children, _client_class, _client_frame, _login
from bench.torture import STEEL, _setup, _traders
from exchange import Settings, make_engine, upgrade

__all__ = ["SoakFailure", "SoakReport", "percentile", "soak"]

MAX_CLIENTS = 2_000
TICK_S = 0.001
"""The load's scheduler wakes this often and sends every order due."""
MAX_RATE = 100_000
MEMORY_BOUND_BYTES_PER_ORDER = 2_048
"""The stated bound: after the first interval, the server's resident memory (both processes) may
grow by at most this much per order answered. The exchange keeps the day's state on purpose, and
the soak's flow never settles: every trade opens a deal that stays until its delivery (about 600
bytes with its holds), every resting order its holds (about 700 bytes), every client order id its
duplicate check (about 90 bytes); measured 1.2-1.6 KiB per order (docs/reliability.md). A leak (a
cache, a ring, a queue without a limit) shows as growth beyond it. The private streams' replay
buffer is bounded on its own (``GatewayLimits.private_replay_messages``: about 320 MiB when full,
which at 1,000 orders/s takes it about 100 s): a run measuring this bound gives it a budget that
fills within the first interval (``replay_messages``), or its filling counts as growth."""


class SoakFailure(AssertionError):
    """Something was lost or the server died."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@dataclass
class SoakReport:
    seconds: float
    rate: int
    clients: int
    database: str
    intervals: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    journaled_checked: int = 0
    rss_first_mib: float = 0.0
    rss_last_mib: float = 0.0

    @property
    def growth_bytes_per_order(self) -> float:
        """Memory growth from the first interval's end to the last's, per order answered meanwhile."""
        answered = sum(row["answered"] for row in self.intervals[1:])
        return (self.rss_last_mib - self.rss_first_mib) * 2**20 / answered if answered else 0.0

    @property
    def within_memory_bound(self) -> bool:
        return self.growth_bytes_per_order <= MEMORY_BOUND_BYTES_PER_ORDER

    @property
    def growth_mib_per_min(self) -> float:
        minutes = max((len(self.intervals) - 1) * self.intervals[0]["seconds"] / 60, 1e-9) if self.intervals else 1
        return (self.rss_last_mib - self.rss_first_mib) / minutes

    def lines(self) -> list[str]:
        out = [
            f"soak on {self.database}: {self.clients} clients, {self.rate} orders/s offered, {self.seconds:.0f} s",
            "   t_s   sent  answered  answers/s  p50_ms  p99_ms  p99.9_ms  max_ms  mem_mib",
        ]
        for row in self.intervals:
            out.append(
                f"{row['t_s']:6.0f} {row['sent']:6d} {row['answered']:9d} {row['answers_per_s']:10.0f} "
                f"{row['p50_ms']:7.1f} {row['p99_ms']:7.1f} {row['p999_ms']:9.1f} {row['max_ms']:7.1f} "
                f"{row['rss_mib']:8.1f}"
            )
        out.append(
            f"total: {self.sent} sent, {self.answered} answered, errors {self.errors or 'none'}; "
            f"{self.journaled_checked} acknowledged orders all found in the journal"
        )
        out.append(
            f"memory: {self.rss_first_mib:.1f} MiB after the first interval, {self.rss_last_mib:.1f} MiB at the end "
            f"({self.growth_mib_per_min:+.1f} MiB/min, {self.growth_bytes_per_order:,.0f} bytes per order answered; "
            f"bound {MEMORY_BOUND_BYTES_PER_ORDER:,} bytes per order: "
            f"{'within' if self.within_memory_bound else 'NOT within'})"
        )
        return out


def _own_memory_mib(pid: int) -> float:
    """The process's proportional set size (PSS: each page shared with other processes counted
    in shares, so a snapshot export forked from the writer does not count the writer's memory
    twice); its resident set size where the kernel gives no PSS."""
    for path, name in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(name):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return 0.0


def _rss_mib(pid: int) -> float:
    """The server's memory: its process and its descendants (the writer process, its committer
    process, a snapshot export running), each page counted once (PSS)."""
    return _own_memory_mib(pid) + sum(_own_memory_mib(child) for child in _children(pid))


def _tail(stream: Any) -> str:
    stream.seek(0)
    return str(stream.read().decode(errors="replace")[-2000:])


def child(url: str, ring_messages: int, replay_messages: int) -> None:  # pragma: no cover - runs in the child
    """The server under test (``python -m bench.soak URL RING REPLAY``; 0: the default private ring per
    stream, the default replay budget of all streams)."""
    from api._limits import PRIVATE_REPLAY_MESSAGES, PRIVATE_RING_MESSAGES, GatewayLimits
    from api._server import GatewayServer, run_server

    limits = GatewayLimits(
        private_ring_messages=ring_messages or PRIVATE_RING_MESSAGES,
        private_replay_messages=replay_messages or PRIVATE_REPLAY_MESSAGES,
    )

    settings = Settings(database_url=url, host="127.0.0.1", port=1)

    def ready(server: GatewayServer) -> None:
        sys.stdout.write(f"ready {server.port}\n")
        sys.stdout.flush()

    asyncio.run(run_server(settings, host="127.0.0.1", port=0, schedule=False, ready=ready, limits=limits))


class _Window:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.sent = 0


class _Load:
    """The soak's clients in one event loop, kept cheap so that the generator does not take the
    server's cores: one scheduler for all clients (a heap of due times, woken every TICK_S), each
    frame built and masked here and written once per client per pass of the loop, the answers
    read by ``bench.gateway``'s client connection class without a reader task or a future per
    request. Latency runs from the moment an order was DUE, so a generator that falls behind
    shows as latency rather than as a politely lower rate."""

    def __init__(self, rate: int, seconds: float, seed: int, errors: dict[str, int]) -> None:
        self.rate = rate
        self.seconds = seconds
        self.rnd = random.Random(seed)
        self.errors = errors
        self.window = _Window()
        self.acked: list[tuple[int, str]] = []  # (seq, client order id) of every acknowledged order
        self.sent = 0
        self.answered = 0
        self.clients: list[Any] = []
        self.accounts: list[str] = []
        self.masks: list[bytes] = []
        self.live: list[list[int]] = []  # per client: its resting orders, oldest first
        self.pending: list[dict[str, tuple[float, str | None]]] = []  # per client: id -> (due, cid)
        self.counters: list[int] = []

    async def connect(self, url: str, keys: list[tuple[str, str, str]]) -> None:
        cls = _client_class()
        for number, (account, key_id, secret) in enumerate(keys):
            ws = await _login(url, key_id, secret, cls)
            self.clients.append(ws)
            self.accounts.append(account)
            self.masks.append(os.urandom(4))
            self.live.append([])
            self.pending.append({})
            self.counters.append(0)
            ws.on_text = self._reader(number)

    def _reader(self, number: int) -> Callable[[bytes], None]:
        pending = self.pending[number]
        live = self.live[number]
        loads = orjson.loads
        clock = time.perf_counter

        def on_text(raw: bytes) -> None:
            message = loads(raw)
            entry = pending.pop(message.get("id"), None)
            if entry is None:
                return  # a heartbeat
            due, cid = entry
            self.window.latencies_ms.append((clock() - due) * 1000)
            self.answered += 1
            if message["type"] == "error":  # an answer too (a cancel of an order that traded away)
                code = message["code"]
                self.errors[code] = self.errors.get(code, 0) + 1
                return
            if cid is not None:
                result = message["result"]
                self.acked.append((result["seq"], cid))
                if result["open_lots"] > 0:
                    live.append(result["order_id"])

        return on_text

    def _send(self, number: int, due: float) -> None:
        rnd = self.rnd
        self.counters[number] += 1
        rid = str(self.counters[number])
        live = self.live[number]
        if len(live) > 20:
            body: dict[str, Any] = {"type": "cancel_order", "id": rid, "order_id": live.pop(0)}
            cid = None
        else:
            symbol = rnd.choice(STEEL)
            reference = 3_500 if symbol == STEEL[0] else 3_800
            side = rnd.choice(("buy", "sell"))
            crossing = rnd.random() < 0.5
            offset = rnd.randint(1, 3) * (1 if (side == "buy") == crossing else -1)
            cid = f"{self.accounts[number]}-s{rid}"
            body = {"type": "new_order", "id": rid, "instrument": symbol, "client_order_id": cid, "side": side,
                    "price": f"{reference + offset}.00", "quantity_lots": rnd.randint(1, 3),
                    "time_in_force": "ioc" if crossing else "gtc"}  # fmt: skip
        self.pending[number][rid] = (due, cid)
        self.window.sent += 1
        self.sent += 1
        self.clients[number].queue(_client_frame(orjson.dumps(body), self.masks[number]))

    async def run(self) -> None:
        """Send on schedule until `seconds` have passed, then wait (at most 30 s) for the answers."""
        clock = time.perf_counter
        count = len(self.clients)
        interval = count / self.rate  # each client's time between two orders
        start = clock()
        until = start + self.seconds
        due = [(start + self.rnd.random() * interval, number) for number in range(count)]
        heapq.heapify(due)
        while True:
            now = clock()
            if now >= until:
                break
            while due[0][0] <= now:
                at, number = due[0]
                self._send(number, at)
                heapq.heapreplace(due, (at + interval, number))
            await asyncio.sleep(TICK_S)
        deadline = clock() + 30
        while any(self.pending) and clock() < deadline:
            await asyncio.sleep(0.05)
        for ws in self.clients:
            with contextlib.suppress(Exception):
                await ws.close()


async def _drive(
    url: str, keys: list[tuple[str, str, str]], rate: int, seconds: float, interval_s: float, pid: int,
    report: SoakReport, log: Callable[[str], None], seed: int,
) -> list[tuple[int, str]]:  # fmt: skip
    load = _Load(rate, seconds, seed, report.errors)
    await load.connect(url, keys)
    # the generator's own collections would pause its sending and reading and count as the server's
    # latency: everything so far is frozen and automatic collection is off until the run ends
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _measure(load, pid, report, log, seconds, interval_s)
    finally:
        gc.enable()
        gc.unfreeze()


async def _measure(
    load: _Load, pid: int, report: SoakReport, log: Callable[[str], None], seconds: float, interval_s: float
) -> list[tuple[int, str]]:
    loop = asyncio.get_running_loop()
    sending = loop.create_task(load.run())
    started = loop.time()
    until = started + seconds
    while loop.time() < until:
        await asyncio.sleep(min(interval_s, max(0.0, until - loop.time())))
        w, load.window = load.window, _Window()
        values = sorted(w.latencies_ms)
        row = {
            "t_s": round(loop.time() - started, 1), "seconds": interval_s, "sent": w.sent, "answered": len(values),
            "answers_per_s": len(values) / interval_s, "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99), "p999_ms": percentile(values, 0.999),
            "max_ms": values[-1] if values else 0.0, "rss_mib": _rss_mib(pid),
        }  # fmt: skip
        report.intervals.append(row)
        log("")  # the caller prints the interval's row
    await sending
    report.sent, report.answered = load.sent, load.answered
    return load.acked


def soak(
    database_url: str, seconds: float, rate: int, clients: int, interval_s: float = 10.0,
    seed: int = 1, log: Callable[[str], None] = print, ring_messages: int = 0, replay_messages: int = 0,
) -> SoakReport:  # fmt: skip
    """Run the soak on an empty database; SoakFailure when an acknowledged order is missing or
    the server died. "answered" counts every answer, accepted or refused."""
    if not (1 <= clients <= MAX_CLIENTS):
        raise ValueError(f"clients must be 1..{MAX_CLIENTS}, not {clients}")
    if not (1 <= rate <= MAX_RATE):
        raise ValueError(f"rate must be 1..{MAX_RATE} orders/s, not {rate}")
    if not (0 < interval_s <= seconds):
        raise ValueError("the interval must be positive and at most the duration")
    upgrade(database_url)
    keys = _setup(database_url, _traders(clients), receipts=0, require_receipts=False)  # the gateway under load
    with tempfile.TemporaryFile() as stderr_file:  # a pipe nobody reads would stop a long-running server
        return _run(
            database_url, keys, seconds, rate, clients, interval_s, seed, log, stderr_file, ring_messages,
            replay_messages,
        )  # fmt: skip


def _run(
    database_url: str, keys: list[tuple[str, str, str]], seconds: float, rate: int, clients: int,
    interval_s: float, seed: int, log: Callable[[str], None], stderr_file: Any, ring_messages: int,
    replay_messages: int,
) -> SoakReport:  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", database_url, str(ring_messages), str(replay_messages)],
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert process.stdout is not None
    port_line = process.stdout.readline().decode()
    if not port_line.startswith("ready "):
        process.kill()
        process.wait()
        raise SoakFailure(f"the server did not start: {_tail(stderr_file)}")
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    url = f"ws://127.0.0.1:{int(port_line.split()[1])}"
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    report = SoakReport(seconds, rate, clients, backend)

    def log_row(_line: str) -> None:
        lines = report.lines()
        if len(report.intervals) == 1:
            log(lines[1])
        log(lines[1 + len(report.intervals)])

    try:
        acked = asyncio.run(_drive(url, keys, rate, seconds, interval_s, process.pid, report, log_row, seed))
        if process.poll() is not None:
            raise SoakFailure(f"the server died: {_tail(stderr_file)}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain.join(timeout=30)
        process.stdout.close()
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows: dict[int, str] = {
                int(r[0]): str(r[1]) for r in conn.execute(text("SELECT order_id, client_order_id FROM orders"))
            }
    finally:
        engine.dispose()
    missing = [(seq, cid) for seq, cid in acked if rows.get(seq) != cid]  # an order's id is its seq
    if missing:
        raise SoakFailure(f"{len(missing)} acknowledged orders not journaled, e.g. {missing[:3]}")
    report.journaled_checked = len(acked)
    if report.intervals:
        report.rss_first_mib = report.intervals[0]["rss_mib"]
        report.rss_last_mib = report.intervals[-1]["rss_mib"]
    for line in report.lines()[-2:]:
        log(line)
    return report


if __name__ == "__main__":  # pragma: no cover - the child process
    child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
