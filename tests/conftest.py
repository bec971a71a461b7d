"""Shared test fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def conformance_dir() -> Path:
    """../shared/conformance beside the project, or $SSCARD_CONFORMANCE."""
    env = os.environ.get("SSCARD_CONFORMANCE")
    return Path(env) if env else ROOT.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance() -> Path:
    path = conformance_dir()
    if not path.is_dir():
        pytest.skip(f"conformance data not found at {path} (set SSCARD_CONFORMANCE)")
    return path
