"""Through the real stack: pyscard -> private pcscd -> vpcd -> `sscard card emulate`."""

from __future__ import annotations

import json

from sscard.card.client import CardClient
from sscard.card.transport import PcscTransport
from tests.card.conftest import CARD_READER, run_cli


def test_info_read_through_pcsc(emulator):
    result = run_cli(emulator.rig, "info", "--format", "json", reader=False)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ssn"] == "111111198101011110"
    assert info["name"] == "张三"
    assert info["algorithm"] == "SM4"
    with CardClient(PcscTransport(CARD_READER)) as client:
        assert client.read_holder_data().name == "张三"
        assert client.atr.hex().upper() == info["atr"]
