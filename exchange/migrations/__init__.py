"""Alembic migrations of the exchange database (run by ``exchange.upgrade``; no alembic.ini needed)."""

__all__: list[str] = []
