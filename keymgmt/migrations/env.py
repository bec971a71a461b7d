"""Alembic environment: run with the connection ``keymgmt.db.upgrade`` passes in."""

from __future__ import annotations

from alembic import context

from keymgmt.db import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the KMC migrations through keymgmt.db.upgrade(engine)")
context.configure(connection=connection, render_as_batch=True, version_table=VERSION_TABLE,
                  target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
