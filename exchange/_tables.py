"""Database tables: the journal, snapshots and the read-model projections.

The journal is the source of truth. Projections (orders, trades) are written
in the same transaction as the journal rows they derive from and are never
read back into the core. Schema changes go through the Alembic migrations in
``exchange/migrations``; these classes mirror them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "JournalRow", "OrderRow", "SnapshotRow", "TradeRow"]

# INTEGER PRIMARY KEY on SQLite is the 64-bit rowid itself (no second index); BIGINT elsewhere.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class JournalRow(Base):
    """One sequenced command: `body` is the orjson array of its field values in
    declaration order; `crc32` is CRC-32 over kind (UTF-8) then body, stored
    as a signed 32-bit integer."""

    __tablename__ = "journal"

    seq: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    crc32: Mapped[int] = mapped_column(Integer)


class SnapshotRow(Base):
    """The core's state after command `seq`: `body` is zlib-compressed
    canonical orjson (sorted keys) of ``Core.export_state()``; `state_hash`
    is the SHA-256 hex of the uncompressed body."""

    __tablename__ = "snapshots"

    seq: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    state_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class OrderRow(Base):
    """Every accepted order as it stands: quantity_lots = filled_lots +
    open_lots + cancelled_lots. status: open, partially_filled, filled,
    cancelled (an order cancelled after a partial fill keeps its filled_lots)."""

    __tablename__ = "orders"

    order_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(64))
    instrument: Mapped[str] = mapped_column(String(32))
    client_order_id: Mapped[str] = mapped_column(String(64))
    side: Mapped[int] = mapped_column(SmallInteger)
    time_in_force: Mapped[int] = mapped_column(SmallInteger)
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    quantity_lots: Mapped[int] = mapped_column(BigInteger)
    filled_lots: Mapped[int] = mapped_column(BigInteger)
    open_lots: Mapped[int] = mapped_column(BigInteger)
    cancelled_lots: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    last_seq: Mapped[int] = mapped_column(BigInteger)

    # One index: an account's orders. Every index costs the writer on each
    # batch; add more (by migration) when a query needs them.
    __table_args__ = (Index("ix_orders_account", "account"),)


class TradeRow(Base):
    """Every trade; `aggressor` is 0 (buy), 1 (sell) or -1 (auction uncross)."""

    __tablename__ = "trades"

    trade_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    instrument: Mapped[str] = mapped_column(String(32))
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    quantity_lots: Mapped[int] = mapped_column(BigInteger)
    buy_order_id: Mapped[int] = mapped_column(BigInteger)
    buy_account: Mapped[str] = mapped_column(String(64))
    sell_order_id: Mapped[int] = mapped_column(BigInteger)
    sell_account: Mapped[str] = mapped_column(String(64))
    aggressor: Mapped[int] = mapped_column(SmallInteger)

    # An instrument's latest trades (migration 0002). A member's fills are read along the primary
    # key (api._queries): an index by account would cost the writer a page a trade.
    __table_args__ = (Index("ix_trades_instrument_trade", "instrument", "trade_id"),)
