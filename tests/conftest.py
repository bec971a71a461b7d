"""Shared test fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard.emulator.pcscd import CARD_READER, PcscdUnavailable, PrivatePcscd

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


# -- PC/SC ------------------------------------------------------------------------------------
# libpcsclite reads its socket path once per process, so a test process can talk to one pcscd
# only: every area (card, issuance, gateway) shares this one session-wide rig, a private pcscd
# with vsmartcard's vpcd driver (its own mount namespace and socket, a free port).


class PcscRig(PrivatePcscd):
    def wait_card(self, reader: str = CARD_READER, present: bool = True,
                  timeout: float = 15) -> None:
        try:
            super().wait_card(reader, present, timeout)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None


@pytest.fixture(scope="session")
def pcsc_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscRig]:
    rig = PcscRig(tmp_path_factory.mktemp("pcsc"))
    try:
        rig.start()
    except PcscdUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (required in CI)")
        pytest.skip(str(exc))
    try:
        yield rig
    finally:
        rig.stop()
