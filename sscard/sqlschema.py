"""Creating tables when several processes may do it at the same moment.

gunicorn boots its workers together, and each one opens the same database: SQLAlchemy's
``create_all`` checks for a table, then creates it, so the loser of that race gets "table
already exists" (SQLite's OperationalError, PostgreSQL's ProgrammingError or IntegrityError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa


def create_all_concurrently(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """``metadata.create_all(engine)``, accepting a lost race when the tables now exist."""
    try:
        metadata.create_all(engine)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        present = sa.inspect(engine)
        if not all(present.has_table(table.name) for table in metadata.sorted_tables):
            raise


def alembic_upgrade(
    engine: sa.Engine,
    migrations_dir: Path,
    *,
    version_table: str = "alembic_version",
    **execution_options: Any,
) -> None:
    """Apply a package's Alembic migrations up to head; a no-op when the schema is current.

    ``execution_options`` go on the connection that migrates (the CA uses one to take SQLite's
    write lock up front). The package's ``env.py`` reads the connection from
    ``config.attributes["connection"]`` and must name the same ``version_table``.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table": version_table}).get_current_revision()
        if current == head:
            return
    with engine.connect().execution_options(**execution_options) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
