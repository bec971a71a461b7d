"""Alembic migrations of the CA database (applied by ``ca.storage.upgrade``)."""
