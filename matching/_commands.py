"""Commands of the matching core.

A command is a plain record; the sequencer gives it a sequence number and a
timestamp and hands it to ``MatchingEngine.apply``. Every field is a
primitive (or an ``Instrument``) so the journal can store it as a list of
values in declaration order (``exchange``'s codec).

This module is part of the compiled core (``matching/_native.py``): there
the classes are native, so the engine reads their fields straight from the
object and a gateway or simulation builds one in about two thirds of the
time of an interpreted dataclass. Each class therefore writes its
``__init__`` out (a dataclass's generated ``__init__`` would stay
interpreted, and slower than the dataclass it replaces); the dataclass
decorator still gives fields, equality and repr. One difference of the
compiled build: mypyc keeps ``KIND`` as a dataclass field with its default
(mypyc treats a dataclass's ``ClassVar`` as a field), so code that walks
the fields of a command uses ``command_fields``, which leaves it out.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from typing import Any, ClassVar

from matching._instrument import Instrument
from matching._types import GTC, LIMIT, STP_CANCEL_NEWEST

__all__ = [
    "COMMAND_FIELD_TYPES",
    "MATCHING_COMMANDS",
    "AmendOrder",
    "CancelOrder",
    "ListInstrument",
    "MassCancel",
    "MatchingCommand",
    "NewOrder",
    "SetTradingState",
    "command_fields",
    "make_amend_order",
    "make_cancel_order",
    "make_new_order",
]


def command_fields(command: Any) -> tuple[Field[Any], ...]:
    """The fields of a command class or command (any dataclass), in declaration order, without
    ``KIND``: mypyc lists a compiled dataclass's ``ClassVar`` as a field (see the module's text),
    and ``KIND`` names the command's kind, it is never one of its values."""
    return tuple(f for f in fields(command) if f.name != "KIND")


def _reduce(command: Any) -> tuple[Any, ...]:
    """``__reduce__`` of a command: its class and its field values (pickle and ``copy`` rebuild it
    through ``__init__``; a compiled class has no other way back)."""
    return type(command), tuple(getattr(command, f.name) for f in command_fields(command))


@dataclass(init=False, slots=True)
class NewOrder:
    """Enter an order. `price_ticks` is ignored for a market order (it is
    protected by the price band: it trades up to the band's edge and no
    further). `quantity_lots` is the whole order's size.

    `receipts` (sell orders only, empty by default) names the seller's
    warehouse receipts the order locks, used in the order given; empty: the
    oldest active receipts. Matching ignores it; the exchange core checks it
    (see exchange/_core.py)."""

    KIND: ClassVar[str] = "new_order"
    account: str
    instrument: str
    client_order_id: str
    side: int
    price_ticks: int
    quantity_lots: int
    time_in_force: int = GTC
    order_type: int = LIMIT
    post_only: bool = False
    stp_mode: int = STP_CANCEL_NEWEST
    receipts: tuple[str, ...] = ()

    def __init__(
        self,
        account: str,
        instrument: str,
        client_order_id: str,
        side: int,
        price_ticks: int,
        quantity_lots: int,
        time_in_force: int = GTC,
        order_type: int = LIMIT,
        post_only: bool = False,
        stp_mode: int = STP_CANCEL_NEWEST,
        receipts: tuple[str, ...] = (),
    ) -> None:
        self.account = account
        self.instrument = instrument
        self.client_order_id = client_order_id
        self.side = side
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots
        self.time_in_force = time_in_force
        self.order_type = order_type
        self.post_only = post_only
        self.stp_mode = stp_mode
        self.receipts = receipts

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


@dataclass(init=False, slots=True)
class CancelOrder:
    KIND: ClassVar[str] = "cancel_order"
    account: str
    order_id: int

    def __init__(self, account: str, order_id: int) -> None:
        self.account = account
        self.order_id = order_id

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


@dataclass(init=False, slots=True)
class AmendOrder:
    """Change an open order's price and/or total size.

    `quantity_lots` is the new total size of the order (filled lots
    included), as in FIX OrderQty: a size at or below what has already been
    filled ends the order. A pure size decrease keeps time priority; a price
    change or a size increase moves the order to the back of its new level,
    and an amended price that crosses the book trades at once.
    """

    KIND: ClassVar[str] = "amend_order"
    account: str
    order_id: int
    price_ticks: int
    quantity_lots: int

    def __init__(self, account: str, order_id: int, price_ticks: int, quantity_lots: int) -> None:
        self.account = account
        self.order_id = order_id
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


@dataclass(init=False, slots=True)
class MassCancel:
    """Cancel every open order of `account`, or only those in `instrument`
    when it is not empty."""

    KIND: ClassVar[str] = "mass_cancel"
    account: str
    instrument: str = ""

    def __init__(self, account: str, instrument: str = "") -> None:
        self.account = account
        self.instrument = instrument

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


@dataclass(init=False, slots=True)
class SetTradingState:
    """Move an instrument between CLOSED, AUCTION, CONTINUOUS and HALTED.

    AUCTION -> CONTINUOUS uncrosses the call auction first. Moving to CLOSED
    expires DAY orders, forgets the day's client order ids and, if the
    instrument traded, makes the last trade price the next reference price;
    it never trades (a call auction closed or halted before its uncross
    leaves its GTC orders crossed for the next one).
    """

    KIND: ClassVar[str] = "set_trading_state"
    instrument: str
    state: int

    def __init__(self, instrument: str, state: int) -> None:
        self.instrument = instrument
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


@dataclass(init=False, slots=True)
class ListInstrument:
    KIND: ClassVar[str] = "list_instrument"
    instrument: Instrument

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument

    def __reduce__(self) -> tuple[Any, ...]:
        return _reduce(self)


# Builders of the three order commands, for interpreted callers of the compiled build (a
# gateway, a simulation, a driver): a compiled function takes its arguments by vectorcall, where
# calling a compiled class parses an argument tuple, which costs about half as much again as the
# command's construction itself. Same result as calling the class.


def make_new_order(
    account: str,
    instrument: str,
    client_order_id: str,
    side: int,
    price_ticks: int,
    quantity_lots: int,
    time_in_force: int = GTC,
    order_type: int = LIMIT,
    post_only: bool = False,
    stp_mode: int = STP_CANCEL_NEWEST,
    receipts: tuple[str, ...] = (),
) -> NewOrder:
    """``NewOrder(...)``."""
    return NewOrder(
        account,
        instrument,
        client_order_id,
        side,
        price_ticks,
        quantity_lots,
        time_in_force,
        order_type,
        post_only,
        stp_mode,
        receipts,
    )


def make_cancel_order(account: str, order_id: int) -> CancelOrder:
    """``CancelOrder(...)``."""
    return CancelOrder(account, order_id)


def make_amend_order(account: str, order_id: int, price_ticks: int, quantity_lots: int) -> AmendOrder:
    """``AmendOrder(...)``."""
    return AmendOrder(account, order_id, price_ticks, quantity_lots)


MatchingCommand = NewOrder | CancelOrder | AmendOrder | MassCancel | SetTradingState | ListInstrument

MATCHING_COMMANDS: dict[str, type[MatchingCommand]] = {
    cls.KIND: cls for cls in (NewOrder, CancelOrder, AmendOrder, MassCancel, SetTradingState, ListInstrument)
}

COMMAND_FIELD_TYPES: dict[type[Any], dict[str, Any]] = {NewOrder: {"receipts": tuple[str, ...]}}
"""Field types that a class's annotations do not carry whole in the compiled build, where mypyc
records ``tuple[str, ...]`` as ``tuple``; the journal's codec reads them from here."""
