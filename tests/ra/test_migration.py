"""Migration 0002 on a database in use at 0001: officers keep their accounts, and a batch from
before station binding (open to every API client) is closed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from ra import store
from ra.models import Role
from ra.service import RegistrationAuthority
from sscard.audit.log import AuditLog
from tests.ra.rig import PASSWORD


def test_upgrade_from_0001_closes_unbound_batches(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'ra.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(store.MIGRATIONS_DIR))
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        from argon2 import PasswordHasher

        conn.execute(text(
            "INSERT INTO officers (username, display_name, password_hash, roles, failed_logins,"
            " locked, active, created_at) VALUES ('li', 'Li', :h, 'officer', 2, 0, 1, :t)"),
            {"h": PasswordHasher().hash(PASSWORD), "t": now})
        conn.execute(text(
            'INSERT INTO batch_authorisations (name, authorised_by, "limit", used, active, '
            "created_at) VALUES ('old', 'li', 100, 3, 1, :t)"), {"t": now})
    store.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT active FROM batch_authorisations")).scalar() in (0,
                                                                                         False)
    ra = RegistrationAuthority(engine, AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}"))
    try:
        actor = ra.authenticate("li", PASSWORD)
        assert actor.roles == {Role.OFFICER} and actor.person == "account:li"
    finally:
        ra.close()
