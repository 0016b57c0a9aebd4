"""Journal, snapshots, orders and trades.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# INTEGER PRIMARY KEY on SQLite is the 64-bit rowid itself (no second index); BIGINT elsewhere.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("seq", _ID, primary_key=True, autoincrement=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("crc32", sa.Integer, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("seq", _ID, primary_key=True, autoincrement=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", _ID, primary_key=True, autoincrement=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("side", sa.SmallInteger, nullable=False),
        sa.Column("time_in_force", sa.SmallInteger, nullable=False),
        sa.Column("price_ticks", sa.BigInteger, nullable=False),
        sa.Column("quantity_lots", sa.BigInteger, nullable=False),
        sa.Column("filled_lots", sa.BigInteger, nullable=False),
        sa.Column("open_lots", sa.BigInteger, nullable=False),
        sa.Column("cancelled_lots", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_orders_account", "orders", ["account"])
    op.create_table(
        "trades",
        sa.Column("trade_id", _ID, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts_ns", sa.BigInteger, nullable=False),
        sa.Column("instrument", sa.String(32), nullable=False),
        sa.Column("price_ticks", sa.BigInteger, nullable=False),
        sa.Column("quantity_lots", sa.BigInteger, nullable=False),
        sa.Column("buy_order_id", sa.BigInteger, nullable=False),
        sa.Column("buy_account", sa.String(64), nullable=False),
        sa.Column("sell_order_id", sa.BigInteger, nullable=False),
        sa.Column("sell_account", sa.String(64), nullable=False),
        sa.Column("aggressor", sa.SmallInteger, nullable=False),
    )
    op.create_index("ix_trades_instrument", "trades", ["instrument"])


def downgrade() -> None:
    op.drop_table("trades")
    op.drop_table("orders")
    op.drop_table("snapshots")
    op.drop_table("journal")
