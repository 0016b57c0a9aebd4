"""Trades indexed for a member's fills and an instrument's latest trades.

The fills query (a member's trades after a seq, either side) scanned the whole trades table: about
0.1 s a query at a million trades, growing with the history. Two indexes, (buy_account, seq) and
(sell_account, seq), make it two range scans merged in seq order. The instrument index becomes
(instrument, trade_id): on SQLite the same entries as before (an index holds the rowid), on
PostgreSQL the latest trades of an instrument are read from its end instead of a scan filtered
by instrument.

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
    op.create_index("ix_trades_buy_account_seq", "trades", ["buy_account", "seq"])
    op.create_index("ix_trades_sell_account_seq", "trades", ["sell_account", "seq"])


def downgrade() -> None:
    op.drop_index("ix_trades_sell_account_seq", table_name="trades")
    op.drop_index("ix_trades_buy_account_seq", table_name="trades")
    op.drop_index("ix_trades_instrument_trade", table_name="trades")
    op.create_index("ix_trades_instrument", "trades", ["instrument"])
