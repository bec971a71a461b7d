"""Creating tables when several processes may do it at the same moment.

gunicorn boots its workers together, and each one opens the same database: SQLAlchemy's
``create_all`` checks for a table, then creates it, so the loser of that race gets "table
already exists" (SQLite's OperationalError, PostgreSQL's ProgrammingError or IntegrityError).
"""

from __future__ import annotations

import sqlalchemy as sa


def create_all_concurrently(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """``metadata.create_all(engine)``, accepting a lost race when the tables now exist."""
    try:
        metadata.create_all(engine)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        present = sa.inspect(engine)
        if not all(present.has_table(table.name) for table in metadata.sorted_tables):
            raise
