"""``bulkex bench gateway`` measures what it says: a short run against a real server (its own
process, real sockets) answers every order it sends, in both the paced and the closed-loop run,
counts the fan-out's deltas, and prints its figures with a JSON line last. Its load loop, against
a scripted server on socket pairs, reads frames cut across reads and with 16-bit lengths, answers
a ping, drops a client whose connection closes (its orders unanswered, no waiting, no spinning) and
waits for room when a socket buffer is full, losing nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from bench.gateway import WINDOW, _drive, _prebuilt_frames, print_report, run


def test_a_short_run_answers_every_order_and_reports_its_figures(capsys: Any) -> None:
    result = run(clients=4, seconds=1.0, rate=400.0, subscribers=5, processes=2)
    assert result["orders_sent"] == 400
    assert result["outcomes"]["unanswered"] == 0, result["outcomes"]
    assert result["orders_answered"] + result["orders_refused"] == result["orders_sent"], result
    assert result["orders_answered"] > 0
    assert sum(n for name, n in result["outcomes"].items() if name != "unanswered") == 400, result["outcomes"]
    assert 0 < result["order_to_ack_ms_p50"] <= result["order_to_ack_ms_p99"] <= result["order_to_ack_ms_p999"]
    assert result["capacity_outcomes"]["unanswered"] == 0, result["capacity_outcomes"]
    assert result["capacity_orders_per_s"] > 0
    assert result["messages_received"] == result["messages_expected"] > 0
    assert result["load_cpu_us_per_order"] > 0
    assert result["gateway_loop_cpu_us_per_order"] > 0
    assert result["idle_connection_kb"] > 0
    print_report(result)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["orders_sent"] == 400


# ------------------------------------------------ the load loop against a scripted server


class _ScriptedServer:
    """The server side of a socket pair, in a thread: reads the client's masked frames, answers
    each order with a text frame of more than 125 bytes (a 16-bit length) written in two parts,
    and, by `behaviour`: "ping" sends a ping first and keeps the pong; "close" sends a close frame
    after two answers and reads nothing more; "slow" reads nothing for a while (the client's
    socket buffer fills) and then answers everything."""

    def __init__(self, sock: socket.socket, behaviour: str) -> None:
        self.sock = sock
        self.behaviour = behaviour
        self.answered = 0
        self.pongs: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sock = self.sock
        if self.behaviour == "ping":
            sock.sendall(bytes((0x89, 4)) + b"abcd")
        if self.behaviour == "slow":
            time.sleep(0.3)
        buffer = b""
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while len(buffer) >= 2:
                length, head = buffer[1] & 0x7F, 2
                if length == 126:
                    length, head = int.from_bytes(buffer[2:4], "big"), 4
                if len(buffer) < head + 4 + length:
                    break
                mask = buffer[head : head + 4]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[head + 4 : head + 4 + length]))
                opcode = buffer[0] & 0x0F
                buffer = buffer[head + 4 + length :]
                if opcode == 0xA:
                    self.pongs.append(payload)
                    continue
                if opcode == 0x8:
                    return
                if self.behaviour == "close" and self.answered == 2:
                    sock.sendall(bytes((0x88, 2)) + (1000).to_bytes(2, "big"))
                    return
                request = json.loads(payload)
                reply = json.dumps({"type": "accepted", "id": request["id"],
                                    "result": {"status": "open", "note": "x" * 200}}).encode()  # fmt: skip
                frame = bytes((0x81, 126)) + len(reply).to_bytes(2, "big") + reply
                sock.sendall(frame[:7])
                time.sleep(0.0002)
                sock.sendall(frame[7:])
                self.answered += 1


def _pairs(behaviours: list[str]) -> tuple[list[socket.socket], list[_ScriptedServer]]:
    clients: list[socket.socket] = []
    servers: list[_ScriptedServer] = []
    for behaviour in behaviours:
        client, server = socket.socketpair()
        if behaviour == "slow":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        clients.append(client)
        servers.append(_ScriptedServer(server, behaviour))
    return clients, servers


def _finish(clients: list[socket.socket], servers: list[_ScriptedServer]) -> None:
    for client in clients:
        client.close()
    for server in servers:
        server.thread.join(5)
        server.sock.close()


def test_the_load_loop_reads_split_frames_answers_pings_drops_closed_clients_and_waits_for_room() -> None:
    behaviours = ["plain", "ping", "close", "slow"]
    clients, servers = _pairs(behaviours)
    seconds, rate = 0.5, 2_000.0
    per_client = int(rate * seconds / len(clients)) + 2
    frames = [_prebuilt_frames(index, per_client, "t") for index in range(len(clients))]
    started = time.process_time()
    wall = time.monotonic()
    tally = _drive(clients, frames, 0, "open", rate, seconds)
    assert time.monotonic() - wall < 8, "the loop waited for the closed client's answers"
    assert time.process_time() - started < 5, "the loop spun"
    assert tally.sent == int(rate * seconds)
    per = tally.sent // len(clients)
    assert tally.outcomes["open"] == 3 * per + 2
    assert tally.outcomes["unanswered"] == per - 2  # the closed client's orders
    assert len(tally.latencies) == 3 * per + 2
    assert all(latency > 0 for latency in tally.latencies)
    _finish(clients, servers)  # (the servers' counts are final once their threads are done)
    assert [s.answered for s in servers] == [per, per, 2, per]
    assert servers[1].pongs == [b"abcd"]


def test_the_load_loop_keeps_its_window_full_in_the_closed_loop() -> None:
    clients, servers = _pairs(["plain", "plain"])
    frames = [_prebuilt_frames(index, 2_000, "c") for index in range(len(clients))]
    tally = _drive(clients, frames, 0, "closed", 0.0, 0.3)
    _finish(clients, servers)
    assert tally.outcomes["unanswered"] == 0
    assert tally.sent == sum(s.answered for s in servers) > 2 * WINDOW
    assert len(tally.latencies) == tally.sent
