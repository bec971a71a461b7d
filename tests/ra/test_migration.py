"""Migrations on a database in use: 0002 at 0001 keeps the officers' accounts and closes a batch
from before station binding (open to every API client); 0004 at 0003 fills in the fingerprint
of the certificates officers registered before, on SQLite and PostgreSQL, so that they still
log in with their cards (found by the indexed fingerprint now), and goes back down cleanly."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from ra import store
from ra.errors import AuthenticationFailed
from ra.models import Role
from ra.service import RegistrationAuthority
from sscard.audit.log import AuditLog
from tests.cms.pki import make_ca, make_leaf
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
from tests.ra.rig import PASSWORD, person_of


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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_from_0003_finds_registered_certificates_by_fingerprint(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'ra.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = store.make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(store.MIGRATIONS_DIR))
    person = person_of(41)
    registered = make_leaf(f"CN=王五,serialNumber={person},C=CN", make_ca("CN=Staff CA")).cert
    stranger = make_leaf(f"CN=王五,serialNumber={person},C=CN", make_ca("CN=Staff CA")).cert
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        for name, der in (("wang", registered.dump()), ("zhao", None)):
            conn.execute(text(
                "INSERT INTO officers (username, display_name, password_hash, roles, active, "
                "person_id, certificate_der, created_at) VALUES (:u, :u, 'x', 'officer', :yes, "
                ":p, :c, :t)"), {"u": name, "yes": True, "p": person if der else person_of(42),
                                 "c": der, "t": dt.datetime.now(dt.UTC)})
    try:
        store.upgrade(engine)
        with engine.connect() as conn:
            stored = dict(conn.execute(text(
                "SELECT username, certificate_x5t_s256 FROM officers")).all())
            indexes = {i["name"] for i in inspect(conn).get_indexes("officers")}
        expected = base64.urlsafe_b64encode(hashlib.sha256(registered.dump()).digest())
        assert stored == {"wang": expected.rstrip(b"=").decode(), "zhao": None}
        assert "ix_officers_certificate_x5t_s256" in indexes
        ra = RegistrationAuthority(engine, AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}"))
        try:
            profiles = frozenset({"staff-sign"})
            assert ra.authenticate_card(stored["wang"], "staff-sign", person, profiles).name \
                == "wang"
            other = base64.urlsafe_b64encode(hashlib.sha256(stranger.dump()).digest())
            with pytest.raises(AuthenticationFailed):  # the same person's other certificate
                ra.authenticate_card(other.rstrip(b"=").decode(), "staff-sign", person,
                                     profiles)
        finally:
            ra.close()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
            assert "certificate_x5t_s256" not in {
                c["name"] for c in inspect(conn).get_columns("officers")}
    finally:
        engine.dispose()
