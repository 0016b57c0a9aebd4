"""The core: every deterministic state machine of the exchange behind one
``apply``. Commands are routed by type; clearing and warehouse join by
adding their machine and their command classes to the routing table.

No clock, no I/O: the sequencer passes `seq` and `ts_ns` in, events come out
in `out`. Same commands in, byte-identical events out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from matching import MATCHING_COMMANDS, Event, Limits, MatchingEngine

__all__ = ["Core", "canonical_json", "hash_state"]


def canonical_json(state: dict[str, Any]) -> bytes:
    """The canonical bytes of a state: orjson with sorted keys."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def hash_state(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Core:
    """Composes the matching engine (and, later, clearing and warehouse)."""

    def __init__(self, matching: MatchingEngine | None = None) -> None:
        self.matching = matching if matching is not None else MatchingEngine(Limits())
        self._matching_apply = self.matching.apply
        self._matching_types = frozenset(MATCHING_COMMANDS.values())
        # Commands of the other state machines: type -> apply(command, seq, ts_ns, out).
        self._routes: dict[type[Any], Callable[[Any, int, int, list[Event]], None]] = {}

    def apply(self, command: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Apply one sequenced command, appending its events to `out`."""
        if type(command) in self._matching_types:  # the hot path: orders
            self._matching_apply(command, seq, out)
            return
        route = self._routes.get(type(command))
        assert route is not None, f"no state machine handles {type(command).__name__}"
        route(command, seq, ts_ns, out)

    def trading_states(self) -> dict[str, int]:
        """Symbol -> trading state of every listed instrument."""
        return {symbol: book.state for symbol, book in self.matching.books.items()}

    def export_state(self) -> dict[str, Any]:
        """The whole state as canonical plain data (keys are strings)."""
        return {"matching": self.matching.export_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Core:
        return cls(MatchingEngine.from_state(state["matching"], Limits()))

    def state_bytes(self) -> bytes:
        return canonical_json(self.export_state())

    def state_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of ``export_state()``."""
        return hash_state(self.state_bytes())
