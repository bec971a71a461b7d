"""Audit-log fixtures: an SM2 audit key with its self-signed certificate, and a fresh database
per test on each engine (an SQLite file, a PostgreSQL database in the private test cluster)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from sscard.audit.log import make_engine
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.names import parse_name
from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)

AUDIT_SUBJECT = "CN=审计日志签名,OU=电子认证系统,O=人力资源和社会保障厅,C=CN"


@pytest.fixture(scope="session")
def audit_key() -> SoftwareKey:
    return SoftwareKey.generate("sm2", label="audit-test")


def self_signed(key: SoftwareKey, subject: str = AUDIT_SUBJECT) -> bytes:
    now = dt.datetime.now(dt.UTC)
    name = parse_name(subject)
    cert = (
        CertificateBuilder()
        .subject(name)
        .issuer(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(63) + 1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension("key_usage", {"digital_signature", "non_repudiation"}, critical=True)
        .sign(key)
    )
    return bytes(cert.dump())


@pytest.fixture(scope="session")
def audit_cert(audit_key: SoftwareKey) -> bytes:
    return self_signed(audit_key)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: each test gets its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.sqlite'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database("audit")
    try:
        yield url
    finally:
        cluster.drop_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()
