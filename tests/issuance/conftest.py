"""Issuance tests: one RA rig (CA, KMC, audit log, RA) per module, a batch pre-authorised by an
officer so that enrollments from the station are approved on submission. PC/SC tests use the
session's one pcscd + vpcd rig (``pcsc_rig`` in tests/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ra.rig import RaRig, make_rig

BATCH = "station-1 pre-authorised"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    r = make_rig(tmp_path_factory.mktemp("issuance"))
    r.ra.authorise_batch(r.actor("officer1"), BATCH, 1000, station="station-1")
    yield r
    r.close()


@pytest.fixture
def serial_no() -> int:
    """A number unique within the session (cardholders and card numbers derive from it)."""
    return next(_numbers)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


