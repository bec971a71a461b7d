"""Fixtures of the CA core tests: CA homes on SQLite or PostgreSQL, requests, openssl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)

SSN = "350102199001011238"
HOLDER = f"CN=张三,serialNumber={SSN},C=CN"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    path = shutil.which("openssl")
    if path is None:
        if _in_ci():
            pytest.fail("CI=true and the openssl command line is missing")
        pytest.skip("openssl command line not installed")
    return path


def run_openssl(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind, for the storage tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ca.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database("ca")
    try:
        yield url
    finally:
        cluster.drop_database(url)


def write_config(path: Path, algorithm: str = "sm2", database_url: str | None = None,
                 issuing_algorithm: str | None = None, offline: bool = False) -> Path:
    db = f'\n[database]\nurl = "{database_url}"\n' if database_url else ""
    path.write_text(f"""\
base_url = "http://127.0.0.1:8080"
{db}
[root]
name = "root"
subject = "CN=Test Root {algorithm},O=人社厅,C=CN"
algorithm = "{algorithm}"
validity_days = 3650
offline = {'true' if offline else 'false'}

[[issuing]]
name = "issuing"
subject = "CN=Test Issuing {algorithm},O=人社厅,C=CN"
algorithm = "{issuing_algorithm or algorithm}"
validity_days = 1825
path_length = 0
""", encoding="utf-8")
    return path
