"""Helpers of the tests that talk to a real server over real sockets: run a coroutine, wait for
a condition, read the next answer (pushes skipped) checked against the protocol's models."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from api._protocol import Accepted, ErrorResponse

__all__ = ["next_answer", "run", "wait_for"]


def run(make: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(make())  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def next_answer(ws: ClientConnection) -> dict[str, Any]:
    """The next answer (pushes skipped), valid against the protocol's models."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 5)
        message: dict[str, Any] = orjson.loads(raw)
        if message["type"] in ("accepted", "error"):
            (Accepted if message["type"] == "accepted" else ErrorResponse).model_validate_json(raw)
            return message
