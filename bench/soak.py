"""Soak: the real server under a steady open-loop order rate from many WebSocket clients,
reporting latency percentiles and the server's memory over time.

    bulkex torture soak --seconds 600 --rate 2000 --clients 500 [--database-url URL]

The server (``GatewayServer``: sequencer, core, journal, WebSocket endpoint) runs as a child
process; this process runs the clients in one event loop. Each client sends at rate/clients
orders per second on its own schedule (open loop: a slow answer does not slow the sending, so
queueing shows in the latency): half resting GTC orders near the reference price, half IOC
orders that cross, and a cancel of its oldest resting order whenever it has more than 20, so
the books stay bounded. Every interval prints the orders sent and answered, the answer rate,
latency p50/p99/p99.9/max (send to answer, milliseconds) and the server's resident memory
(VmRSS of the server and its writer process). At the end: every acknowledged order is in
the journal with its seq (nothing lost), and the memory growth between the first and the
last interval is reported against the stated bound.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.torture import STEEL, _setup, _traders
from exchange import Settings, make_engine, upgrade

__all__ = ["SoakFailure", "SoakReport", "percentile", "soak"]

MAX_CLIENTS = 2_000
MAX_RATE = 100_000
MEMORY_BOUND_MIB_PER_MIN = 64
"""The stated bound: resident memory may grow by at most this much per minute of soak after the
first interval (the core keeps every order's client id for the day and every deal; the rest
must stay flat)."""


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
    def growth_mib_per_min(self) -> float:
        minutes = max((len(self.intervals) - 1) * self.intervals[0]["seconds"] / 60, 1e-9) if self.intervals else 1
        return (self.rss_last_mib - self.rss_first_mib) / minutes

    def lines(self) -> list[str]:
        out = [
            f"soak on {self.database}: {self.clients} clients, {self.rate} orders/s offered, {self.seconds:.0f} s",
            "   t_s   sent  answered  answers/s  p50_ms  p99_ms  p99.9_ms  max_ms  rss_mib",
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
            f"({self.growth_mib_per_min:+.1f} MiB/min; bound {MEMORY_BOUND_MIB_PER_MIN} MiB/min)"
        )
        return out


def _own_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rss_mib(pid: int) -> float:
    """The server's resident memory: its process and its direct children (the writer process)."""
    total = _own_rss_mib(pid)
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += sum(_own_rss_mib(int(child)) for child in (task / "children").read_text().split())
    return total


def _tail(stream: Any) -> str:
    stream.seek(0)
    return str(stream.read().decode(errors="replace")[-2000:])


def child(url: str, ring_messages: int) -> None:  # pragma: no cover - runs in the child
    """The server under test (``python -m bench.soak URL RING``; RING 0: the default private ring)."""
    from api._limits import GatewayLimits
    from api._server import GatewayServer, run_server

    limits = GatewayLimits(private_ring_messages=ring_messages) if ring_messages else GatewayLimits()

    settings = Settings(database_url=url, host="127.0.0.1", port=1)

    def ready(server: GatewayServer) -> None:
        sys.stdout.write(f"ready {server.port}\n")
        sys.stdout.flush()

    asyncio.run(run_server(settings, host="127.0.0.1", port=0, schedule=False, ready=ready, limits=limits))


class _Window:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.sent = 0


class _Totals:
    sent = 0
    answered = 0


async def _client(
    url: str, key: tuple[str, str, str], rate_per_s: float, until: float, window: list[_Window],
    acked: list[tuple[int, str]], errors: dict[str, int], rnd: random.Random,
) -> None:  # fmt: skip
    from api._client import Client, RequestError

    account, key_id, secret = key
    client = Client(url, key_id, secret)
    await client.connect()
    loop = asyncio.get_running_loop()
    live: list[int] = []
    pending: set[asyncio.Task[None]] = set()
    counter = 0

    async def one(make: Any, cid: str | None) -> None:
        started = time.perf_counter()
        window[0].sent += 1
        _Totals.sent += 1
        try:
            result = await make
        except RequestError as exc:  # an answer too (a cancel of an order that traded away meanwhile)
            errors[exc.code] = errors.get(exc.code, 0) + 1
            window[0].latencies_ms.append((time.perf_counter() - started) * 1000)
            _Totals.answered += 1
            return
        except ConnectionError:
            errors["connection"] = errors.get("connection", 0) + 1
            return
        window[0].latencies_ms.append((time.perf_counter() - started) * 1000)
        _Totals.answered += 1
        if cid is not None:
            acked.append((result["seq"], cid))
            if result["open_lots"] > 0:
                live.append(result["order_id"])

    next_at = loop.time() + rnd.random() / rate_per_s
    while loop.time() < until:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at += 1 / rate_per_s
        if len(live) > 20:
            task = loop.create_task(one(client.cancel_order(live.pop(0)), None))
        else:
            counter += 1
            symbol = rnd.choice(STEEL)
            reference = 3_500 if symbol == STEEL[0] else 3_800
            side = rnd.choice(("buy", "sell"))
            crossing = rnd.random() < 0.5
            offset = rnd.randint(1, 3) * (1 if (side == "buy") == crossing else -1)
            cid = f"{account}-s{counter}"
            order = client.place_order(
                symbol, side, f"{reference + offset}.00", rnd.randint(1, 3),
                client_order_id=cid, time_in_force="ioc" if crossing else "gtc",
            )  # fmt: skip
            task = loop.create_task(one(order, cid))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    with contextlib.suppress(Exception):
        await client.close()


async def _drive(
    url: str, keys: list[tuple[str, str, str]], rate: int, seconds: float, interval_s: float, pid: int,
    report: SoakReport, log: Callable[[str], None], seed: int,
) -> list[tuple[int, str]]:  # fmt: skip
    loop = asyncio.get_running_loop()
    _Totals.sent = _Totals.answered = 0
    window = [_Window()]
    acked: list[tuple[int, str]] = []
    until = loop.time() + seconds
    per_client = rate / len(keys)
    rnd = random.Random(seed)
    tasks = [
        loop.create_task(
            _client(url, key, per_client, until, window, acked, report.errors, random.Random(rnd.random()))
        )
        for key in keys
    ]
    started = loop.time()
    while loop.time() < until:
        await asyncio.sleep(min(interval_s, max(0.0, until - loop.time())))
        w, window[0] = window[0], _Window()
        values = sorted(w.latencies_ms)
        row = {
            "t_s": round(loop.time() - started, 1), "seconds": interval_s, "sent": w.sent, "answered": len(values),
            "answers_per_s": len(values) / interval_s, "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99), "p999_ms": percentile(values, 0.999),
            "max_ms": values[-1] if values else 0.0, "rss_mib": _rss_mib(pid),
        }  # fmt: skip
        report.intervals.append(row)
        log("")  # the caller prints the interval's row
    await asyncio.gather(*tasks, return_exceptions=True)
    report.sent, report.answered = _Totals.sent, _Totals.answered
    return acked


def soak(
    database_url: str, seconds: float, rate: int, clients: int, interval_s: float = 10.0,
    seed: int = 1, log: Callable[[str], None] = print, ring_messages: int = 0,
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
        return _run(database_url, keys, seconds, rate, clients, interval_s, seed, log, stderr_file, ring_messages)


def _run(
    database_url: str, keys: list[tuple[str, str, str]], seconds: float, rate: int, clients: int,
    interval_s: float, seed: int, log: Callable[[str], None], stderr_file: Any, ring_messages: int,
) -> SoakReport:  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", database_url, str(ring_messages)],
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
    child(sys.argv[1], int(sys.argv[2]))
