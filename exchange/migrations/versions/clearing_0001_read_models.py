"""Clearing read models: transfers, balances, holds, deals, withdrawals,
deposits, bank files, closed days, breaks and the projection's progress.

Revision ID: clearing_0001
Revises: api_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "clearing_0001"
down_revision = "api_0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _s(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length), nullable=False)


def _i(name: str, kind: type[sa.types.TypeEngine] = sa.BigInteger) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, kind(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "clearing_transfers",
        sa.Column("transfer_id", _ID, primary_key=True, autoincrement=False),
        _i("seq"),
        _i("code", sa.SmallInteger),
        _s("debit_member", 64),
        _i("debit_account", sa.SmallInteger),
        _s("credit_member", 64),
        _i("credit_account", sa.SmallInteger),
        _i("amount_fen"),
        _s("ref", 160),
    )
    op.create_index("ix_clearing_transfers_seq", "clearing_transfers", ["seq"])
    op.create_table(
        "clearing_balances",
        sa.Column("member", sa.String(64), primary_key=True),
        _s("bank", 64),
        _s("sub_account", 64),
        _i("available_fen"),
        _i("frozen_margin_fen"),
        _i("frozen_escrow_fen"),
        _i("last_seq"),
    )
    op.create_table(
        "clearing_holds",
        sa.Column("hold_id", _ID, primary_key=True, autoincrement=False),
        _s("member", 64),
        _i("account", sa.SmallInteger),
        _i("amount_fen"),
        _s("purpose", 16),
        _s("ref", 160),
        _i("state", sa.SmallInteger),
        _i("opened_seq"),
        _i("last_seq"),
    )
    op.create_table(
        "clearing_deals",
        sa.Column("deal_id", _ID, primary_key=True, autoincrement=False),
        _i("seq"),
        _s("instrument", 32),
        _i("price_ticks"),
        _i("quantity_lots"),
        _i("notional_fen"),
        _s("buyer", 64),
        _s("seller", 64),
        _i("buyer_margin_fen"),
        _i("buyer_fee_fen"),
        _i("seller_margin_fen"),
        _i("seller_fee_fen"),
        _s("state", 16),
        _i("last_seq"),
    )
    op.create_table(
        "clearing_withdrawals",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        _s("request_id", 64),
        _s("member", 64),
        _i("amount_fen"),
        _s("status", 20),
        _s("actor", 64),
        _s("reason", 160),
    )
    op.create_table(
        "clearing_deposits",
        sa.Column("bank", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(64), primary_key=True),
        _s("member", 64),
        _i("amount_fen"),
        _s("value_date", 10),
        _i("seq"),
    )
    op.create_table(
        "clearing_bank_files",
        sa.Column("bank", sa.String(64), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True),
        _s("file_kind", 32),
        _i("applied", sa.Integer),
        _i("duplicates", sa.Integer),
        _i("seq"),
    )
    op.create_table(
        "clearing_days",
        sa.Column("business_date", sa.String(10), primary_key=True),
        _i("seq"),
        _i("ts_ns"),
        _i("member_count", sa.Integer),
        _i("total_fen"),
    )
    op.create_table(
        "clearing_breaks",
        sa.Column("break_id", _ID, primary_key=True, autoincrement=False),
        _s("bank", 64),
        _s("sub_account", 64),
        _s("member", 64),
        _s("reason", 32),
        _i("bank_fen"),
        _i("exchange_fen"),
        sa.Column("is_open", sa.Boolean, nullable=False),
        _i("opened_seq"),
        _i("last_seq"),
    )
    op.create_table(
        "clearing_progress",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        _i("last_seq"),
    )


def downgrade() -> None:
    for name in (
        "clearing_progress",
        "clearing_breaks",
        "clearing_days",
        "clearing_bank_files",
        "clearing_deposits",
        "clearing_withdrawals",
        "clearing_deals",
        "clearing_holds",
        "clearing_balances",
        "clearing_transfers",
    ):
        op.drop_table(name)
