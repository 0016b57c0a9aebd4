"""Trades indexed by (instrument, trade_id) for an instrument's latest trades.

The start-up read of each instrument's latest trades (``Queries.trade_history``) asks for the
highest trade ids of one instrument. On SQLite the index on instrument alone already holds the
trade id (the rowid) after it; on PostgreSQL it did not, and an instrument that had not traded
for a long time was found by scanning the primary key back through every later trade. The
index replaces the one on instrument alone: the writer keeps one index on trades.

Revision ID: 0002
Revises: warehouse_0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "warehouse_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_trades_instrument", table_name="trades")
    op.create_index("ix_trades_instrument_trade", "trades", ["instrument", "trade_id"])


def downgrade() -> None:
    op.drop_index("ix_trades_instrument_trade", table_name="trades")
    op.create_index("ix_trades_instrument", "trades", ["instrument"])
