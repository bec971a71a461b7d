"""The RA database: ``<home>/ra.db`` (SQLite) by default, or PostgreSQL by URL; the schema is
applied by Alembic (``upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from sscard.sqlschema import alembic_upgrade

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_FILE = "ra.db"
SQLITE_BUSY_TIMEOUT_S = 30


def default_url(home: str | Path) -> str:
    return f"sqlite:///{Path(home) / DB_FILE}"


def make_engine(url: str) -> Engine:
    """SQLite with WAL, a busy timeout and foreign keys on; other databases as they come."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S,
                                              "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def upgrade(engine: Engine) -> None:
    """Apply the RA's Alembic migrations up to head (a no-op when the schema is current)."""
    alembic_upgrade(engine, MIGRATIONS_DIR)
