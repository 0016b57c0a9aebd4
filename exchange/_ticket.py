"""Ticket: the answer to a submitted command, resolved once after commit.

A lighter ``concurrent.futures.Future`` for the hot path (creating and
resolving a Future costs microseconds per command in locks and conditions):
resolving a ticket nobody waits on is two attribute writes. Waiting
(``result``) and callbacks (``add_done_callback``, for bridging to asyncio
with ``loop.call_soon_threadsafe``) take a lock, only on that slow path.

Correctness without a lock on the fast path: the resolver writes the
outcome before it looks for waiters; a waiter registers before it looks
for the outcome; under the GIL one of the two always sees the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Ticket"]

T = TypeVar("T")

_LOCK = threading.Lock()
_PENDING: Any = object()


class Ticket(Generic[T]):
    __slots__ = ("_callbacks", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._value: Any = _PENDING
        self._error: BaseException | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[Ticket[T]], None]] | None = None

    def done(self) -> bool:
        return self._value is not _PENDING or self._error is not None

    def set_result(self, value: T) -> None:
        assert not self.done(), "a ticket resolves once"
        self._value = value
        if self._event is not None or self._callbacks is not None:
            self._wake()

    def set_exception(self, error: BaseException) -> None:
        assert not self.done(), "a ticket resolves once"
        self._error = error
        if self._event is not None or self._callbacks is not None:
            self._wake()

    def _wake(self) -> None:
        with _LOCK:
            event = self._event
            callbacks = self._callbacks or []
            self._callbacks = None
        if event is not None:
            event.set()
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback: Callable[[Ticket[T]], None]) -> None:
        """Call `callback(ticket)` once resolved (at once if it already is), in the resolving thread."""
        with _LOCK:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def result(self, timeout: float | None = None) -> T:
        """The value, waiting up to `timeout` seconds; raises the error it was resolved with,
        or TimeoutError."""
        if not self.done():
            with _LOCK:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
            if not self.done() and not event.wait(timeout):
                raise TimeoutError(f"no answer within {timeout} s")
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as exc:
            return exc
        return None
