"""Gateway benchmark on loopback: ``bulkex bench gateway [--json]``.

The exchange (sequencer, journal on a fresh SQLite file unless a database URL
is given, WebSocket gateway with its default limits) runs in a child process,
so the load generators here do not share its interpreter.

1. Orders: `clients` connections, one trader key each, keep a window of
   orders in flight for `seconds`; figures: orders/s acknowledged and
   order-to-acknowledgement latency (send to answer, client clock).
2. Idle memory: the server's resident set size before and after opening
   `subscribers` idle connections, divided by their number.
3. Fan-out: those connections subscribe to one instrument's book; a
   publisher places non-crossing orders at `publish_rate` per second, each
   changing one level; figures: publish-to-receive latency per subscriber
   message, measured from the publisher sending the order to the
   subscriber receiving the delta (so it includes the order's own path).

Prints the figures, then one JSON line (the last line of output).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["print_report", "run"]

SYMBOL = "RB-HRB400E-20"
REFERENCE = 3500
WINDOW = 8
"""Orders in flight per client in the order run."""


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


async def _serve(database_url: str, accounts: int, info_path: str) -> None:
    """Child process: run the exchange, write its URL and keys, wait for stdin to close."""
    from api._harness import running_exchange

    async with running_exchange(database_url) as ex:
        keys = [ex.trader_key(f"B{n:03d}") for n in range(accounts)]
        Path(info_path).write_text(json.dumps({"url": ex.url, "keys": keys, "pid": os.getpid()}))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _login(url: str, key_id: str, secret: str) -> Any:
    from websockets.asyncio.client import connect

    from api._keys import derive_signing_key, sign_login

    ws = await connect(url, max_size=None, compression=None)
    ts = time.time_ns() // 1_000_000
    nonce = os.urandom(8).hex()
    signature = sign_login(key_id, derive_signing_key(key_id, secret), ts, nonce)
    await ws.send(json.dumps({"type": "login", "id": "l", "key_id": key_id, "timestamp_ms": ts, "nonce": nonce,
                              "signature": signature}))  # fmt: skip
    reply = json.loads(await ws.recv())
    assert reply["type"] == "accepted", reply
    return ws


async def _order_client(url: str, key: list[str], number: int, stop_at: float, latencies: list[float]) -> int:
    import orjson

    ws = await _login(url, key[0], key[1])
    sent_at: dict[str, float] = {}
    acked = 0
    counter = 0
    in_flight = asyncio.Semaphore(WINDOW)
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal acked
        async for raw in ws:
            message = orjson.loads(raw)
            t0 = sent_at.pop(message.get("id") or "", None)
            if t0 is not None:
                latencies.append(time.perf_counter() - t0)
                acked += 1
                in_flight.release()
                if not sent_at and time.perf_counter() >= stop_at:
                    done.set()

    task = asyncio.get_running_loop().create_task(reader())
    while time.perf_counter() < stop_at:
        await in_flight.acquire()
        counter += 1
        side = "buy" if counter % 2 else "sell"
        offset = (counter * 7 + number) % 10
        price = REFERENCE - 1 - offset if side == "buy" else REFERENCE + 1 + offset
        tif = "ioc" if counter % 3 == 0 else "gtc"
        if counter % 3 == 0:  # a crossing IOC now and then: trades
            price = REFERENCE + 12 if side == "buy" else REFERENCE - 12
        rid = f"{counter}"
        frame = orjson.dumps(
            {"type": "new_order", "id": rid, "instrument": SYMBOL, "client_order_id": f"n{number}-{counter}",
             "side": side, "price": f"{price}.00", "quantity_lots": 1, "time_in_force": tif}
        )  # fmt: skip
        sent_at[rid] = time.perf_counter()
        await ws.send(frame, text=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 10)
    await ws.close()
    task.cancel()
    return acked


async def _fanout(url: str, keys: list[list[str]], subscribers: int, publish_rate: float, seconds: float,
                  server_pid: int, start_seq: int) -> dict[str, Any]:  # fmt: skip
    import orjson
    from websockets.asyncio.client import connect

    rss_before = _rss_kb(server_pid)
    connections = []
    for _ in range(subscribers):
        connections.append(await connect(url, max_size=None, compression=None))
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

    async def listen(ws: Any) -> None:
        nonlocal received
        async for raw in ws:
            message = orjson.loads(raw)
            if message.get("type") == "book" and not message["snapshot"]:
                t0 = published.get(message["seq"])
                if t0 is not None:
                    latencies.append(time.perf_counter() - t0)
                    received += 1

    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(listen(ws)) for ws in connections]
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
    for task in tasks:
        task.cancel()
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


async def _main(url: str, keys: list[list[str]], clients: int, seconds: float, subscribers: int,
                publish_rate: float, server_pid: int) -> dict[str, Any]:  # fmt: skip
    import orjson
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    acked = await asyncio.gather(*(_order_client(url, keys[n], n, stop_at, latencies) for n in range(clients)))
    elapsed = time.perf_counter() - started
    orders = {
        "clients": clients,
        "orders_acked": sum(acked),
        "orders_per_s": round(sum(acked) / elapsed),
        "order_to_ack_ms_p50": round(_percentile(latencies, 0.50) * 1000, 3),
        "order_to_ack_ms_p99": round(_percentile(latencies, 0.99) * 1000, 3),
        "order_to_ack_ms_p999": round(_percentile(latencies, 0.999) * 1000, 3),
    }
    async with connect(url) as ws:  # the book seq before the fan-out run
        await ws.send(
            orjson.dumps({"type": "subscribe", "id": "x", "channel": "book", "instrument": SYMBOL}), text=True
        )
        answer = orjson.loads(await ws.recv())
        assert answer["type"] == "accepted", answer
        start_seq = answer["result"]["seq"]
    fanout = await _fanout(url, keys, subscribers, publish_rate, 5.0, server_pid, start_seq)
    return {**orders, **fanout}


def run(
    database_url: str | None = None,
    clients: int = 50,
    seconds: float = 5.0,
    subscribers: int = 1_000,
    publish_rate: float = 20.0,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures."""
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
            result = asyncio.run(
                _main(info["url"], info["keys"], clients, seconds, subscribers, publish_rate, info["pid"])
            )
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return {
        "benchmark": "gateway",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        **result,
    }


def print_report(result: dict[str, Any], json_only: bool = False) -> None:
    if not json_only:
        print(f"gateway benchmark {result['date']} on {result['machine']} ({result['database']})")
        print(f"  orders: {result['clients']} clients, {result['orders_per_s']:,} orders/s acknowledged, "
              f"order-to-ack p50 {result['order_to_ack_ms_p50']} ms, "
              f"p99 {result['order_to_ack_ms_p99']} ms")  # fmt: skip
        print(f"  fan-out: {result['subscribers']} subscribers, {result['messages_received']:,} of "
              f"{result['messages_expected']:,} deltas received, publish-to-receive p50 "
              f"{result['publish_to_receive_ms_p50']} ms, p99 {result['publish_to_receive_ms_p99']} ms")  # fmt: skip
        print(f"  memory per idle connection: {result['idle_connection_kb']} KiB")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    print_report(run())
