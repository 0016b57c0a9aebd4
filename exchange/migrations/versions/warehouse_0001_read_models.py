"""Warehouse read models: receipts, deliveries, stock per warehouse and instrument.

Revision ID: warehouse_0001
Revises: clearing_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "warehouse_0001"
down_revision = "clearing_0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _s(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length), nullable=False)


def _i(name: str, kind: type[sa.types.TypeEngine] = sa.BigInteger) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, kind(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "warehouse_receipts",
        sa.Column("number", sa.String(96), primary_key=True),
        _s("warehouse_id", 64),
        _s("instrument", 32),
        _s("holder", 64),
        _s("commodity", 64),
        _s("group_name", 64),
        _s("grade", 200),
        _i("weight_kg"),
        _i("pieces"),
        _s("lot_numbers", 1000),
        _s("certificate_no", 200),
        _i("calorific_kcal_per_kg", sa.Integer),
        _i("moisture_bps", sa.Integer),
        _i("sulphur_bps", sa.Integer),
        _s("steel_grade", 200),
        _s("dimensions", 200),
        _s("location", 200),
        _s("state", 16),
        _i("order_id"),
        _i("deal_id"),
        _s("pledgee", 64),
        _i("scale_weight_kg"),
        _i("since_seq"),
        _i("last_seq"),
    )
    op.create_index("ix_warehouse_receipts_holder", "warehouse_receipts", ["holder"])
    op.create_table(
        "warehouse_deliveries",
        sa.Column("deal_id", _ID, primary_key=True, autoincrement=False),
        _s("instrument", 32),
        _s("warehouse_id", 64),
        _i("order_id"),
        _s("buyer", 64),
        _s("seller", 64),
        _i("price_ticks"),
        _i("quantity_lots"),
        _i("contract_weight_kg"),
        _i("payment_deadline_ns"),
        _i("delivery_deadline_ns"),
        _s("receipts", 10_000),
        _s("state", 24),
        _i("actual_weight_kg"),
        _i("pieces"),
        _i("quality_pass", sa.SmallInteger),
        _i("amount_fen"),
        _i("refund_fen"),
        _i("extra_fen"),
        _s("detail", 400),
        _s("buyer_receipt", 96),
        _s("residual_receipt", 96),
        _i("last_seq"),
    )
    op.create_table(
        "warehouse_stock",
        sa.Column("warehouse_id", sa.String(64), primary_key=True),
        sa.Column("instrument", sa.String(32), primary_key=True),
        _s("group_name", 64),
        _i("taken_in_kg"),
        _i("loaded_out_kg"),
        _i("scale_out_kg"),
        _i("last_seq"),
    )


def downgrade() -> None:
    op.drop_table("warehouse_stock")
    op.drop_table("warehouse_deliveries")
    op.drop_index("ix_warehouse_receipts_holder", table_name="warehouse_receipts")
    op.drop_table("warehouse_receipts")
