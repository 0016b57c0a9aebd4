"""Gateway benchmark on loopback: ``bulkex bench gateway [--json]``.

The exchange (sequencer, journal on a fresh SQLite file unless a database URL
is given, WebSocket gateway with its default limits, garbage collection and GIL
switch interval tuned as ``bulkex serve`` does) runs in a child process; the order load runs in
`processes` other processes, so no load generator shares the server's
interpreter (or its GIL).

1. Idle memory: the server's resident set size before and after opening
   `subscribers` idle connections, divided by their number (first, on a
   fresh process: after the order load the allocator reuses freed memory).
2. Fan-out: those connections subscribe to one instrument's book; a
   publisher places non-crossing orders at `publish_rate` per second, each
   changing one level; figures: publish-to-receive latency per subscriber
   message, measured from the publisher sending the order to the
   subscriber receiving the delta (so it includes the order's own path).
3. Latency at a rate (open loop): `clients` connections, one trader key
   each, send `rate` orders/s in total on a fixed schedule that does not
   wait for answers, for `seconds`; figures: orders/s answered (until the
   last answer) and order-to-acknowledgement latency measured from the
   moment each order was DUE (so a load generator or server that falls
   behind shows up as latency, not as a politely lower rate).
4. Capacity (closed loop): the same clients keep WINDOW orders in flight
   each; figures: orders/s answered and the latency at that saturation
   (queueing included: by Little's law about clients x WINDOW / rate, so it
   says little about service time), and the server's CPU time per order.

An order's answer is either ``accepted`` or a core reject (both are answered
after the journal commit); the counts of each are printed. Prints the
figures, then one JSON line (the last line of output).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "print_report", "run"]

SYMBOL = "RB-HRB400E-20"
REFERENCE = 3500
WINDOW = 8
"""Orders in flight per client in the capacity run."""
TICK_S = 0.001
"""The open-loop sender wakes this often and sends every order due."""
TARGETS = {"orders_per_s": 20_000, "order_to_ack_ms_p99": 10.0, "publish_to_receive_ms_p99": 50.0}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve(database_url: str, accounts: int, info_path: str) -> None:
    """Child process: run the exchange, write its URL and keys, wait for stdin to close."""
    from api._harness import running_exchange
    from api._server import tune_process
    from exchange._warehouse_rule import RequireReceipts

    async with running_exchange(database_url) as ex:
        # the gateway is measured here, not the warehouse (`bench delivery` measures selling against
        # receipts): the receipt rule goes off through its staff command and sellers hold no receipts
        ex.execute([RequireReceipts(symbol, False, "bench-gateway") for symbol in ex.symbols])
        keys = [ex.trader_key(f"B{n:03d}", receipts=False) for n in range(accounts)]
        tune_process()  # as `bulkex serve` does
        Path(info_path).write_text(json.dumps({"url": ex.url, "keys": keys, "pid": os.getpid()}))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# ------------------------------------------------------------ load generator


def _client_class() -> Any:
    """A websockets client connection that hands each complete message to a callback (no reader task
    per message) and sends without awaiting (the load generator paces itself)."""
    from websockets.asyncio.client import ClientConnection
    from websockets.frames import TEXT, Frame

    class LoadClient(ClientConnection):
        on_text: Callable[[bytes], None] | None = None

        def process_event(self, event: Any) -> None:
            on_text = self.on_text
            if on_text is not None and type(event) is Frame and event.opcode is TEXT and event.fin:
                on_text(bytes(event.data))
            else:
                super().process_event(event)

        def send_now(self, frame: bytes) -> None:
            self.protocol.send_text(frame)
            self.send_data()

    return LoadClient


async def _login(url: str, key_id: str, secret: str, create_connection: Any = None) -> Any:
    from websockets.asyncio.client import connect

    from api._keys import derive_signing_key, sign_login

    ws = await connect(url, max_size=None, compression=None, create_connection=create_connection)
    ts = time.time_ns() // 1_000_000
    nonce = os.urandom(8).hex()
    signature = sign_login(key_id, derive_signing_key(key_id, secret), ts, nonce)
    await ws.send(json.dumps({"type": "login", "id": "l", "key_id": key_id, "timestamp_ms": ts, "nonce": nonce,
                              "signature": signature}))  # fmt: skip
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("id") == "l":  # (a heartbeat may come first)
            break
    assert reply["type"] == "accepted", reply
    return ws


def _order_frame(number: int, counter: int, tag: str) -> bytes:
    """Alternating non-crossing buys and sells near the reference; every third order a crossing IOC."""
    import orjson

    side = "buy" if counter % 2 else "sell"
    offset = (counter * 7 + number) % 10
    price = REFERENCE - 1 - offset if side == "buy" else REFERENCE + 1 + offset
    tif = "gtc"
    if counter % 3 == 0:
        tif = "ioc"
        price = REFERENCE + 12 if side == "buy" else REFERENCE - 12
    return orjson.dumps(
        {"type": "new_order", "id": str(counter), "instrument": SYMBOL, "client_order_id": f"{tag}{number}-{counter}",
         "side": side, "price": f"{price}.00", "quantity_lots": 1, "time_in_force": tif}
    )  # fmt: skip


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.sent = 0
        self.started = 0.0
        self.last_answer = 0.0


async def _load(url: str, keys: list[list[str]], first: int, mode: str, rate: float, seconds: float) -> _Tally:
    """One load process: `keys` clients; mode "closed" (WINDOW in flight each) or "open" (`rate` orders/s)."""
    import orjson

    cls = _client_class()
    clients = [await _login(url, key[0], key[1], cls) for key in keys]
    tally = _Tally()
    perf = time.perf_counter
    latencies = tally.latencies
    outcomes = tally.outcomes
    loop = asyncio.get_running_loop()
    counters = [0] * len(clients)
    due_at: list[dict[bytes, float]] = [{} for _ in clients]
    room: list[asyncio.Event] = [asyncio.Event() for _ in clients]

    def reader(index: int) -> Callable[[bytes], None]:
        waiting = due_at[index]
        event = room[index]

        def on_text(raw: bytes) -> None:
            now = perf()
            message = orjson.loads(raw)
            rid = message.get("id")
            t0 = waiting.pop(rid.encode(), None) if type(rid) is str else None
            if t0 is None:
                return
            latencies.append(now - t0)
            tally.last_answer = now
            outcome = message.get("code") or message["result"]["status"]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            event.set()

        return on_text

    for index, ws in enumerate(clients):
        ws.on_text = reader(index)

    def send(index: int, at: float) -> None:
        counters[index] += 1
        counter = counters[index]
        due_at[index][str(counter).encode()] = at
        clients[index].send_now(_order_frame(first + index, counter, mode[0]))
        tally.sent += 1

    started = tally.started = perf()
    stop_at = started + seconds
    if mode == "closed":

        async def closed(index: int) -> None:
            while perf() < stop_at:
                while len(due_at[index]) < WINDOW:
                    send(index, perf())
                room[index].clear()
                await room[index].wait()

        await asyncio.gather(*(closed(index) for index in range(len(clients))))
    else:
        total = int(rate * seconds)
        n = 0
        while n < total:
            due = min(total, int((perf() - started) * rate) + 1)
            while n < due:
                send(n % len(clients), started + n / rate)
                n += 1
            await asyncio.sleep(TICK_S)
    deadline = perf() + 10
    while any(due_at) and perf() < deadline:
        await asyncio.sleep(0.01)
    tally.outcomes["unanswered"] = sum(len(d) for d in due_at)
    for ws in clients:
        await ws.close()
    del loop
    return tally


def _load_process(url: str, keys: list[list[str]], first: int, mode: str, rate: float, seconds: float,
                  start_at: float, conn: Any) -> None:  # fmt: skip
    """Entry of a load process: wait for the common start (wall clock), run, send the tally back."""

    async def main() -> _Tally:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return await _load(url, keys, first, mode, rate, seconds)

    tally = asyncio.run(main())
    conn.send((tally.latencies, tally.outcomes, tally.sent, max(0.0, tally.last_answer - tally.started)))
    conn.close()


def _run_load(url: str, keys: list[list[str]], clients: int, processes: int, mode: str, rate: float,
              seconds: float) -> dict[str, Any]:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    pipes = []
    workers = []
    start_at = time.time() + 3.0  # every process has connected and logged in by then
    per = -(-clients // processes)
    for p in range(processes):
        chunk = keys[p * per : min(clients, (p + 1) * per)]
        if not chunk:
            continue
        receive, send = context.Pipe(duplex=False)
        share = rate * len(chunk) / clients
        worker = context.Process(
            target=_load_process, args=(url, chunk, p * per, mode, share, seconds, start_at, send), daemon=True
        )
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    sent = 0
    elapsed = seconds
    for receive in pipes:
        part_latencies, part_outcomes, part_sent, part_elapsed = receive.recv()
        elapsed = max(elapsed, part_elapsed)
        latencies.extend(part_latencies)
        for name, count in part_outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
        sent += part_sent
    for worker in workers:
        worker.join(30)
    answered = len(latencies)
    return {
        "sent": sent,
        "answered": answered,
        "orders_per_s": round(answered / elapsed),  # until the last answer: a backlog lowers the rate
        "ms_p50": round(_percentile(latencies, 0.50) * 1000, 3),
        "ms_p99": round(_percentile(latencies, 0.99) * 1000, 3),
        "ms_p999": round(_percentile(latencies, 0.999) * 1000, 3),
        "outcomes": dict(sorted(outcomes.items())),
    }


# ------------------------------------------------------------------ fan-out


async def _fanout(url: str, keys: list[list[str]], subscribers: int, publish_rate: float, seconds: float,
                  server_pid: int, start_seq: int) -> dict[str, Any]:  # fmt: skip
    import orjson
    from websockets.asyncio.client import connect

    rss_before = _rss_kb(server_pid)
    cls = _client_class()
    connections: list[Any] = []
    for _ in range(subscribers):
        connections.append(await connect(url, max_size=None, compression=None, create_connection=cls))
    await asyncio.sleep(0.5)
    rss_after = _rss_kb(server_pid)
    per_connection_kb = (rss_after - rss_before) / max(1, subscribers)
    publisher = await _login(url, keys[0][0], keys[0][1])
    # subscribe every connection to the book; skip their snapshots
    for ws in connections:
        await ws.send(
            orjson.dumps({"type": "subscribe", "id": "s", "channel": "book", "instrument": SYMBOL}), text=True
        )
    for ws in connections:
        await ws.recv()
        await ws.recv()
    published: dict[int, float] = {}
    latencies: list[float] = []
    received = 0

    def listen(raw: bytes) -> None:
        nonlocal received
        now = time.perf_counter()
        message = orjson.loads(raw)
        if message.get("type") == "book" and not message["snapshot"]:
            t0 = published.get(message["seq"])
            if t0 is not None:
                latencies.append(now - t0)
                received += 1

    for ws in connections:
        ws.on_text = listen
    count = int(publish_rate * seconds)
    for n in range(count):
        price = REFERENCE - 40 - n % 50  # a fresh or changed bid level below the market
        frame = orjson.dumps({"type": "new_order", "id": f"p{n}", "instrument": SYMBOL, "client_order_id": f"p{n}",
                              "side": "buy", "price": f"{price}.00", "quantity_lots": 1})  # fmt: skip
        t0 = time.perf_counter()
        # the publisher alone changes the book now: its n-th order's one BOOK event is delta start + n + 1
        published[start_seq + n + 1] = t0
        await publisher.send(frame, text=True)
        while True:
            reply = orjson.loads(await publisher.recv())
            if reply.get("id") == f"p{n}":
                break
        await asyncio.sleep(max(0.0, 1 / publish_rate - (time.perf_counter() - t0)))
    deadline = time.perf_counter() + 5
    while received < count * subscribers and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await publisher.close()
    for ws in connections:
        await ws.close()
    return {
        "subscribers": subscribers,
        "deltas_published": count,
        "messages_received": received,
        "messages_expected": count * subscribers,
        "publish_to_receive_ms_p50": round(_percentile(latencies, 0.50) * 1000, 3),
        "publish_to_receive_ms_p99": round(_percentile(latencies, 0.99) * 1000, 3),
        "idle_connection_kb": round(per_connection_kb, 1),
    }


async def _book_seq(url: str) -> int:
    import orjson
    from websockets.asyncio.client import connect

    async with connect(url) as ws:
        await ws.send(
            orjson.dumps({"type": "subscribe", "id": "x", "channel": "book", "instrument": SYMBOL}), text=True
        )
        answer = orjson.loads(await ws.recv())
        assert answer["type"] == "accepted", answer
        seq: int = answer["result"]["seq"]
        return seq


# --------------------------------------------------------------------- run


def run(
    database_url: str | None = None,
    clients: int = 50,
    seconds: float = 5.0,
    rate: float = 20_000.0,
    subscribers: int = 1_000,
    publish_rate: float = 20.0,
    processes: int = 2,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures."""
    assert clients >= 1, clients
    assert processes >= 1, processes
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        info_path = Path(folder) / "info.json"
        root = Path(__file__).resolve().parent.parent
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import asyncio, bench.gateway as g; asyncio.run(g._serve({url!r}, {clients}, {str(info_path)!r}))",
            ],
            stdin=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        try:
            deadline = time.monotonic() + 60
            while not info_path.exists() or not info_path.read_text():
                assert child.poll() is None, "the server process exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            info = json.loads(info_path.read_text())
            ws_url, keys, pid = info["url"], info["keys"], info["pid"]
            # Fan-out and idle memory first, on a fresh process (after the order load the allocator
            # reuses freed memory, and the RSS no longer grows with new connections).
            start_seq = asyncio.run(_book_seq(ws_url))
            fanout = asyncio.run(_fanout(ws_url, keys, subscribers, publish_rate, 5.0, pid, start_seq))
            cpu_before = _process_cpu_s(pid)
            paced = _run_load(ws_url, keys, clients, processes, "open", rate, seconds)
            cpu_paced = _process_cpu_s(pid) - cpu_before
            cpu_before = _process_cpu_s(pid)
            capacity = _run_load(ws_url, keys, clients, processes, "closed", 0.0, seconds)
            cpu_capacity = _process_cpu_s(pid) - cpu_before
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    load_after = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "gateway",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu {_cpu_model()}, Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "clients": clients,
        "load_processes": processes,
        "capacity_orders_per_s": capacity["orders_per_s"],
        "capacity_order_to_ack_ms_p50": capacity["ms_p50"],
        "capacity_order_to_ack_ms_p99": capacity["ms_p99"],
        "capacity_outcomes": capacity["outcomes"],
        "capacity_server_cpu_us_per_order": round(cpu_capacity / max(1, capacity["answered"]) * 1e6, 1),
        "offered_orders_per_s": round(rate),
        "orders_per_s": paced["orders_per_s"],
        "orders_sent": paced["sent"],
        "orders_answered": paced["answered"],
        "order_to_ack_ms_p50": paced["ms_p50"],
        "order_to_ack_ms_p99": paced["ms_p99"],
        "order_to_ack_ms_p999": paced["ms_p999"],
        "outcomes": paced["outcomes"],
        "server_cpu_us_per_order": round(cpu_paced / max(1, paced["answered"]) * 1e6, 1),
        **fanout,
    }
    result["targets"] = TARGETS
    result["meets_targets"] = (
        result["orders_per_s"] >= TARGETS["orders_per_s"]
        and result["order_to_ack_ms_p99"] < TARGETS["order_to_ack_ms_p99"]
        and result["publish_to_receive_ms_p99"] < TARGETS["publish_to_receive_ms_p99"]
        and result["messages_received"] == result["messages_expected"]
    )
    return result


def print_report(result: dict[str, Any], json_only: bool = False) -> None:
    if not json_only:
        print(f"gateway benchmark {result['date']} on {result['machine']} ({result['database']}), load average "
              f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after")  # fmt: skip
        print(f"  capacity (closed loop, {result['clients']} clients x {WINDOW} in flight): "
              f"{result['capacity_orders_per_s']:,} orders/s, order-to-ack p50 "
              f"{result['capacity_order_to_ack_ms_p50']} ms, p99 {result['capacity_order_to_ack_ms_p99']} ms, "
              f"server {result['capacity_server_cpu_us_per_order']} us CPU per order")  # fmt: skip
        print(f"  at {result['offered_orders_per_s']:,} orders/s offered (open loop, {result['clients']} clients): "
              f"{result['orders_per_s']:,} orders/s answered, order-to-ack p50 {result['order_to_ack_ms_p50']} ms, "
              f"p99 {result['order_to_ack_ms_p99']} ms, p99.9 {result['order_to_ack_ms_p999']} ms; "
              f"answers {result['outcomes']}")  # fmt: skip
        print(f"  fan-out: {result['subscribers']} subscribers, {result['messages_received']:,} of "
              f"{result['messages_expected']:,} deltas received, publish-to-receive p50 "
              f"{result['publish_to_receive_ms_p50']} ms, p99 {result['publish_to_receive_ms_p99']} ms")  # fmt: skip
        print(f"  memory per idle connection: {result['idle_connection_kb']} KiB")
        print(f"  targets {result['targets']}: {'met' if result['meets_targets'] else 'NOT met'}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    print_report(run())
