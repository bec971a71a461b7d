"""What card-issuing staff see when the reader, the card or the card's answer is wrong."""

from __future__ import annotations

import pytest

from reader_tools.session import describe
from sscard.card import errors
from sscard.card.client import CardClient
from sscard.card.errors import error_for_status
from sscard.card.transport import PcscTransport
from tests.card.conftest import CARD_READER, EmulatorProcess, run_cli


def test_no_card_in_reader(pcsc_rig):
    pcsc_rig.wait_card(CARD_READER, present=False)
    result = run_cli(pcsc_rig, "info", reader=False)
    assert result.returncode == 4 and "no card" in result.stderr
    named = run_cli(pcsc_rig, "info", "--reader", CARD_READER, reader=False)
    assert named.returncode == 4 and f"reader {CARD_READER!r} holds no card" in named.stderr
    with pytest.raises(errors.NoCard):
        PcscTransport(CARD_READER).connect()


def test_no_reader(pcsc_rig, tmp_path):
    unknown = run_cli(pcsc_rig, "info", "--reader", "Acme Reader 9", reader=False)
    assert unknown.returncode == 3 and "'Acme Reader 9' not found" in unknown.stderr
    no_service = dict(pcsc_rig.env, PCSCLITE_CSOCK_NAME=str(tmp_path / "absent.comm"))
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "sscard.cli", "card", "readers"],
                            env=no_service, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "no card reader" in result.stderr
    assert "pcscd" in result.stderr


def test_card_pulled_mid_operation(pcsc_rig, tmp_path):
    emu = EmulatorProcess(pcsc_rig, tmp_path / "card.json")
    emu.start("--new-sample", "--pull-after", "6")  # EF05 needs 8 READ RECORDs
    try:
        result = run_cli(pcsc_rig, "info", "--reader", CARD_READER, reader=False)
        assert result.returncode == 5, result.stderr
        assert "card removed" in result.stderr and "put it back" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        emu.stop()


def test_client_reports_removal_after_emulator_killed(pcsc_rig, tmp_path):
    emu = EmulatorProcess(pcsc_rig, tmp_path / "card.json")
    emu.start("--new-sample", "--no-psam")
    client = CardClient(PcscTransport(CARD_READER))
    client.connect()
    try:
        client.select_ssse()
        emu.kill()
        pcsc_rig.wait_card(CARD_READER, present=False)
        with pytest.raises(errors.CardRemoved, match="removed"):
            client.read_card_data()
    finally:
        client.close()
        emu.stop()


def test_status_words_become_precise_errors():
    wrong = error_for_status(0x63C2, "VERIFY", pin_command=True)
    assert isinstance(wrong, errors.WrongPin) and wrong.tries_left == 2
    assert "2 tries left" in str(wrong)
    assert isinstance(error_for_status(0x6983, pin_command=True), errors.PinBlocked)
    assert isinstance(error_for_status(0x6983), errors.KeyBlocked)
    assert isinstance(error_for_status(0x63C1), errors.AuthenticationFailed)
    assert isinstance(error_for_status(0x6982), errors.SecurityStatusNotSatisfied)
    assert isinstance(error_for_status(0x6A82), errors.FileNotFound)
    unknown = error_for_status(0x6F12, "READ BINARY")
    assert isinstance(unknown, errors.UnknownStatus)
    assert str(unknown) == "READ BINARY: card answered 6F12: unknown status word"
    message, code = describe(unknown)
    assert code == 8 and "6F12" in message
    assert "9303" in str(error_for_status(0x9303)) and "permanently blocked" in str(
        error_for_status(0x9303))
