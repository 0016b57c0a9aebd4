"""A loopback TCP proxy between the writer and its PostgreSQL server, for network faults.

    proxy = FaultProxy(server_port); proxy.start()   # then connect to proxy.port
    proxy.freeze()   # black hole: nothing forwarded either way, every socket stays open
    proxy.thaw()     # forward again; what was held back is delivered, in order
    proxy.cut()      # reset every connection (RST), and every new one until thaw()

One thread runs a selector loop over non-blocking sockets and does all forwarding while
holding ``_lock``; ``freeze`` and ``cut`` take the same lock, so when they return no byte moves
any more (bytes already read stay in the proxy's buffers, bytes not yet read stay in the
kernel's, and the peers' kernels keep acknowledging: to both ends the other looks hung, not
gone). While frozen the proxy reads nothing and accepts nothing: a new connection completes
its handshake in the listen backlog and then hears nothing.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

MAX_CONNECTIONS = 64
"""Connections through the proxy at once, at most (more are reset)."""
READ_BYTES = 65_536
"""Bytes read from a socket per readiness event."""
MAX_HELD_BYTES = 64 << 20
"""Bytes the proxy holds for one direction of one connection, at most (then it stops reading it)."""
_POLL_S = 0.02  # the selector's timeout: how soon the loop sees a thaw or a stop

_FORWARDING, _FROZEN, _REFUSING = "forwarding", "frozen", "refusing"


@dataclass
class _Side:
    """One socket of a forwarded connection and the bytes waiting to be sent to it."""

    sock: socket.socket
    peer: socket.socket
    out: bytearray = field(default_factory=bytearray)
    closed_by_peer: bool = False  # the other end shut down: close this one once `out` is sent


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), not a FIN: the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=MAX_CONNECTIONS)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._sides: dict[socket.socket, _Side] = {}
        self._lock = threading.Lock()
        self._state = _FORWARDING
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="bulkex-pgproxy", daemon=True)
        self.connections = 0  # accepted and forwarded, in all
        self.resets = 0  # connections reset by cut() (or refused while cut)
        self.bytes_forwarded = 0

    # ------------------------------------------------------------ control

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def state(self) -> str:
        return self._state

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sides) // 2

    def freeze(self) -> None:
        """Stop forwarding in both directions; every socket stays open. On return nothing moves."""
        with self._lock:
            self._state = _FROZEN

    def thaw(self) -> None:
        """Forward again (held bytes first, in order); a cut proxy accepts connections again."""
        with self._lock:
            self._state = _FORWARDING

    def cut(self) -> None:
        """Reset every connection now; new ones are reset too until thaw()."""
        with self._lock:
            self._state = _REFUSING
            for side in list(self._sides.values()):
                self._drop(side.sock, reset=True)
                self.resets += 1

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for side in list(self._sides.values()):
                self._drop(side.sock, reset=False)
        self._selector.close()
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- loop

    def _drop(self, sock: socket.socket, reset: bool) -> None:
        """Close both sockets of sock's connection (called with the lock held)."""
        side = self._sides.pop(sock, None)
        if side is None:
            return
        self._sides.pop(side.peer, None)
        for one in (side.sock, side.peer):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            if reset:
                _reset(one)
            else:
                one.close()

    def _accept(self) -> None:
        try:
            client, _address = self._listener.accept()
        except BlockingIOError:
            return
        if self._state == _REFUSING or len(self._sides) >= 2 * MAX_CONNECTIONS:
            _reset(client)
            self.resets += 1
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)  # the server is down: so is the proxy's side
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sides[client] = _Side(client, server)
        self._sides[server] = _Side(server, client)
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(server, selectors.EVENT_READ)
        self.connections += 1

    def _interest(self) -> None:
        """Read what the peer can still take; write where bytes wait."""
        for sock, side in self._sides.items():
            events = 0
            peer = self._sides[side.peer]
            if not peer.closed_by_peer and len(peer.out) < MAX_HELD_BYTES:
                events |= selectors.EVENT_READ
            if side.out:
                events |= selectors.EVENT_WRITE
            key = self._selector.get_key(sock)
            if key.events != events:
                if events:
                    self._selector.modify(sock, events)
                else:  # nothing to do on this socket for now: keep it registered with a no-op wait
                    self._selector.modify(sock, selectors.EVENT_WRITE if side.out else selectors.EVENT_READ)

    def _loop(self) -> None:
        selector = self._selector
        while True:
            with self._lock:
                if self._stopping:
                    return
                frozen = self._state == _FROZEN
                if not frozen:
                    self._interest()
            if frozen:
                threading.Event().wait(_POLL_S)
                continue
            ready = selector.select(timeout=_POLL_S)
            with self._lock:
                if self._state == _FROZEN or self._stopping:
                    continue  # frozen while waiting: touch nothing
                for key, events in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                        continue
                    side = self._sides.get(sock)
                    if side is None:
                        continue  # cut meanwhile
                    if events & selectors.EVENT_WRITE and side.out:
                        self._send(side)
                    if sock in self._sides and events & selectors.EVENT_READ:
                        self._receive(side)

    def _send(self, side: _Side) -> None:
        try:
            sent = side.sock.send(side.out)
        except BlockingIOError:
            return
        except OSError:
            self._drop(side.sock, reset=True)
            return
        del side.out[:sent]
        self.bytes_forwarded += sent
        if not side.out and side.closed_by_peer:
            self._drop(side.sock, reset=False)

    def _receive(self, side: _Side) -> None:
        peer = self._sides[side.peer]
        if peer.closed_by_peer or len(peer.out) >= MAX_HELD_BYTES:
            return
        try:
            data = side.sock.recv(READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._drop(side.sock, reset=True)
            return
        if not data:  # orderly close: pass it on once what is held is sent
            peer.closed_by_peer = True
            if not peer.out:
                self._drop(side.sock, reset=False)
            return
        peer.out += data
        self._send(peer)
