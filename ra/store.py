"""The RA database: ``<home>/ra.db`` (SQLite) by default, or PostgreSQL by URL; the schema is
applied by Alembic (``upgrade``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from sscard.sqlschema import alembic_upgrade, sqlite_url
from sscard.sqlschema import make_engine as make_engine  # the RA opens its database from here

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_FILE = "ra.db"


def default_url(home: str | Path) -> str:
    return sqlite_url(Path(home) / DB_FILE)


def upgrade(engine: Engine) -> None:
    """Apply the RA's Alembic migrations up to head (a no-op when the schema is current)."""
    alembic_upgrade(engine, MIGRATIONS_DIR)
