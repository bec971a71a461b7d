"""Issuance tests: one RA rig (CA, KMC, audit log, RA) per module, a batch pre-authorised by an
officer so that enrollments from the station are approved on submission; and the card
developer's pcscd + vpcd rig (tests/card/conftest.py), shared rather than started twice."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.card import conftest as card_rig
from tests.ra.rig import RaRig, make_rig

BATCH = "station-1 pre-authorised"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaRig]:
    r = make_rig(tmp_path_factory.mktemp("issuance"))
    r.ra.authorise_batch(r.actor("officer1"), BATCH, 1000)
    yield r
    r.close()


@pytest.fixture
def serial_no() -> int:
    """A number unique within the session (cardholders and card numbers derive from it)."""
    return next(_numbers)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def _running_card_rig() -> card_rig.PcscRig | None:
    """The card tests' rig, when it already runs in this session. libpcsclite reads the socket
    path (PCSCLITE_CSOCK_NAME) once per process, so a process can talk to one pcscd only: a
    second rig would be unreachable, and tests/card's rig is a session fixture of its own."""
    sock = os.environ.get("PCSCLITE_CSOCK_NAME")
    if not sock or not Path(sock).exists():
        return None
    workdir = Path(sock).parent.parent
    conf = workdir / "reader.conf.d" / "vpcd"
    if not conf.exists():
        return None
    for line in conf.read_text().splitlines():
        if line.startswith("CHANNELID"):
            # the running rig's coordinates; this object never starts or stops pcscd
            rig = card_rig.PcscRig(workdir)
            rig.port = int(line.split()[1], 16)
            rig.socket_path = Path(sock)
            rig.env = dict(os.environ, PCSCLITE_CSOCK_NAME=sock, SSCARD_VPCD_PORT=str(rig.port))
            return rig
    return None


@pytest.fixture(scope="session")
def pcsc_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[card_rig.PcscRig]:
    """tests/card's rig: the running one, or started by its own fixture code."""
    running = _running_card_rig()
    if running is not None:
        yield running
        return
    yield from card_rig.pcsc_rig.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined]
