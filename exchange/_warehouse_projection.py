"""Warehouse read models from the warehouse core's events, written in the
sequencer's batch transaction.

``WarehouseRows`` is filled in the sequencing thread right after a batch's
commands are applied (``add_all``): every receipt and delivery an event
touched is copied as it then stands in the core (the core is the source of
truth, so a row is the whole record, never a delta), and the goods taken in
and loaded out are summed per warehouse and instrument from the receipt
events. The store writes the rows in the batch's transaction, after the
journal rows: receipts and deliveries replace the row of the same key,
stock rows add their sums to the stored ones.

``stock_report``, ``list_receipts`` and ``list_deliveries`` read the tables (reports and the
CLI); they never touch the core.

Stock report per warehouse and instrument, in kg: taken in and loaded out
(receipt weight; scale_out the weight the operator's scale showed); live
receipts (active, locked, pledged, frozen or loading out) = taken in -
loaded out, of which active, locked (to sell orders), in delivery
(allocated to a deal, or frozen in its dispute), pledged, frozen (by
staff), loading; pending: registered, not yet confirmed by the holder.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from matching import Event
from warehouse import W_DELIVERY, W_DELIVERY_STATE, W_RECEIPT, W_RECEIPT_STATE, WarehouseEngine
from warehouse._model import ACTIVE, FROZEN, LIVE_STATES, LOADING, LOCKED, PLEDGED, REGISTERED

__all__ = [
    "DELIVERY_COLUMNS",
    "RECEIPT_COLUMNS",
    "STOCK_COLUMNS",
    "STOCK_REPORT_FIELDS",
    "WAREHOUSE_EVENT_KINDS",
    "WarehouseRows",
    "list_deliveries",
    "list_receipts",
    "pg_warehouse_text",
    "sqlite_warehouse_steps",
    "stock_report",
]

RECEIPT_COLUMNS = (
    "number", "warehouse_id", "instrument", "holder", "commodity", "group_name", "grade", "weight_kg", "pieces",
    "lot_numbers", "certificate_no", "calorific_kcal_per_kg", "moisture_bps", "sulphur_bps", "steel_grade",
    "dimensions", "location", "state", "order_id", "deal_id", "pledgee", "scale_weight_kg", "since_seq", "last_seq",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "deal_id", "instrument", "warehouse_id", "order_id", "buyer", "seller", "price_ticks", "quantity_lots",
    "contract_weight_kg", "payment_deadline_ns", "delivery_deadline_ns", "receipts", "state", "actual_weight_kg",
    "pieces", "quality_pass", "amount_fen", "refund_fen", "extra_fen", "detail", "buyer_receipt",
    "residual_receipt", "last_seq",
)  # fmt: skip
STOCK_COLUMNS = ("warehouse_id", "instrument", "group_name", "taken_in_kg", "loaded_out_kg", "scale_out_kg", "last_seq")
STOCK_REPORT_FIELDS = (
    "warehouse_id", "instrument", "taken_in_kg", "loaded_out_kg", "scale_out_kg", "live_kg", "active_kg",
    "locked_kg", "in_delivery_kg", "pledged_kg", "frozen_kg", "loading_kg", "pending_kg",
)  # fmt: skip

WAREHOUSE_EVENT_KINDS = frozenset((W_RECEIPT, W_RECEIPT_STATE, W_DELIVERY, W_DELIVERY_STATE))
"""The events the warehouse rows are made of (``add_all`` skips every other)."""
_T, _LO, _SO, _SEQ = 1, 2, 3, 4  # positions in a stock sum: [group, taken in, loaded out, scale out, last seq]


class WarehouseRows:
    """The warehouse rows of one batch."""

    __slots__ = ("receipts", "deliveries", "stock", "_symbols")

    def __init__(self) -> None:
        self.receipts: dict[str, tuple[Any, ...]] = {}
        self.deliveries: dict[int, tuple[Any, ...]] = {}
        self.stock: dict[tuple[str, str], list[Any]] = {}
        self._symbols: dict[tuple[str, str, str], str] = {}

    def __bool__(self) -> bool:
        return bool(self.receipts or self.deliveries or self.stock)

    def _instrument(self, engine: WarehouseEngine, group: str, commodity: str, grade: str) -> str:
        """The listed instrument whose goods these are (the first symbol, should two share them)."""
        key = (group, commodity, grade)
        symbol = self._symbols.get(key)
        if symbol is None:
            matches = sorted(t.symbol for t in engine.instruments.values() if (t.group, t.commodity, t.grade) == key)
            symbol = self._symbols[key] = matches[0] if matches else ""
        return symbol

    def add_all(self, event_lists: Iterable[list[Event]], engine: WarehouseEngine) -> None:
        """Fold in the events of commands just applied to `engine` (call before any later command)."""
        receipts: dict[str, int] = {}
        deals: dict[int, int] = {}
        for events in event_lists:
            for e in events:
                kind = e[0]
                if kind not in WAREHOUSE_EVENT_KINDS:
                    continue
                if kind == W_RECEIPT_STATE:
                    receipts[e[2]] = e[1]
                    transition = e[3]
                    if transition in ("confirmed", "loaded_out"):
                        r = engine.receipts[e[2]]
                        key = (r.warehouse_id, self._instrument(engine, r.group, r.commodity, r.grade))
                        row = self.stock.get(key)
                        if row is None:
                            row = self.stock[key] = [r.group, 0, 0, 0, 0]
                        if transition == "confirmed":
                            row[_T] += e[6]
                        else:
                            row[_LO] += e[6]
                            row[_SO] += int(e[8])
                        row[_SEQ] = e[1]
                elif kind == W_RECEIPT:
                    receipts[e[2]] = e[1]
                else:
                    deals[e[2]] = e[1]
        for number, seq in receipts.items():
            r = engine.receipts[number]
            self.receipts[number] = (
                r.number, r.warehouse_id, self._instrument(engine, r.group, r.commodity, r.grade), r.holder,
                r.commodity, r.group, r.grade, r.weight_kg, r.pieces, r.lot_numbers, r.certificate_no,
                r.calorific_kcal_per_kg, r.moisture_bps, r.sulphur_bps, r.steel_grade, r.dimensions, r.location,
                r.state, r.order_id, r.deal_id, r.pledgee, r.scale_weight_kg, r.since_seq, seq,
            )  # fmt: skip
        for deal_id, seq in deals.items():
            d = engine.deliveries[deal_id]
            self.deliveries[deal_id] = (
                d.deal_id, d.instrument, d.warehouse_id, d.order_id, d.buyer, d.seller, d.price_ticks,
                d.quantity_lots, d.contract_weight_kg, d.payment_deadline_ns, d.delivery_deadline_ns,
                ",".join(d.receipts), d.state, d.actual_weight_kg, d.pieces, int(d.quality_pass), d.amount_fen,
                d.refund_fen, d.extra_fen, d.detail, d.buyer_receipt, d.residual_receipt, seq,
            )  # fmt: skip

    def stock_rows(self) -> list[tuple[Any, ...]]:
        """(STOCK_COLUMNS) with the batch's sums; the store adds them to the stored ones."""
        return [(w, i, *row) for (w, i), row in self.stock.items()]


def _on_conflict(table: str, columns: tuple[str, ...], keys: int, add: bool = False) -> str:
    """ON CONFLICT (the first `keys` columns) DO UPDATE: replace the other columns, or (`add`)
    add the weights (*_kg) to the stored ones."""
    sets = [
        f"{name} = {table}.{name} + excluded.{name}" if add and name.endswith("_kg") else f"{name} = excluded.{name}"
        for name in columns[keys:]
    ]
    return f" ON CONFLICT ({', '.join(columns[:keys])}) DO UPDATE SET {', '.join(sets)}"


def _sqlite_upsert(table: str, columns: tuple[str, ...], keys: int, add: bool = False) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})" + _on_conflict(table, columns, keys, add)


_SQLITE_RECEIPTS = _sqlite_upsert("warehouse_receipts", RECEIPT_COLUMNS, 1)
_SQLITE_DELIVERIES = _sqlite_upsert("warehouse_deliveries", DELIVERY_COLUMNS, 1)
_SQLITE_STOCK = _sqlite_upsert("warehouse_stock", STOCK_COLUMNS, 2, add=True)


def sqlite_warehouse_steps(rows: WarehouseRows) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The rows as (statement, rows) for ``executemany`` within the batch's SQLite transaction."""
    steps: list[tuple[str, list[tuple[Any, ...]]]] = []
    if rows.receipts:
        steps.append((_SQLITE_RECEIPTS, list(rows.receipts.values())))
    if rows.deliveries:
        steps.append((_SQLITE_DELIVERIES, list(rows.deliveries.values())))
    if rows.stock:
        steps.append((_SQLITE_STOCK, rows.stock_rows()))
    return steps


def _pg_upsert(
    table: str, columns: tuple[str, ...], keys: int, rows: Iterable[tuple[Any, ...]], literal: Any, add: bool = False
) -> str:
    values = ",".join("(" + ",".join(literal(v) if type(v) is str else str(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}" + _on_conflict(table, columns, keys, add)


def pg_warehouse_text(rows: WarehouseRows, literal: Any) -> str:
    """The rows as PostgreSQL statements (strings made literals by `literal`), joined by '; '."""
    parts = []
    if rows.receipts:
        parts.append(_pg_upsert("warehouse_receipts", RECEIPT_COLUMNS, 1, rows.receipts.values(), literal))
    if rows.deliveries:
        parts.append(_pg_upsert("warehouse_deliveries", DELIVERY_COLUMNS, 1, rows.deliveries.values(), literal))
    if rows.stock:
        parts.append(_pg_upsert("warehouse_stock", STOCK_COLUMNS, 2, rows.stock_rows(), literal, add=True))
    return "; ".join(parts)


# ------------------------------------------------------------------ reading

_REPORT_SQL = text(
    "SELECT warehouse_id, instrument, "
    "SUM(CASE WHEN state IN ('active', 'locked', 'pledged', 'frozen', 'loading') THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'active' AND deal_id = 0 THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'locked' AND deal_id = 0 THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state IN ('locked', 'frozen') AND deal_id <> 0 THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'pledged' THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'frozen' AND deal_id = 0 THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'loading' THEN weight_kg ELSE 0 END), "
    "SUM(CASE WHEN state = 'registered' THEN weight_kg ELSE 0 END) "
    "FROM warehouse_receipts GROUP BY warehouse_id, instrument"
)
assert {ACTIVE, LOCKED, PLEDGED, FROZEN, LOADING} == LIVE_STATES, "the report SQL names every live state"
assert REGISTERED == "registered"


def stock_report(conn: Connection) -> list[dict[str, Any]]:
    """The stock report from the read models, one dict (STOCK_REPORT_FIELDS) per warehouse and
    instrument, sorted by both."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(key: tuple[str, str]) -> dict[str, Any]:
        found = rows.get(key)
        if found is None:
            found = rows[key] = dict.fromkeys(STOCK_REPORT_FIELDS, 0)
            found["warehouse_id"], found["instrument"] = key
        return found

    for warehouse_id, instrument, taken_in, loaded_out, scale_out in conn.execute(
        text("SELECT warehouse_id, instrument, taken_in_kg, loaded_out_kg, scale_out_kg FROM warehouse_stock")
    ):
        item = row((warehouse_id, instrument))
        item["taken_in_kg"], item["loaded_out_kg"], item["scale_out_kg"] = taken_in, loaded_out, scale_out
    for warehouse_id, instrument, *sums in conn.execute(_REPORT_SQL):
        item = row((warehouse_id, instrument))
        for name, value in zip(STOCK_REPORT_FIELDS[5:], sums, strict=True):
            item[name] = int(value or 0)
    return [rows[key] for key in sorted(rows)]


MAX_LISTED_RECEIPTS = 10_000
"""Receipts ``list_receipts`` returns at most (newest change first)."""


def list_receipts(
    conn: Connection,
    holder: str | None = None,
    warehouse_id: str | None = None,
    state: str | None = None,
    limit: int = 1_000,
) -> list[dict[str, Any]]:
    """Receipts from the read model, filtered, newest change first, at most `limit` (up to
    MAX_LISTED_RECEIPTS)."""
    assert 0 < limit <= MAX_LISTED_RECEIPTS, limit
    where = []
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("holder", holder), ("warehouse_id", warehouse_id), ("state", state)):
        if value is not None:
            where.append(f"{name} = :{name}")
            params[name] = value
    sql = f"SELECT {', '.join(RECEIPT_COLUMNS)} FROM warehouse_receipts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY last_seq DESC, number LIMIT :limit"
    return [dict(zip(RECEIPT_COLUMNS, r, strict=True)) for r in conn.execute(text(sql), params)]


def list_deliveries(
    conn: Connection, member: str | None = None, state: str | None = None, limit: int = 1_000
) -> list[dict[str, Any]]:
    """Deliveries from the read model where `member` is buyer or seller (when given) and in
    `state` (when given), newest deal first, at most `limit` (up to MAX_LISTED_RECEIPTS)."""
    assert 0 < limit <= MAX_LISTED_RECEIPTS, limit
    where = []
    params: dict[str, Any] = {"limit": limit}
    if member is not None:
        where.append("(buyer = :member OR seller = :member)")
        params["member"] = member
    if state is not None:
        where.append("state = :state")
        params["state"] = state
    sql = f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM warehouse_deliveries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY deal_id DESC LIMIT :limit"
    return [dict(zip(DELIVERY_COLUMNS, r, strict=True)) for r in conn.execute(text(sql), params)]
