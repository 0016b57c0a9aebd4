"""Clearing read models: transfers, balances, holds, deals, withdrawals,
bank records and files, closed days and reconciliation breaks.

Derived from the clearing core's events (``exchange._clearing_projection``),
never read back into the core. Created by the migration ``clearing_0001``;
these classes mirror it. Each table keeps at most one index (every index
costs the writer): transfers are found by seq range for the end of day.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange._tables import Base

__all__ = [
    "BalanceRow",
    "BankFileRow",
    "BreakRow",
    "ClearingProgressRow",
    "DayRow",
    "DealRow",
    "DepositRow",
    "HoldRow",
    "TransferRow",
    "WithdrawalEventRow",
]

_ID = BigInteger().with_variant(Integer(), "sqlite")


class TransferRow(Base):
    """Every ledger transfer (event C_TRANSFER); *_member is "" for an exchange account."""

    __tablename__ = "clearing_transfers"

    transfer_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[int] = mapped_column(SmallInteger)
    debit_member: Mapped[str] = mapped_column(String(64))
    debit_account: Mapped[int] = mapped_column(SmallInteger)
    credit_member: Mapped[str] = mapped_column(String(64))
    credit_account: Mapped[int] = mapped_column(SmallInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    ref: Mapped[str] = mapped_column(String(160))

    __table_args__ = (Index("ix_clearing_transfers_seq", "seq"),)


class BalanceRow(Base):
    """Each member's balances per account kind as of `last_seq`."""

    __tablename__ = "clearing_balances"

    member: Mapped[str] = mapped_column(String(64), primary_key=True)
    bank: Mapped[str] = mapped_column(String(64))
    sub_account: Mapped[str] = mapped_column(String(64))
    available_fen: Mapped[int] = mapped_column(BigInteger)
    frozen_margin_fen: Mapped[int] = mapped_column(BigInteger)
    frozen_escrow_fen: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class HoldRow(Base):
    """Every hold: open (state 0) with its current amount, or closed (settled 1, released 2, forfeited 3)."""

    __tablename__ = "clearing_holds"

    hold_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    member: Mapped[str] = mapped_column(String(64))
    account: Mapped[int] = mapped_column(SmallInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(160))
    state: Mapped[int] = mapped_column(SmallInteger)
    opened_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class DealRow(Base):
    """Every deal (one per trade) and its state: open, escrowed, settled, defaulted, cancelled."""

    __tablename__ = "clearing_deals"

    deal_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    instrument: Mapped[str] = mapped_column(String(32))
    price_ticks: Mapped[int] = mapped_column(BigInteger)
    quantity_lots: Mapped[int] = mapped_column(BigInteger)
    notional_fen: Mapped[int] = mapped_column(BigInteger)
    buyer: Mapped[str] = mapped_column(String(64))
    seller: Mapped[str] = mapped_column(String(64))
    buyer_margin_fen: Mapped[int] = mapped_column(BigInteger)
    buyer_fee_fen: Mapped[int] = mapped_column(BigInteger)
    seller_margin_fen: Mapped[int] = mapped_column(BigInteger)
    seller_fee_fen: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    last_seq: Mapped[int] = mapped_column(BigInteger)


class WithdrawalEventRow(Base):
    """Every step of every withdrawal (event C_WITHDRAWAL), so any moment's state can be read back."""

    __tablename__ = "clearing_withdrawals"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(160))


class DepositRow(Base):
    """Every deposit the bank reported and the ledger booked."""

    __tablename__ = "clearing_deposits"

    bank: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    value_date: Mapped[str] = mapped_column(String(10))
    seq: Mapped[int] = mapped_column(BigInteger)


class BankFileRow(Base):
    """Every bank file applied (event C_FILE)."""

    __tablename__ = "clearing_bank_files"

    bank: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_kind: Mapped[str] = mapped_column(String(32))
    applied: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)


class DayRow(Base):
    """Every closed business day (event C_DAY_CLOSED) with the seq and time of its close."""

    __tablename__ = "clearing_days"

    business_date: Mapped[str] = mapped_column(String(10), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    member_count: Mapped[int] = mapped_column(Integer)
    total_fen: Mapped[int] = mapped_column(BigInteger)


class BreakRow(Base):
    """Every reconciliation break as opened and, later, closed (event C_BREAK)."""

    __tablename__ = "clearing_breaks"

    break_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    bank: Mapped[str] = mapped_column(String(64))
    sub_account: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    bank_fen: Mapped[int] = mapped_column(BigInteger)
    exchange_fen: Mapped[int] = mapped_column(BigInteger)
    is_open: Mapped[bool] = mapped_column(Boolean)
    opened_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class ClearingProgressRow(Base):
    """The last journal seq whose clearing events are in the tables above (one row, id 1)."""

    __tablename__ = "clearing_progress"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
