"""Fixtures for the key backends: one real SoftHSM2 token per test session, keys per module.

The token itself comes from ``tests/softhsm.py`` (shared with the KMC and CA tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard.keys.pkcs11 import Pkcs11Key, Pkcs11Token
from tests.softhsm import SoftHsmToken, create_token


@pytest.fixture(scope="session")
def softhsm_token() -> SoftHsmToken:
    return create_token(f"keys-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def token(softhsm_token: SoftHsmToken) -> Iterator[Pkcs11Token]:
    with Pkcs11Token(softhsm_token.label, softhsm_token.user_pin.encode(),
                     softhsm_token.module) as tok:
        yield tok


def unique(prefix: str) -> str:
    """A key label no other test module uses on the shared token."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def rsa_key(token: Pkcs11Token) -> Pkcs11Key:
    return token.generate_key("rsa2048", unique("rsa2048"))


@pytest.fixture(scope="module")
def ec256_key(token: Pkcs11Token) -> Pkcs11Key:
    return token.generate_key("ec-p256", unique("p256"))


@pytest.fixture(scope="module")
def ec384_key(token: Pkcs11Token) -> Pkcs11Key:
    return token.generate_key("ec-p384", unique("p384"))


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    found = shutil.which("openssl")
    if found is None:
        message = "openssl command line not found (scripts/system-deps.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_openssl(openssl: str, *args: str | Path, data: bytes | None = None) -> bytes:
    """Run openssl; fail the test with its stderr when it fails."""
    proc = subprocess.run([openssl, *map(str, args)], input=data, capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        raise AssertionError(
            f"openssl {' '.join(map(str, args))} failed: {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout
