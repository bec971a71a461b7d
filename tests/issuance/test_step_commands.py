"""The guide's step commands (docs/card-issuing-guide.md §4) on bad input: a clear usage
error that names the problem, before any card or RA is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reader_tools.cli import emulate
from reader_tools.issuance_cli import confirm, fetch_certs
from sscard.emulator.runner import prepare_card
from sscard.emulator.sample import sample_card

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
