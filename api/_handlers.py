"""Request handlers: one per request type, registered with the roles that may send it.

A handler gets the gateway, the connection and the validated request and
returns one of:

- a ``dict``: the result, answered ``accepted`` at once;
- a ``Submit``: a core command to sequence and a ``finish(ack)`` that turns
  the command's events into the result (or raises ApiError); the answer goes
  out after the journal commit;
- an awaitable of a ``dict`` (queries that read the database off the loop);
- None: the handler answered itself (subscriptions answer before their
  snapshot or replay is queued).

Raising ApiError answers an error. New request types (clearing, warehouse,
operator and staff actions) are added with ``REQUESTS.register(model)`` and
``HANDLERS.register(type, handler, roles)``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from api._errors import ApiError, ErrorCode
from api._marketdata import STATE_WIRE_NAMES
from api._protocol import (
    PRIVATE_CHANNELS,
    AmendOrderRequest,
    CancelOrderRequest,
    FillsRequest,
    InstrumentsRequest,
    LoginRequest,
    MassCancelRequest,
    NewOrderRequest,
    OrdersRequest,
    PingRequest,
    SetTradingStateRequest,
    SnapshotRequest,
    StateName,
    SubscribeRequest,
    UnsubscribeRequest,
)
from api._views import warehouse_stream
from exchange import Ack, order_status
from matching import (
    ACCEPTED,
    AMENDED,
    AUCTION,
    BREAK,
    CANCELLED,
    CLOSED,
    CONTINUOUS,
    DUPLICATE,
    HALTED,
    REJECTED,
    STATE,
    TRADE,
    MassCancel,
    Rejected,
    SetTradingState,
    make_amend_order,
    make_cancel_order,
    make_new_order,
)

if TYPE_CHECKING:
    from api._server import Gateway
    from api._session import Connection

__all__ = [
    "ALL_ROLES",
    "HANDLERS",
    "PARSED_PRICES_PER_INSTRUMENT",
    "Handler",
    "HandlerRegistry",
    "Submit",
    "instrument_info",
]

ALL_ROLES = frozenset({"trader", "operator", "bank", "staff"})
_SIDES = {"buy": 0, "sell": 1}
_TIFS = {"gtc": 0, "day": 1, "ioc": 2, "fok": 3}
_TYPES = {"limit": 0, "market": 1}
_STP = {"none": 0, "cancel_newest": 1, "cancel_oldest": 2, "cancel_both": 3, "decrement": 4}
_STATES = {"closed": CLOSED, "auction": AUCTION, "continuous": CONTINUOUS, "halted": HALTED, "break": BREAK}
"""The trading states staff may set, by wire name: every state of the core (the schedule's midday
break too); the core refuses a move its state machine has not (BAD_STATE)."""
assert set(_STATES) == set(get_args(StateName)), "the wire's states and the handler's must be the same"
PARSED_PRICES_PER_INSTRUMENT = 4096
"""Wire prices remembered with their ticks per instrument (``_ticks``); when full, all are forgotten."""


@dataclass(slots=True)
class Submit:
    command: Any
    finish: Callable[[Ack], dict[str, Any]]


HandlerFn = Callable[["Gateway", "Connection", Any], "dict[str, Any] | Submit | Awaitable[dict[str, Any]] | None"]


@dataclass(frozen=True, slots=True)
class Handler:
    run: HandlerFn
    roles: frozenset[str] | None  # None: also without login


class HandlerRegistry:
    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def register(self, request_type: str, run: HandlerFn, roles: frozenset[str] | None) -> None:
        assert request_type not in self.handlers, f"handler for {request_type!r} registered twice"
        self.handlers[request_type] = Handler(run, roles)


HANDLERS = HandlerRegistry()


# ---------------------------------------------------------------- helpers


def _reject(ack: Ack) -> None:
    """Raise the core's reject (or a duplicate's first reject) as an ApiError."""
    for e in ack.events:
        if e[0] == REJECTED:
            raise _core_error(e[4], e[5], ack.seq)


def _core_error(code: int, detail: str, seq: int) -> ApiError:
    error = ApiError(ErrorCode.from_reject(code), detail)
    error.seq = seq  # type: ignore[attr-defined]
    return error


def _ticks(gateway: Gateway, symbol: str, price: str) -> int:
    """A wire price in ticks of `symbol`. Prices parsed lately are remembered per instrument (at most
    PARSED_PRICES_PER_INSTRUMENT, then forgotten all at once): parsing a decimal costs more than a
    lookup, and a listed instrument's tick never changes. A refused price is never remembered."""
    parsed = gateway.parsed_prices.get(symbol)
    if parsed is not None:
        known = parsed.get(price)
        if known is not None:
            return known
    data = gateway.market.instruments.get(symbol)
    if data is None:
        raise ApiError(ErrorCode.UNKNOWN_INSTRUMENT, symbol)
    try:
        ticks = data.instrument.price_to_ticks(price)
    except Rejected as exc:
        raise ApiError(ErrorCode.from_reject(exc.code), exc.detail) from None
    if parsed is None:
        parsed = gateway.parsed_prices[symbol] = {}
    elif len(parsed) >= PARSED_PRICES_PER_INSTRUMENT:
        parsed.clear()
    parsed[price] = ticks
    return ticks


def _known(gateway: Gateway, symbol: str) -> None:
    if symbol not in gateway.market.instruments:
        raise ApiError(ErrorCode.UNKNOWN_INSTRUMENT, symbol)


def _account_for(conn: Connection, requested: str | None) -> str:
    """The account a query or private subscription is about: a trader's own, or the one staff name."""
    key = conn.key
    assert key is not None
    if key.role == "trader":
        if requested is not None and requested != key.subject:
            raise ApiError(ErrorCode.FORBIDDEN, "a trader sees only its own member's account")
        return key.subject
    if key.role == "staff":
        if requested is None:
            raise ApiError(ErrorCode.INVALID_FIELD, "staff name the account in `account`")
        return requested
    raise ApiError(ErrorCode.FORBIDDEN, f"a {key.role} key has no view of member orders and executions")


def _order_account(gateway: Gateway, conn: Connection, requested: str | None) -> str:
    """The account an orders or fills query reads: a trader's own, the one staff name, or (read-only)
    one member a bank supervises, named in `account`."""
    key = conn.key
    assert key is not None
    if key.role != "bank":
        return _account_for(conn, requested)
    if requested is None:
        raise ApiError(ErrorCode.INVALID_FIELD, "a bank names the member in `account`")
    if gateway.views.member_bank.get(requested) != key.subject:
        raise ApiError(ErrorCode.FORBIDDEN, f"{requested} is not a member supervised by bank {key.subject}")
    return requested


def _fills(gateway: Gateway, ack: Ack, order_id: int) -> tuple[list[dict[str, Any]], int, int]:
    """The order's fills in `ack`, its lots filled and its lots cancelled: one pass over the events."""
    price = gateway.price
    fills = []
    filled = cancelled = 0
    for e in ack.events:
        kind = e[0]
        if kind == TRADE:
            if e[6] == order_id or e[9] == order_id:
                fills.append({"trade_id": e[2], "price": price(e[3], e[4]), "quantity_lots": e[5]})
                filled += e[5]
        elif kind == CANCELLED and e[2] == order_id:
            cancelled += e[7]
    return fills, filled, cancelled


# ---------------------------------------------------------------- session


def _ping(gateway: Gateway, conn: Connection, request: PingRequest) -> dict[str, Any]:
    return {"server_time_ms": gateway.clock_ns() // 1_000_000}


async def _login(gateway: Gateway, conn: Connection, request: LoginRequest) -> dict[str, Any]:
    if conn.key is not None:
        raise ApiError(ErrorCode.ALREADY_AUTHENTICATED)
    now_ms = gateway.clock_ns() // 1_000_000
    skew = gateway.limits.auth_max_skew_ms
    if abs(now_ms - request.timestamp_ms) > skew:
        raise ApiError(ErrorCode.STALE_TIMESTAMP, f"server time {now_ms} ms, allowed skew {skew} ms")
    key = await gateway.lookup_key(request.key_id)
    if key is None:
        raise ApiError(ErrorCode.UNKNOWN_KEY, request.key_id)
    if key.revoked:
        raise ApiError(ErrorCode.KEY_REVOKED, request.key_id)
    from api._keys import sign_login

    expected = sign_login(key.key_id, key.signing_key, request.timestamp_ms, request.nonce)
    if not hmac.compare_digest(expected, request.signature):
        raise ApiError(ErrorCode.BAD_SIGNATURE)
    if conn.key is not None:  # a second login raced the lookup
        raise ApiError(ErrorCode.ALREADY_AUTHENTICATED)
    gateway.use_nonce(key.key_id, request.nonce, now_ms)
    sessions = gateway.sessions.setdefault(key.key_id, set())
    if len(sessions) >= gateway.limits.max_sessions_per_key:
        raise ApiError(ErrorCode.TOO_MANY_SESSIONS, f"at most {gateway.limits.max_sessions_per_key}")
    if request.cancel_on_disconnect and key.role != "trader":
        raise ApiError(ErrorCode.FORBIDDEN, "cancel_on_disconnect is for trader keys")
    sessions.add(conn)
    conn.key = key
    conn.session_id = secrets.token_hex(8)
    conn.cancel_on_disconnect = request.cancel_on_disconnect
    return {
        "role": key.role,
        "subject": key.subject,
        "warehouse": gateway.views.operators.get(key.subject) if key.role == "operator" else None,
        "session_id": conn.session_id,
        "epoch": gateway.private.epoch,
        "server_time_ms": now_ms,
        "cancel_on_disconnect": conn.cancel_on_disconnect,
    }


# ----------------------------------------------------------------- orders


def _new_order(gateway: Gateway, conn: Connection, r: NewOrderRequest) -> Submit:
    if r.price is not None:
        price_ticks = _ticks(gateway, r.instrument, r.price)
    else:
        _known(gateway, r.instrument)
        price_ticks = 0
    command = make_new_order(  # (the compiled builder: a NewOrder, built without a constructor's argument tuple)
        conn.account,
        r.instrument,
        r.client_order_id,
        _SIDES[r.side],
        price_ticks,
        r.quantity_lots,
        _TIFS[r.time_in_force],
        _TYPES[r.order_type],
        r.post_only,
        _STP[r.stp_mode],
        r.receipts,
    )

    def finish(ack: Ack) -> dict[str, Any]:
        order_id = 0
        for e in ack.events:
            kind = e[0]
            if kind == ACCEPTED:
                order_id = e[2]
                break
            if kind == REJECTED:
                raise _core_error(e[4], e[5], ack.seq)
            if kind == DUPLICATE:
                if e[5]:
                    raise _core_error(e[5], "a repeat of an earlier command with this client order id", ack.seq)
                return {
                    "order_id": e[4], "client_order_id": r.client_order_id, "seq": ack.seq, "ts_ns": ack.ts_ns,
                    "duplicate": True, "status": "duplicate", "filled_lots": 0, "open_lots": 0,
                    "cancelled_lots": 0, "fills": [],
                }  # fmt: skip
        assert order_id, ack
        fills, filled, cancelled = _fills(gateway, ack, order_id)
        open_lots = r.quantity_lots - filled - cancelled
        assert open_lots >= 0, ack
        if open_lots:
            gateway.entered(conn, order_id)  # its owner (amend), its session (cancel-on-disconnect)
        return {
            "order_id": order_id, "client_order_id": r.client_order_id, "seq": ack.seq, "ts_ns": ack.ts_ns,
            "duplicate": False, "status": order_status(filled, open_lots, cancelled), "filled_lots": filled,
            "open_lots": open_lots, "cancelled_lots": cancelled, "fills": fills,
        }  # fmt: skip

    return Submit(command, finish)


def _cancel_order(gateway: Gateway, conn: Connection, r: CancelOrderRequest) -> Submit:
    def finish(ack: Ack) -> dict[str, Any]:
        _reject(ack)
        cancelled = sum(e[7] for e in ack.events if e[0] == CANCELLED and e[2] == r.order_id)
        return {"order_id": r.order_id, "seq": ack.seq, "ts_ns": ack.ts_ns, "cancelled_lots": cancelled}

    return Submit(make_cancel_order(conn.account, r.order_id), finish)


def _amend_order(gateway: Gateway, conn: Connection, r: AmendOrderRequest) -> Submit:
    order = gateway.order_instrument(conn.account, r.order_id)
    price_ticks = _ticks(gateway, order, r.price) if order else 0
    if not order:
        # Not an open order of the caller's (another member's is answered as one that does not exist,
        # so its price is not read here): let the core answer UNKNOWN_ORDER, whatever the price.
        price_ticks = 1

    def finish(ack: Ack) -> dict[str, Any]:
        _reject(ack)
        result = {
            "order_id": r.order_id, "seq": ack.seq, "ts_ns": ack.ts_ns,
            "price": gateway.price(order, price_ticks) if order else r.price,  # as the streams write it
            "quantity_lots": r.quantity_lots, "open_lots": 0, "priority_kept": False,
            "fills": _fills(gateway, ack, r.order_id)[0],
        }  # fmt: skip
        for e in ack.events:
            if e[0] == AMENDED and e[2] == r.order_id:
                result["open_lots"] = e[7]
                result["priority_kept"] = e[8]
            elif e[0] == TRADE and e[6] == r.order_id:
                result["open_lots"] = e[8]
            elif e[0] == TRADE and e[9] == r.order_id:
                result["open_lots"] = e[11]
            elif e[0] == CANCELLED and e[2] == r.order_id:
                result["open_lots"] = e[8]
        return result

    return Submit(make_amend_order(conn.account, r.order_id, price_ticks, r.quantity_lots), finish)


def _mass_cancel(gateway: Gateway, conn: Connection, r: MassCancelRequest) -> Submit:
    if r.instrument is not None:
        _known(gateway, r.instrument)

    def finish(ack: Ack) -> dict[str, Any]:
        _reject(ack)
        count = sum(1 for e in ack.events if e[0] == CANCELLED)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "cancelled_orders": count}

    return Submit(MassCancel(conn.account, r.instrument or ""), finish)


def _set_trading_state(gateway: Gateway, conn: Connection, r: SetTradingStateRequest) -> Submit:
    _known(gateway, r.instrument)

    def finish(ack: Ack) -> dict[str, Any]:
        _reject(ack)
        state: str = r.state
        for e in ack.events:
            if e[0] == STATE and e[2] == r.instrument:
                state = STATE_WIRE_NAMES[e[3]]
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "instrument": r.instrument, "state": state}

    return Submit(SetTradingState(r.instrument, _STATES[r.state]), finish)


# ---------------------------------------------------------------- queries


def instrument_info(gateway: Gateway, symbol: str) -> dict[str, Any]:
    """An instrument as the `instruments` query shows it."""
    data = gateway.market.instruments[symbol]
    i = data.instrument
    low, high = data.band()
    return {
        "symbol": symbol, "commodity": i.commodity, "product": i.product, "grade": i.grade,
        "warehouse_group": i.warehouse_group, "lot_size_t": i.lot_size_t, "tick": i.tick_cny(),
        "reference_price": data.price(data.reference_ticks), "band_low": data.price(low),
        "band_high": data.price(high), "min_lots": i.min_lots, "max_lots": i.max_lots,
        "state": STATE_WIRE_NAMES[data.state], "receipts_required": symbol in gateway.views.receipts_required,
    }  # fmt: skip


def _instruments(gateway: Gateway, conn: Connection, r: InstrumentsRequest) -> dict[str, Any]:
    return {"instruments": [instrument_info(gateway, symbol) for symbol in sorted(gateway.market.instruments)]}


async def _orders(gateway: Gateway, conn: Connection, r: OrdersRequest) -> dict[str, Any]:
    account = _order_account(gateway, conn, r.account)
    rows = await gateway.query(
        gateway.queries.orders, gateway.price, account, r.status, r.instrument, r.before_order_id, r.limit
    )
    return {"account": account, "orders": rows}


async def _fills_query(gateway: Gateway, conn: Connection, r: FillsRequest) -> dict[str, Any]:
    account = _order_account(gateway, conn, r.account)
    rows = await gateway.query(gateway.queries.fills, gateway.price, account, r.instrument, r.since_seq, r.limit)
    return {"account": account, "fills": rows}


# ----------------------------------------------------------- subscriptions


def _target(gateway: Gateway, conn: Connection, channel: str, instrument: str | None, account: str | None) -> str:
    if channel in PRIVATE_CHANNELS:
        key = conn.key
        if key is None:
            raise ApiError(ErrorCode.NOT_AUTHENTICATED, "private channels need a login")
        if instrument is not None:
            raise ApiError(ErrorCode.INVALID_FIELD, "private channels take no instrument")
        if key.role == "operator" and channel in ("receipts", "deliveries"):
            # an operator follows its own warehouse's receipts and deliveries
            warehouse = gateway.views.operators.get(key.subject)
            if warehouse is None:
                raise ApiError(ErrorCode.UNKNOWN_OPERATOR, key.subject)
            own = warehouse_stream(warehouse)
            if account is not None and account != own:
                raise ApiError(ErrorCode.FORBIDDEN, f"an operator of {warehouse} follows only {own}")
            return own
        if key.role == "bank" and channel == "balances":
            # a bank watches the balances of the members it supervises, one account per subscription
            if account is None:
                raise ApiError(ErrorCode.INVALID_FIELD, "a bank names the member in `account`")
            if gateway.views.member_bank.get(account) != key.subject:
                raise ApiError(ErrorCode.FORBIDDEN, f"{account} is not a member supervised by bank {key.subject}")
            return account
        return _account_for(conn, account)
    if instrument is None:
        raise ApiError(ErrorCode.INVALID_FIELD, f"channel {channel} needs an instrument")
    if account is not None:
        raise ApiError(ErrorCode.INVALID_FIELD, "public channels take no account")
    return instrument


def _subscribe(gateway: Gateway, conn: Connection, r: SubscribeRequest) -> None:
    target = _target(gateway, conn, r.channel, r.instrument, r.account)
    key = (r.channel, target)
    if key in conn.subscriptions:
        raise ApiError(ErrorCode.ALREADY_SUBSCRIBED, f"{r.channel} {target}")
    if len(conn.subscriptions) >= gateway.limits.max_subscriptions_per_connection:
        raise ApiError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {gateway.limits.max_subscriptions_per_connection}")
    if r.channel in PRIVATE_CHANNELS:
        # The answer goes out before the replayed messages: subscribe after answering, once the
        # resume is known to be servable (else the request would be answered twice).
        gateway.private.check_resume(r.channel, target, r.from_seq, r.epoch)
        gateway.answer(conn, r.id, "subscribe", {
            "channel": r.channel, "account": target, "epoch": gateway.private.epoch,
            "seq": gateway.private.stream(r.channel, target).seq,
        })  # fmt: skip
        gateway.private.subscribe(r.channel, target, conn, r.from_seq, r.epoch)
        conn.subscriptions[key] = True
        return
    if r.from_seq is not None or r.epoch is not None:
        raise ApiError(ErrorCode.INVALID_FIELD, "from_seq and epoch are for private channels")
    _known(gateway, target)
    seq = gateway.market.last_seq(r.channel, target)
    gateway.answer(conn, r.id, "subscribe", {"channel": r.channel, "instrument": target, "seq": seq})
    conn.push(gateway.market.snapshot(r.channel, target))
    gateway.market.subscribe(r.channel, target, conn)
    conn.subscriptions[key] = True
    return


def _unsubscribe(gateway: Gateway, conn: Connection, r: UnsubscribeRequest) -> dict[str, Any]:
    if r.channel in PRIVATE_CHANNELS and conn.key is None:
        raise ApiError(ErrorCode.NOT_AUTHENTICATED, "private channels need a login")
    target = _target(gateway, conn, r.channel, r.instrument, r.account)
    key = (r.channel, target)
    if key not in conn.subscriptions:
        raise ApiError(ErrorCode.NOT_SUBSCRIBED, f"{r.channel} {target}")
    gateway.drop_subscription(conn, key)
    if r.channel in PRIVATE_CHANNELS:
        return {"channel": r.channel, "account": target, "seq": gateway.private.stream(r.channel, target).seq}
    return {"channel": r.channel, "instrument": target, "seq": gateway.market.last_seq(r.channel, target)}


def _snapshot(gateway: Gateway, conn: Connection, r: SnapshotRequest) -> None:
    key = (r.channel, r.instrument)
    if key not in conn.subscriptions:
        raise ApiError(ErrorCode.NOT_SUBSCRIBED, f"{r.channel} {r.instrument}")
    seq = gateway.market.last_seq(r.channel, r.instrument)
    gateway.answer(conn, r.id, "snapshot", {"channel": r.channel, "instrument": r.instrument, "seq": seq})
    conn.push(gateway.market.snapshot(r.channel, r.instrument))


TRADER = frozenset({"trader"})
STAFF = frozenset({"staff"})

HANDLERS.register("login", _login, None)
HANDLERS.register("ping", _ping, None)
HANDLERS.register("instruments", _instruments, None)
HANDLERS.register("subscribe", _subscribe, None)
HANDLERS.register("unsubscribe", _unsubscribe, None)
HANDLERS.register("snapshot", _snapshot, None)
HANDLERS.register("new_order", _new_order, TRADER)
HANDLERS.register("cancel_order", _cancel_order, TRADER)
HANDLERS.register("amend_order", _amend_order, TRADER)
HANDLERS.register("mass_cancel", _mass_cancel, TRADER)
HANDLERS.register("set_trading_state", _set_trading_state, STAFF)
HANDLERS.register("orders", _orders, frozenset({"trader", "staff", "bank"}))
HANDLERS.register("fills", _fills_query, frozenset({"trader", "staff", "bank"}))
