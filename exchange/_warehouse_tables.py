"""Warehouse read models: receipts, deliveries and stock per warehouse and instrument.

Written by the sequencer in each batch's transaction, beside the journal rows
they derive from (``exchange._warehouse_projection``); never read back into the
core. Created by the migration ``warehouse_0001``; these classes mirror it.
One index per table at most (every index costs the writer): receipts by holder.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange._tables import Base

__all__ = ["DeliveryRow", "ReceiptRow", "StockRow"]

_ID = BigInteger().with_variant(Integer(), "sqlite")


class ReceiptRow(Base):
    """Every receipt as it stands. `instrument` is the listed instrument whose goods
    it holds (group, commodity and grade); `order_id` / `deal_id` what a locked or
    dispute-frozen receipt is locked to (0: nothing); `last_seq` its latest change."""

    __tablename__ = "warehouse_receipts"

    number: Mapped[str] = mapped_column(String(96), primary_key=True)
    warehouse_id: Mapped[str] = mapped_column(String(64))
    instrument: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(64))
    commodity: Mapped[str] = mapped_column(String(64))
    group_name: Mapped[str] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(200))
    weight_kg: Mapped[int] = mapped_column(BigInteger)
    pieces: Mapped[int] = mapped_column(BigInteger)
    lot_numbers: Mapped[str] = mapped_column(String(1000))
    certificate_no: Mapped[str] = mapped_column(String(200))
    calorific_kcal_per_kg: Mapped[int] = mapped_column(Integer)
    moisture_bps: Mapped[int] = mapped_column(Integer)
    sulphur_bps: Mapped[int] = mapped_column(Integer)
    steel_grade: Mapped[str] = mapped_column(String(200))
    dimensions: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[int] = mapped_column(BigInteger)
    deal_id: Mapped[int] = mapped_column(BigInteger)
    pledgee: Mapped[str] = mapped_column(String(64))
    scale_weight_kg: Mapped[int] = mapped_column(BigInteger)
    since_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_warehouse_receipts_holder", "holder"),)


class DeliveryRow(Base):
    """Every delivery (one per deal that traded against locked receipts) as it stands.
    `receipts` lists the allocated receipt numbers, comma-separated; `quality_pass`
    is 1 or 0 once the operator confirmed, else 0."""

    __tablename__ = "warehouse_deliveries"

    deal_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    instrument: Mapped[str] = mapped_column(String(32))
    warehouse_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(BigInteger)
    buyer: Mapped[str] = mapped_column(String(64))
    seller: Mapped[str] = mapped_column(String(64))
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    quantity_lots: Mapped[int] = mapped_column(BigInteger)
    contract_weight_kg: Mapped[int] = mapped_column(BigInteger)
    payment_deadline_ns: Mapped[int] = mapped_column(BigInteger)
    delivery_deadline_ns: Mapped[int] = mapped_column(BigInteger)
    receipts: Mapped[str] = mapped_column(String(10_000))
    state: Mapped[str] = mapped_column(String(24))
    actual_weight_kg: Mapped[int] = mapped_column(BigInteger)
    pieces: Mapped[int] = mapped_column(BigInteger)
    quality_pass: Mapped[int] = mapped_column(SmallInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refund_fen: Mapped[int] = mapped_column(BigInteger)
    extra_fen: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(400))
    buyer_receipt: Mapped[str] = mapped_column(String(96))
    residual_receipt: Mapped[str] = mapped_column(String(96))
    last_seq: Mapped[int] = mapped_column(BigInteger)


class StockRow(Base):
    """Goods taken in (receipts confirmed by their holders) and loaded out (receipt
    weight, and the scale weight the operator confirmed) per warehouse and instrument."""

    __tablename__ = "warehouse_stock"

    warehouse_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(64))
    taken_in_kg: Mapped[int] = mapped_column(BigInteger)
    loaded_out_kg: Mapped[int] = mapped_column(BigInteger)
    scale_out_kg: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
