"""The guide's step commands (docs/card-issuing-guide.md §4) on bad input: a clear usage
error that names the problem, before any card or RA is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reader_tools.cli import emulate
from reader_tools.issuance_cli import confirm, fetch_certs
from sscard.card.client import CardClient
from sscard.card.transport import PcscTransport
from sscard.emulator.runner import prepare_card
from sscard.emulator.sample import sample_card
from tests.card.conftest import CARD_READER, EmulatorProcess, PcscRig, run_cli
from tests.issuance.test_pcsc import blank, order_json

__all__ = ["blank"]  # the blank card in a reader, a fixture

# nothing listens here: a command that got past its checks would fail with exit 13 instead
NOWHERE = "http://127.0.0.1:9"


@pytest.mark.parametrize("command", [fetch_certs, confirm], ids=["fetch-certs", "confirm"])
@pytest.mark.parametrize("request_id", ["", "rq-", "12345", "rq-0123 abc"])
def test_a_mangled_request_id_is_a_usage_error(command: object, request_id: str,
                                                tmp_path: Path) -> None:
    """An unset shell variable (`"$REQUEST"` empty) or a cut-off copy is named as such, not
    sent to the RA to come back as "not found"."""
    token = tmp_path / "token"
    token.write_text("t\n")
    token.chmod(0o600)
    argv = [request_id, "--ra-url", NOWHERE, "--token-file", str(token)]
    if command is fetch_certs:
        argv += ["--out-dir", str(tmp_path / "issued")]
    result = CliRunner().invoke(command, argv)  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    assert "is not an enrollment id" in result.output
    assert not (tmp_path / "issued").exists()


def test_new_blank_card_has_no_holder_and_the_initial_pin(tmp_path: Path) -> None:
    blank = prepare_card(tmp_path / "blank.card", False, 3, new_blank=True)
    sample = sample_card()
    assert (tmp_path / "blank.card").exists()
    assert blank.pin == sample.pin
    holder_records = blank.records["SSSE/0006"]
    assert holder_records != sample.records["SSSE/0006"]
    # an existing card is loaded as it is, never replaced by a blank one
    again = prepare_card(tmp_path / "blank.card", False, 3, new_blank=True)
    assert again.atr == blank.atr


def test_new_sample_and_new_blank_exclude_each_other(tmp_path: Path) -> None:
    result = CliRunner().invoke(emulate, ["--state", str(tmp_path / "c.card"), "--new-sample",
                                          "--new-blank"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
    assert not (tmp_path / "c.card").exists()


def test_a_missing_card_file_names_both_ways_to_create_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(emulate, ["--state", str(tmp_path / "c.card")])
    assert result.exit_code != 0
    assert "--new-sample or --new-blank" in result.output


def test_write_data_gives_a_blank_card_its_number_once(pcsc_rig: PcscRig, blank: EmulatorProcess,
                                                      tmp_path: Path) -> None:
    """With card_number, write-data writes the card data (EF05) of a blank card; a card that
    has a number keeps it: another number is refused (exit 12) and nothing is written."""
    data = order_json(9311)
    holder = {k: data[k] for k in ("ssn", "name", "sex", "ethnicity", "birthplace",
                                   "birth_date", "card_number")}
    path = tmp_path / "holder.json"
    path.write_text(json.dumps(holder, ensure_ascii=False), encoding="utf-8")
    done = run_cli(pcsc_rig, "write-data", "--data", str(path))
    assert done.returncode == 0, done.stderr
    assert f"card number {data['card_number']}" in done.stdout
    again = run_cli(pcsc_rig, "write-data", "--data", str(path))
    assert again.returncode == 0 and "kept as it is" in again.stdout, again.stderr
    path.write_text(json.dumps({**holder, "card_number": "B99999999"}), encoding="utf-8")
    refused = run_cli(pcsc_rig, "write-data", "--data", str(path))
    assert refused.returncode == 12, refused.stderr
    assert f"already has card number {data['card_number']}" in refused.stderr
    with CardClient(PcscTransport(CARD_READER)) as client:
        card = client.read_card_data()
    assert card.card_number == data["card_number"] and card.spec_version == "3.00"
