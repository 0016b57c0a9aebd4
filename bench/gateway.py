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
after the journal commit), or a gateway limit such as TOO_MANY_PENDING when
the server falls behind; the counts of each are printed, and refusals are
left out of the rates, the latencies and the CPU per order. Every order is its
own frame and its own request (one order per frame, as most trading clients
send them).

The load generator is kept cheap so that it takes little CPU from the
server on the same cores: each process logs its clients in (with the
websockets library) and builds every order frame (JSON, WebSocket header,
masked payload) before the common start; the run itself drives the clients'
sockets from one epoll loop, no event loop: each client's frames of one pass
leave in one send, and answers are read with its own parser (a ping is
answered with a pong).
The server runs as ``bulkex serve`` does: the gateway in one process, the
sequencer in its writer process (exchange/_writer.py), the journal's
transactions in the writer's committer process (exchange/_committer.py). CPU
figures per answered order: the server (all three processes), the gateway's
event-loop thread alone, the writer and committer processes together
("writer processes"), and the load processes together. On a shared machine these are the figures to
compare between runs; rates and latencies also move with other jobs.

Prints the figures, then one JSON line (the last line of output).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import select
import socket
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
REFUSED = frozenset({"TOO_MANY_PENDING", "BUSY", "RATE_LIMITED", "KEY_RATE_LIMITED", "UNAVAILABLE"})
"""Answers of the gateway that turn an order away before the core sees it (a server that falls behind
answers TOO_MANY_PENDING): counted apart, left out of the rate and the latencies."""
READ_MAX_FRAME_BYTES = 1 << 24
"""The load clients read server frames up to this size themselves (larger ones: the library)."""
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


def _children(pid: int) -> list[int]:
    """The process's descendants: its children, theirs, and so on (the writer process, its
    committer process, snapshot exports)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found + [grandchild for child in found for grandchild in _children(child)]


def _writer_cpu_s(pid: int) -> float:
    """CPU time of the server's descendant processes: the writer process (the sequencer: core,
    journal), its committer process (the transactions) and any snapshot export running."""
    total = 0.0
    for child in _children(pid):
        with contextlib.suppress(OSError):
            total += _process_cpu_s(child)
    return total


def _loop_thread_cpu_s(pid: int) -> float:
    """CPU time (user and system) of the server's main thread, the one that runs the event loop and so
    the whole gateway; the rest of the process is the sequencer's writer and committer threads."""
    return _process_cpu_s_of(Path(f"/proc/{pid}/task/{pid}/stat"))


def _process_cpu_s_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve(database_url: str, accounts: int, info_path: str) -> None:
    """Child process: run the exchange, write its URL and keys, wait for stdin to close."""
    from api._harness import running_exchange
    from exchange._warehouse_rule import RequireReceipts

    async with running_exchange(database_url, writer_process=True) as ex:
        # the gateway is measured here, not the warehouse (`bench delivery` measures selling against
        # receipts): the receipt rule goes off through its staff command and sellers hold no receipts
        ex.execute([RequireReceipts(symbol, False, "bench-gateway") for symbol in ex.symbols])
        keys = [ex.trader_key(f"B{n:03d}", receipts=False) for n in range(accounts)]
        ex.server.tune_process()  # as `bulkex serve` does
        Path(info_path).write_text(json.dumps({"url": ex.url, "keys": keys, "pid": os.getpid()}))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# ------------------------------------------------------------ load generator


def _client_class() -> Any:
    """A websockets client connection for the load: once `on_text` is set it reads the server's
    frames itself (unmasked, final text frames of at most MAX_FRAME_BYTES; the rest go whole to the
    library, at a frame boundary, as the gateway does with its clients' frames) and hands each
    message to the callback, with no reader task; `queue` adds a frame already built (header, mask
    and masked payload) to the bytes written once per pass of the event loop."""
    from websockets.asyncio.client import ClientConnection
    from websockets.frames import TEXT, Frame
    from websockets.protocol import State

    from api._session import at_frame_boundary

    class LoadClient(ClientConnection):
        on_text: Callable[[bytes], None] | None = None
        reading = False
        partial = b""
        outgoing: list[bytes] | None = None

        def process_event(self, event: Any) -> None:
            on_text = self.on_text
            if on_text is not None and type(event) is Frame and event.opcode is TEXT and event.fin:
                on_text(bytes(event.data))
            else:
                super().process_event(event)

        def data_received(self, data: bytes) -> None:
            if not self.reading:
                super().data_received(data)
                self.reading = self.on_text is not None and at_frame_boundary(self.protocol)
                return
            if self.partial:
                data = self.partial + data
                self.partial = b""
            on_text = self.on_text
            n = len(data)
            pos = 0
            while pos < n:
                if on_text is None or self.protocol.state is not State.OPEN:
                    break
                bounds = _frame_bounds(data, pos)
                if bounds is None:  # cut by the read: the rest comes with the next one
                    self.partial = data[pos:]
                    return
                head, end = bounds
                if data[pos + 1] & 0x80 or end - head > READ_MAX_FRAME_BYTES or data[pos] != 0x81:
                    break  # not an unmasked final text frame: the library reads from here on
                pos = end
                on_text(data[head:end])
            if pos < n:
                self.reading = False
                super().data_received(data[pos:])

        def queue(self, frame: bytes) -> None:
            outgoing = self.outgoing
            if outgoing is None:
                outgoing = self.outgoing = []
                self.loop.call_soon(self._write_out)
            outgoing.append(frame)

        def _write_out(self) -> None:
            outgoing = self.outgoing
            self.outgoing = None
            if outgoing and not self.transport.is_closing():
                self.transport.write(b"".join(outgoing))

    return LoadClient


def _frame_bounds(data: bytes, pos: int) -> tuple[int, int] | None:
    """(start, end) of the payload of the server frame at `pos` (RFC 6455 section 5.2: 7-bit,
    16-bit or 64-bit length, no mask key), or None when `data` ends before the frame does."""
    n = len(data)
    if n - pos < 2:
        return None
    length = data[pos + 1] & 0x7F
    head = pos + 2
    if length == 126:
        length = int.from_bytes(data[head : head + 2], "big")
        head += 2
    elif length == 127:
        length = int.from_bytes(data[head : head + 8], "big")
        head += 8
    end = head + length
    if head > n or end > n:
        return None
    return head, end


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


def _client_frame(payload: bytes, mask: bytes) -> bytes:
    """A whole client text frame: final, masked with `mask` (RFC 6455 section 5.2)."""
    from websockets.frames import apply_mask  # type: ignore[attr-defined]

    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65_536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    masked: bytes = apply_mask(payload, mask)
    return head + mask + masked


def _prebuilt_frames(number: int, count: int, tag: str) -> list[bytes]:
    """The first `count` order frames of client `number`, whole (frame k-1 carries request id k). One
    random mask per client: RFC 6455 asks for unpredictable masks to protect proxies from cache
    poisoning; on loopback between these processes there is none, and the gateway unmasks any key."""
    mask = os.urandom(4)
    return [_client_frame(_order_frame(number, counter, tag), mask) for counter in range(1, count + 1)]


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.cpu_s = 0.0  # of the load process, from the start until the last answer or the deadline
        self.sent = 0
        self.started = 0.0
        self.last_answer = 0.0


PREBUILT_ORDERS_PER_S = 40_000
"""Closed loop: frames built before the start for this many orders per second over all clients
(more are built on the fly if the gateway answers faster)."""
START_DELAY_S = 6.0
"""The load processes start together this long after they are spawned (they have connected, logged
in and built their frames by then)."""


async def _load(url: str, keys: list[list[str]], first: int, mode: str, rate: float, seconds: float,
                start_at: float, total_clients: int) -> _Tally:  # fmt: skip
    """One load process: `keys` clients; mode "closed" (WINDOW in flight each) or "open" (`rate`
    orders/s). Everything is prepared before `start_at` (wall clock): connections and logins (with
    the websockets library), and each client's order frames, whole and masked. The run itself is
    `_drive`: the connections' sockets in one epoll loop of this process, no event loop."""
    clients = [await _login(url, key[0], key[1]) for key in keys]
    count = len(clients)
    tag = mode[0]
    if mode == "closed":
        per_client = int(PREBUILT_ORDERS_PER_S * seconds / total_clients) + WINDOW
    else:
        per_client = int(rate * seconds / count) + 2
    frames = [_prebuilt_frames(first + index, per_client, tag) for index in range(count)]
    from api._session import at_frame_boundary

    socks = []
    for ws in clients:
        for _ in range(1000):  # the library stops between two frames (a heartbeat may be arriving)
            if at_frame_boundary(ws.protocol):
                break
            await asyncio.sleep(0.001)
        assert at_frame_boundary(ws.protocol), "a load client's connection is not between two frames"
        ws.transport.pause_reading()  # from here on the socket is read by _drive alone
        own = ws.transport.get_extra_info("socket")
        sock = socket.socket(fileno=os.dup(own.fileno()))
        sock.setblocking(False)
        socks.append(sock)
    # the load's own collections would pause its sending and reading and count as the server's
    # latency: the prepared frames and clients are frozen, automatic collection off (a short process)
    gc.collect()
    gc.freeze()
    gc.disable()
    time.sleep(max(0.0, start_at - time.time()))
    tally = _drive(socks, frames, first, mode, rate, seconds)
    for sock in socks:
        sock.close()
    for ws in clients:
        ws.transport.abort()
    return tally


_CLOSE_FRAME = bytes((0x88, 0x82, 0, 0, 0, 0)) + (1000).to_bytes(2, "big")
"""A client's close frame, code 1000 (a zero mask leaves the payload as it is)."""


def _drive(socks: list[socket.socket], frames: list[list[bytes]], first: int, mode: str, rate: float,
           seconds: float) -> _Tally:  # fmt: skip
    """Send and read on the logged-in sockets: every client's frames of one pass leave in one
    send (what a full socket buffer does not take waits for the socket to be writable), every
    readable socket is read once a pass, server frames parsed here (a ping answered with a pong).
    Open mode wakes every TICK_S and sends each order due; closed mode sends the next order of a
    client as each answer comes. A client whose connection ends (a close frame, end of stream, an
    error) is dropped from the loop: its orders waiting for an answer, and any due after, count
    as unanswered. At the end each client still connected sends a close frame."""
    import orjson

    count = len(socks)
    tally = _Tally()
    perf = time.perf_counter
    latencies = tally.latencies
    outcomes = tally.outcomes
    counters = [0] * count
    due_at: list[dict[str, float]] = [{} for _ in socks]
    closed = mode == "closed"
    masks = [os.urandom(4) for _ in socks]
    outgoing: dict[int, list[bytes]] = {}
    backlog: list[bytes] = [b""] * count  # bytes a full socket buffer did not take
    partial: list[bytes] = [b""] * count
    ended = [False] * count
    lost = 0  # orders of clients whose connection ended, unanswered
    loads = orjson.loads
    poller = select.epoll()
    by_fd: dict[int, int] = {}

    def end(index: int) -> None:
        nonlocal lost
        if ended[index]:
            return
        ended[index] = True
        lost += len(due_at[index])
        due_at[index].clear()
        backlog[index] = b""
        outgoing.pop(index, None)
        poller.unregister(socks[index].fileno())

    def send(index: int, at: float) -> None:
        nonlocal lost
        counter = counters[index] = counters[index] + 1
        tally.sent += 1
        if ended[index]:
            lost += 1
            return
        own = frames[index]
        if counter <= len(own):
            frame = own[counter - 1]
        else:
            frame = _client_frame(_order_frame(first + index, counter, mode[0]), masks[index])
        due_at[index][str(counter)] = at
        queued = outgoing.get(index)
        if queued is None:
            outgoing[index] = [frame]
        else:
            queued.append(frame)

    def flush() -> None:
        for index, queued in list(outgoing.items()):
            had = backlog[index]
            data = had + b"".join(queued) if queued else had
            if not data:
                continue
            try:
                sent = socks[index].send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                end(index)
                continue
            rest = backlog[index] = data[sent:]
            if bool(rest) != bool(had):  # wait for room to write only while something waits
                poller.modify(socks[index].fileno(), select.EPOLLIN | (select.EPOLLOUT if rest else 0))
        outgoing.clear()

    def on_text(index: int, raw: bytes) -> None:
        now = perf()  # as each answer is reached (the ones before it in the same read parsed first)
        message = loads(raw)
        rid = message.get("id")
        waiting = due_at[index]
        t0 = waiting.pop(rid, None) if type(rid) is str else None
        if t0 is None:
            return
        tally.last_answer = now
        outcome = message.get("code") or message["result"]["status"]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome not in REFUSED:
            latencies.append(now - t0)
        if closed and now < stop_at:
            while len(waiting) < WINDOW:
                send(index, perf())

    def read(index: int) -> None:
        try:
            data = socks[index].recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            end(index)
            return
        if partial[index]:
            data = partial[index] + data
            partial[index] = b""
        n = len(data)
        pos = 0
        while pos < n:
            bounds = _frame_bounds(data, pos)
            if bounds is None:  # cut by the read: the rest comes with the next one
                break
            head, end_at = bounds
            first_byte = data[pos]
            opcode = first_byte & 0x0F
            if first_byte == 0x81:
                on_text(index, data[head:end_at])
            elif opcode == 0x9:  # ping: the same payload back, masked
                pong = _client_frame(data[head:end_at], masks[index])
                outgoing.setdefault(index, []).append(bytes((0x8A,)) + pong[1:])
            elif opcode == 0x8:  # the server closes this connection
                end(index)
                return
            pos = end_at
        partial[index] = data[pos:]

    for index, sock in enumerate(socks):
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = index
    cpu_started = time.process_time()
    started = tally.started = perf()
    stop_at = started + seconds
    total = int(rate * seconds)
    n = 0
    if closed:
        for index in range(count):
            for _ in range(WINDOW):
                send(index, perf())
    deadline = stop_at + 10
    next_tick = started
    while True:
        now = perf()
        if not closed and n < total and now >= next_tick:
            due = min(total, int((now - started) * rate) + 1)
            while n < due:
                send(n % count, started + n / rate)
                n += 1
            next_tick = now + TICK_S
        if outgoing:
            flush()
        if now >= deadline or all(ended):
            break
        if (closed and now >= stop_at) or (not closed and n >= total):
            if not any(due_at):
                break
            timeout = 0.01
        elif closed:
            timeout = min(0.01, stop_at - now)
        else:
            timeout = max(0.0, next_tick - now)
        for fd, events in poller.poll(timeout):
            index = by_fd[fd]
            if ended[index]:  # (ended by an earlier event of this pass)
                continue
            if events & select.EPOLLOUT and backlog[index]:
                outgoing.setdefault(index, [])
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                read(index)
    tally.cpu_s = time.process_time() - cpu_started
    tally.outcomes["unanswered"] = sum(len(d) for d in due_at) + lost
    for index, sock in enumerate(socks):
        if not ended[index] and not backlog[index]:  # (a close frame after half a frame would corrupt it)
            with contextlib.suppress(OSError):
                sock.send(_CLOSE_FRAME)
    poller.close()
    return tally


def _load_process(url: str, keys: list[list[str]], first: int, mode: str, rate: float, seconds: float,
                  start_at: float, total_clients: int, conn: Any) -> None:  # fmt: skip
    """Entry of a load process: prepare, start at the common moment (wall clock), send the tally back."""
    tally = asyncio.run(_load(url, keys, first, mode, rate, seconds, start_at, total_clients))
    elapsed = max(0.0, tally.last_answer - tally.started)
    conn.send((tally.latencies, tally.outcomes, tally.sent, elapsed, tally.cpu_s))
    conn.close()


def _run_load(url: str, keys: list[list[str]], clients: int, processes: int, mode: str, rate: float,
              seconds: float) -> dict[str, Any]:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    pipes = []
    workers = []
    start_at = time.time() + START_DELAY_S
    per = -(-clients // processes)
    for p in range(processes):
        chunk = keys[p * per : min(clients, (p + 1) * per)]
        if not chunk:
            continue
        receive, send = context.Pipe(duplex=False)
        share = rate * len(chunk) / clients
        worker = context.Process(
            target=_load_process,
            args=(url, chunk, p * per, mode, share, seconds, start_at, clients, send),
            daemon=True,
        )
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    sent = 0
    elapsed = seconds
    load_cpu_s = 0.0
    for receive in pipes:
        part_latencies, part_outcomes, part_sent, part_elapsed, part_cpu_s = receive.recv()
        elapsed = max(elapsed, part_elapsed)
        load_cpu_s += part_cpu_s
        latencies.extend(part_latencies)
        for name, count in part_outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
        sent += part_sent
    for worker in workers:
        worker.join(30)
    answered = len(latencies)  # by the core (accepted or rejected), after the journal commit
    return {
        "sent": sent,
        "answered": answered,
        "refused": sum(count for name, count in outcomes.items() if name in REFUSED),
        "orders_per_s": round(answered / elapsed),  # until the last answer: a backlog lowers the rate
        "ms_p50": round(_percentile(latencies, 0.50) * 1000, 3),
        "ms_p99": round(_percentile(latencies, 0.99) * 1000, 3),
        "ms_p999": round(_percentile(latencies, 0.999) * 1000, 3),
        "outcomes": dict(sorted(outcomes.items())),
        "load_cpu_us_per_order": round(load_cpu_s / max(1, answered) * 1e6, 1),
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
            cpu_before, loop_before = _process_cpu_s(pid), _loop_thread_cpu_s(pid)
            writer_before = _writer_cpu_s(pid)
            paced = _run_load(ws_url, keys, clients, processes, "open", rate, seconds)
            cpu_paced = _process_cpu_s(pid) - cpu_before
            loop_paced = _loop_thread_cpu_s(pid) - loop_before
            writer_paced = _writer_cpu_s(pid) - writer_before
            cpu_before, loop_before = _process_cpu_s(pid), _loop_thread_cpu_s(pid)
            writer_before = _writer_cpu_s(pid)
            capacity = _run_load(ws_url, keys, clients, processes, "closed", 0.0, seconds)
            cpu_capacity = _process_cpu_s(pid) - cpu_before
            loop_capacity = _loop_thread_cpu_s(pid) - loop_before
            writer_capacity = _writer_cpu_s(pid) - writer_before
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
        "capacity_orders_refused": capacity["refused"],
        "capacity_server_cpu_us_per_order": round(
            (cpu_capacity + writer_capacity) / max(1, capacity["answered"]) * 1e6, 1
        ),
        "capacity_writer_cpu_us_per_order": round(writer_capacity / max(1, capacity["answered"]) * 1e6, 1),
        "capacity_gateway_loop_cpu_us_per_order": round(loop_capacity / max(1, capacity["answered"]) * 1e6, 1),
        "capacity_load_cpu_us_per_order": capacity["load_cpu_us_per_order"],
        "offered_orders_per_s": round(rate),
        "orders_per_s": paced["orders_per_s"],
        "orders_sent": paced["sent"],
        "orders_answered": paced["answered"],
        "orders_refused": paced["refused"],
        "order_to_ack_ms_p50": paced["ms_p50"],
        "order_to_ack_ms_p99": paced["ms_p99"],
        "order_to_ack_ms_p999": paced["ms_p999"],
        "outcomes": paced["outcomes"],
        "server_cpu_us_per_order": round((cpu_paced + writer_paced) / max(1, paced["answered"]) * 1e6, 1),
        "writer_cpu_us_per_order": round(writer_paced / max(1, paced["answered"]) * 1e6, 1),
        "gateway_loop_cpu_us_per_order": round(loop_paced / max(1, paced["answered"]) * 1e6, 1),
        "load_cpu_us_per_order": paced["load_cpu_us_per_order"],
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
              f"CPU per order: server {result['capacity_server_cpu_us_per_order']} us (event loop "
              f"{result['capacity_gateway_loop_cpu_us_per_order']} us, writer processes "
              f"{result['capacity_writer_cpu_us_per_order']} us), load generator "
              f"{result['capacity_load_cpu_us_per_order']} us")  # fmt: skip
        print(f"  at {result['offered_orders_per_s']:,} orders/s offered (open loop, {result['clients']} clients): "
              f"{result['orders_per_s']:,} orders/s answered by the core ({result['orders_refused']:,} refused by "
              f"the gateway, left out), order-to-ack p50 {result['order_to_ack_ms_p50']} ms, "
              f"p99 {result['order_to_ack_ms_p99']} ms, p99.9 {result['order_to_ack_ms_p999']} ms; "
              f"answers {result['outcomes']}; CPU per order: server {result['server_cpu_us_per_order']} us "
              f"(event loop {result['gateway_loop_cpu_us_per_order']} us, writer processes "
              f"{result['writer_cpu_us_per_order']} us), load generator "
              f"{result['load_cpu_us_per_order']} us")  # fmt: skip
        print(f"  fan-out: {result['subscribers']} subscribers, {result['messages_received']:,} of "
              f"{result['messages_expected']:,} deltas received, publish-to-receive p50 "
              f"{result['publish_to_receive_ms_p50']} ms, p99 {result['publish_to_receive_ms_p99']} ms")  # fmt: skip
        print(f"  memory per idle connection: {result['idle_connection_kb']} KiB")
        print(f"  targets {result['targets']}: {'met' if result['meets_targets'] else 'NOT met'}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    print_report(run())
