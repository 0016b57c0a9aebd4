"""One WebSocket connection: its bounded send queue, its limits and its session.

Receiving. ``GatewayConnection`` (the websockets server connection the
gateway creates) hands every complete, unfragmented text or binary frame to
the gateway synchronously, from the transport's ``data_received`` callback,
instead of queueing it for a reader task (no task wake-up, future or
``recv`` per message).

Once the connection is open and the library's parser stands at a frame
boundary with nothing buffered, ``data_received`` reads the common frames
itself: final, masked, no reserved bits, text or binary,
at most ``max_size`` bytes; it unmasks them with the library's own
``apply_mask`` and hands the message over. Every other frame goes to the
websockets protocol whole and at a frame boundary, so the library sees a
consistent stream and answers it as it always does: a control frame (ping,
pong, close) is fed to it alone and reading goes on; an unmasked frame, one
over ``max_size`` (closed 1009 unread), one with reserved bits, a fragment
or a continuation hands the rest of the stream to the library for good. A
fragmented message so switches the connection for good to the library's
own reassembly (the ``recv`` loop of ``Gateway.handle``), and messages keep
their order. Invalid UTF-8 in a text frame closes 1007, as the library does.

Sending. Messages to a client go through ``push`` into a queue; an
``Outbox`` shared by all connections writes every connection's queue at
the end of the event loop's current pass: one socket write per connection
per pass, however many answers and feed messages a committed batch brought
it. Frames are written while the transport is below its high-water mark
(websockets' ``write_limit``); above it the rest waits in the queue until
the transport drains (``resume_writing``). When the queue holds
``max_send_queue_messages`` the client is a slow consumer: nothing more is
queued and the connection is closed with code CLOSE_SLOW_CONSUMER and the
reason "slow consumer".
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import BINARY, CONT, TEXT, CloseCode, Frame
from websockets.protocol import Protocol, State

from api._keys import ApiKey
from api._limits import CLOSE_SLOW_CONSUMER, GatewayLimits, TokenBucket

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["WRITE_CHUNK_MESSAGES", "Connection", "GatewayConnection", "Outbox", "at_frame_boundary", "text_frame"]

log = logging.getLogger("bulkex.gateway")

WRITE_CHUNK_MESSAGES = 256
"""Frames joined into one transport write; between writes the transport's high-water mark is checked."""

_SMALL_HEADERS = [bytes((0x81, n)) for n in range(126)]


def text_frame(payload: bytes) -> bytes:
    """The header of an unmasked, final text frame carrying `payload` (RFC 6455 section 5.2; a server never
    masks). Valid only without extensions: the gateway disables compression."""
    n = len(payload)
    if n < 126:
        return _SMALL_HEADERS[n]
    if n < 65_536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


_OPEN = State.OPEN
_FIN_ONLY = 0x80  # first header byte: FIN set, no reserved bits
_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8


def at_frame_boundary(protocol: Protocol) -> bool:
    """True when the websockets protocol is open, has no bytes buffered, no fragmented message under
    way and its parser waits for the first byte of the next frame, so the next bytes may be read by
    someone else as long as only whole frames are handed back to it. Anything unexpected (another
    websockets version that parses differently) answers False, and the library keeps reading."""
    reader = getattr(protocol, "reader", None)
    if (
        protocol.state is not _OPEN
        or protocol.extensions
        or protocol.current_size is not None
        or reader is None
        or reader.buffer
        or reader.eof
    ):
        return False
    generator: Any = protocol.parser
    for _ in range(8):  # ServerProtocol.parse -> Protocol.parse -> StreamReader.at_eof
        inner = getattr(generator, "gi_yieldfrom", None)
        if inner is None:
            break
        generator = inner
    code = getattr(generator, "gi_code", None)
    return code is not None and code.co_name == "at_eof" and code.co_filename.endswith("streams.py")


class GatewayConnection(ServerConnection):
    """A websockets server connection that hands complete messages straight to the gateway."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct: Callable[[str | bytes], None] | None = None
        self.on_writable: Callable[[], None] | None = None
        self.reassembling = False
        self.reading = False  # this class reads the frames (see the module's docstring)
        self.handed_over = False  # the library reads everything from now on
        self.partial = b""  # the start of a frame not yet complete (while reading)

    # ------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if not self.reading:
            super().data_received(data)
            if not self.handed_over and self.direct is not None and not self.reassembling:
                self.reading = at_frame_boundary(self.protocol)
            return
        if self.partial:
            data = self.partial + data
            self.partial = b""
        protocol = self.protocol
        max_size = protocol.max_message_size
        n = len(data)
        pos = 0
        while pos < n:
            if self.direct is None or protocol.state is not _OPEN:
                self._hand_over(data[pos:])
                return
            if n - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            if not second & 0x80:
                self._hand_over(data[pos:])  # unmasked: the library closes (1002)
                return
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            if max_size is not None and length > max_size:
                self._hand_over(data[pos:])  # too large: the library closes (1009) without reading it
                return
            end = head + 4 + length
            if end > n:
                break
            opcode = first & 0x0F
            if first & 0xF0 != _FIN_ONLY or not _OP_TEXT <= opcode <= _OP_BINARY:
                if first & 0xF0 == _FIN_ONLY and opcode >= _OP_CLOSE:
                    super().data_received(data[pos:end])  # a control frame: the library answers it
                    pos = end
                    continue
                self.reassembling = True  # a fragment, a continuation, reserved bits, a bad opcode
                self._hand_over(data[pos:])
                return
            payload = apply_mask(data[head + 4 : end], data[head : head + 4])
            pos = end
            self._deliver(opcode == _OP_TEXT, payload)
        if pos < n:
            self.partial = data[pos:]

    def _hand_over(self, data: bytes) -> None:
        """From a frame boundary on, the library reads this connection's stream."""
        self.reading = False
        self.handed_over = True
        if data:
            super().data_received(data)

    def eof_received(self) -> None:
        if self.reading and self.partial:
            self._hand_over(self.partial)  # the library sees the cut frame, as it would have
            self.partial = b""
        return super().eof_received()

    def _deliver(self, text: bool, data: bytes | bytearray | memoryview) -> None:
        """Hand one complete message to the gateway (text is decoded as UTF-8 first)."""
        direct = self.direct
        assert direct is not None
        if text:
            try:
                message: str | bytes = str(data, "utf-8")
            except UnicodeDecodeError as exc:  # as the library does: close 1007
                self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                self.send_data()
                return
        else:
            message = bytes(data)
        try:
            direct(message)
        except Exception:  # a last resort: Gateway.on_frame answers its own failures (INTERNAL_ERROR)
            log.exception("a frame could not be handled")
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "internal error")
            self.send_data()

    def process_event(self, event: Any) -> None:
        direct = self.direct
        if direct is None or self.reassembling or type(event) is not Frame:
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is not TEXT and opcode is not BINARY:
            if opcode is CONT:  # the parser refuses a continuation that continues nothing
                self.reassembling = True
            super().process_event(event)
            return
        if not event.fin:
            self.reassembling = True  # fragmented: the library reassembles from now on, in order
            super().process_event(event)
            return
        self._deliver(opcode is TEXT, event.data)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()


class Outbox:
    """Connections with queued messages, written once per pass of the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Connection] = []
        self.scheduled = False

    def add(self, conn: Connection) -> None:
        self.dirty.append(conn)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        dirty = self.dirty
        self.dirty = []
        for conn in dirty:
            conn.flush()


class Connection:
    """A client connection (anonymous until it logs in)."""

    def __init__(
        self, ws: ServerConnection, limits: GatewayLimits, now_s: float, number: int, outbox: Outbox | None = None
    ) -> None:
        self.ws = ws
        self.limits = limits
        self.number = number
        self.outbox = outbox
        self.queue: deque[bytes] = deque()
        self.flushing = False  # in the outbox's list (or writing)
        self.closing = False
        self.close_reason = ""
        self.bucket = TokenBucket(limits.connection_rate_per_s, limits.connection_burst, now_s)
        self.key: ApiKey | None = None
        self.session_id = ""
        self.cancel_on_disconnect = False
        # with cancel_on_disconnect: the ids of orders this session entered that rested (those no
        # longer open are dropped when the set reaches entered_prune_at, see Gateway.entered)
        self.entered_orders: set[int] = set()
        self.entered_prune_at = 0
        self.answered = 0  # answers (accepted or error) sent to this connection's requests
        self.in_flight: set[str] = set()  # request ids awaiting their answer
        self.pending_commands = 0
        # (channel, instrument or account) -> True
        self.subscriptions: dict[tuple[str, str], bool] = {}
        if isinstance(ws, GatewayConnection):
            ws.on_writable = self._writable

    @property
    def account(self) -> str:
        """The member account of a trader session ('' otherwise)."""
        key = self.key
        return key.subject if key is not None and key.role == "trader" else ""

    def push(self, data: bytes) -> None:
        if self.closing:
            return
        queue = self.queue
        if len(queue) >= self.limits.max_send_queue_messages:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        queue.append(data)
        if not self.flushing:
            self.flushing = True
            outbox = self.outbox
            if outbox is None:
                outbox = self.outbox = Outbox(asyncio.get_running_loop())
            outbox.add(self)

    def _writable(self) -> None:
        """The transport drained below its low-water mark: write what waits."""
        if self.queue and not self.flushing and not self.closing:
            self.flushing = True
            assert self.outbox is not None
            self.outbox.add(self)

    def flush(self) -> None:
        """Write queued messages while the transport takes them (called by the outbox)."""
        self.flushing = False
        queue = self.queue
        if self.closing:
            queue.clear()
            return
        ws = self.ws
        if ws.protocol.state is not State.OPEN:
            queue.clear()  # closing: websockets finishes the handshake, nothing more is sent
            return
        transport = ws.transport
        plain = not ws.protocol.extensions
        while queue and not ws.paused:
            parts: list[bytes] = []
            append = parts.append
            popleft = queue.popleft
            for _ in range(min(len(queue), WRITE_CHUNK_MESSAGES)):
                data = popleft()
                if plain:
                    append(text_frame(data))
                    append(data)
                else:  # an extension was negotiated: let the protocol frame it
                    ws.protocol.send_text(data)
            if plain:
                transport.write(b"".join(parts))
            else:
                ws.send_data()

    def close(self, code: int, reason: str) -> None:
        """Stop queueing and close the connection (without waiting for the queue to drain)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self.queue.clear()
        asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def drain(self, timeout_s: float) -> None:
        """Wait until the send queue is empty (at most `timeout_s`)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.queue and not self.closing and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def describe(self) -> dict[str, Any]:
        key = self.key
        return {"number": self.number, "key_id": key.key_id if key else None, "queued": len(self.queue)}
