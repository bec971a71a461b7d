"""KMC test fixtures: a fresh SoftHSM2 token per test (the shared ``tests.softhsm`` store)."""

from __future__ import annotations

import secrets

import pytest

from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
from tests.softhsm import SoftHsmToken, create_token


@pytest.fixture
def softhsm_token() -> SoftHsmToken:
    """A freshly initialised token; its user PIN is what the administrator brings to the
    ceremony (the ceremony replaces it)."""
    return create_token(f"kmc-{secrets.token_hex(6)}", user_pin="11223344")
