"""The gateway reads common WebSocket frames itself (api/_session.py, GatewayConnection): frames cut
anywhere across reads, several in one read, control frames among them, and every kind of bad frame
must end exactly as the websockets library alone would end it. Real server, raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api._harness import running_exchange
from api._session import GatewayConnection

pytestmark = pytest.mark.timeout(120)

TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def run(make: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(make())  # type: ignore[arg-type]


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length_bytes: int | None = None) -> bytes:  # fmt: skip
    """A client frame, built by hand so that it can also be wrong."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    form = length_bytes if length_bytes is not None else (0 if n < 126 else 2 if n < 65_536 else 8)
    bit = 0x80 if masked else 0
    if form == 0:
        head += bytes([bit | n])
    elif form == 2:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ping_request(rid: str, padding: int = 0) -> bytes:
    """A ping request; `padding` spaces of JSON white space make the frame longer."""
    return orjson.dumps({"type": "ping", "id": rid})[:-1] + b" " * padding + b"}"


async def answers(ws: ClientConnection, count: int) -> list[tuple[Any, Any]]:
    seen: list[tuple[Any, Any]] = []
    while len(seen) < count:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] in ("accepted", "error"):
            seen.append((message["id"], message.get("code")))
    return seen


def server_side(ex: Any) -> GatewayConnection:
    (conn,) = ex.gateway.connections
    assert isinstance(conn.ws, GatewayConnection)
    return conn.ws


def test_frames_cut_anywhere_are_read_in_order_with_control_frames_among_them(tmp_path: Any) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)

    async def main() -> None:
        async with (
            running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex,
            connect(ex.url, ping_interval=None) as ws,
        ):
            await ws.send(ping_request("first"), text=True)
            assert await answers(ws, 1) == [("first", None)]
            reader = server_side(ex)
            assert reader.reading, "the gateway reads the frames of an open connection itself"
            for round_number in range(60):
                stream = b""
                expected: list[tuple[Any, Any]] = []
                for k in range(rng.randint(1, 12)):
                    rid = f"r{round_number}-{k}"
                    choice = rng.random()
                    if choice < 0.1:
                        stream += frame(PING, b"keepalive")  # answered with a pong by the library
                        continue
                    if choice < 0.2:
                        stream += frame(BINARY, b"\x00binary")
                        expected.append((None, "BINARY_FRAME"))
                        continue
                    form = rng.choice([None, None, 2, 8])  # also longer length forms than needed
                    stream += frame(TEXT, ping_request(rid, rng.choice([0, 5, 130, 300])), length_bytes=form)
                    expected.append((rid, None))
                cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 6))))
                start = 0
                for cut in [*cuts, len(stream)]:
                    ws.transport.write(stream[start:cut])
                    start = cut
                    await asyncio.sleep(0.001 if rng.random() < 0.5 else 0)
                got = await answers(ws, len(expected))
                assert got == expected, f"seed {seed}, round {round_number}"
            assert reader.reading, f"seed {seed}"
            assert not reader.handed_over, f"seed {seed}"

    run(main)


@pytest.mark.parametrize(
    ("name", "raw", "close_code"),
    [
        ("unmasked", frame(TEXT, ping_request("u"), masked=False), 1002),
        ("unmasked and empty", frame(TEXT, b"", masked=False), 1002),
        ("over the cap, header alone", frame(TEXT, b"x" * 70_000)[:10], 1009),
        ("reserved bit", frame(TEXT, ping_request("r"), rsv=0b100), 1002),
        ("unknown opcode", frame(0x3, b"x"), 1002),
        ("continuation of nothing", frame(CONT, b"x"), 1002),
        ("control frame over 125 bytes", frame(PING, b"p" * 126), 1002),
        ("fragmented control frame", frame(PING, b"p", fin=False), 1002),
        ("over the frame cap, unread", frame(TEXT, b"x" * 70_000), 1009),
        ("over the cap by its length alone", frame(TEXT, b"", length_bytes=8)[:2] + (1 << 40).to_bytes(8, "big"), 1009),
        ("invalid UTF-8", frame(TEXT, b'{"type": "ping", "id": "\xff"}'), 1007),
        ("close", frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"), 1000),
    ],
)
def test_bad_frames_end_as_the_library_ends_them(tmp_path: Any, name: str, raw: bytes, close_code: int) -> None:
    async def main() -> None:
        async with (
            running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex,
            connect(ex.url, ping_interval=None) as ws,
        ):
            await ws.send(ping_request("a"), text=True)
            assert await answers(ws, 1) == [("a", None)]
            assert server_side(ex).reading
            ws.transport.write(frame(TEXT, ping_request("b")))
            await asyncio.sleep(0.01)
            ws.transport.write(raw[:3])
            await asyncio.sleep(0.01)
            with contextlib.suppress(RuntimeError):  # the server may have closed on the first bytes
                ws.transport.write(raw[3:])  # nothing follows: the bad bytes alone must end the connection
            assert await answers(ws, 1) == [("b", None)], name
            with pytest.raises(ConnectionClosed):
                await answers(ws, 1)
            assert ws.close_code == close_code, name

    run(main)


def test_a_fragmented_message_hands_the_connection_to_the_library_in_order(tmp_path: Any) -> None:
    async def main() -> None:
        async with (
            running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex,
            connect(ex.url, ping_interval=None) as ws,
        ):
            await ws.send(ping_request("a"), text=True)
            assert await answers(ws, 1) == [("a", None)]
            reader = server_side(ex)
            body = ping_request("b")
            ws.transport.write(
                frame(TEXT, ping_request("a2"))
                + frame(TEXT, body[:5], fin=False)
                + frame(PING, b"in between")
                + frame(CONT, body[5:])
                + frame(TEXT, ping_request("c"))
            )
            assert await answers(ws, 3) == [("a2", None), ("b", None), ("c", None)]
            assert reader.handed_over
            assert not reader.reading
            await ws.send(ping_request("d"), text=True)
            assert await answers(ws, 1) == [("d", None)]

    run(main)


def test_the_frame_boundary_is_told_from_the_library_parser_state() -> None:
    """The gateway takes over reading only where the websockets parser waits for a new frame with
    nothing buffered: never inside a frame, even when the bytes read so far were all consumed."""
    from websockets.frames import Frame as LibraryFrame
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    from api._session import at_frame_boundary

    protocol = ServerProtocol(max_size=65_536)
    assert not at_frame_boundary(protocol)  # still in the opening handshake
    protocol.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    (request,) = protocol.events_received()
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    assert at_frame_boundary(protocol)
    raw = frame(TEXT, ping_request("a"))
    protocol.receive_data(raw[:2])  # the header is read, the parser waits for the mask: nothing buffered
    assert not protocol.reader.buffer
    assert not at_frame_boundary(protocol)
    protocol.receive_data(raw[2:])
    (event,) = protocol.events_received()
    assert isinstance(event, LibraryFrame)
    assert event.data == ping_request("a")
    assert at_frame_boundary(protocol)
    protocol.receive_data(raw[:1])  # one byte buffered
    assert not at_frame_boundary(protocol)
    protocol.receive_data(raw[1:] + frame(TEXT, ping_request("b"), fin=False))  # a fragmented message begins
    assert len(protocol.events_received()) == 2
    assert not at_frame_boundary(protocol)
