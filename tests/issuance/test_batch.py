"""`batch-issue`: many emulated cards from a CSV file through the RA's API, with a progress bar,
a per-card report, resumption after the process is killed, and refusal of a bad file before
any card is touched."""

from __future__ import annotations

import csv
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ca.records import Status
from ra.web import WebConfig, create_app
from reader_tools.batch import state_file
from reader_tools.issuance_cli import batch_issue
from tests.issuance.cards import card_number, holder, inserted
from tests.issuance.conftest import BATCH
from tests.issuance.test_personalize import certificates_for
from tests.ra.browser import serve
from tests.ra.rig import RaRig

PIN = "112233"


@pytest.fixture(scope="module")
def ra_url(rig: RaRig) -> Iterator[str]:
    yield from serve(create_app(rig.ra, WebConfig(secrets.token_bytes(32), False)))


def write_csv(path: Path, numbers: list[int]) -> list[dict[str, str]]:
    rows = []
    for n in numbers:
        h = holder(n)
        rows.append({"ssn": h.ssn, "name": h.name, "sex": h.sex, "ethnicity": h.ethnicity,
                     "birthplace": h.birthplace, "birth_date": h.birth_date,
                     "card_number": card_number(n)})
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def args(tmp: Path, rig: RaRig, url: str, report: str = "report.csv") -> list[str]:
    (tmp / "token").write_text(rig.api_token + "\n")
    (tmp / "token").chmod(0o600)  # a secret file: owner only
    (tmp / "pin").write_text(PIN + "\n")
    (tmp / "pin").chmod(0o600)  # a secret file: owner only
    return ["--cards-dir", str(tmp / "cards"), "--report", str(tmp / report), "--batch", BATCH,
            "--ra-url", url, "--token-file", str(tmp / "token"), "--pin-file", str(tmp / "pin"),
            "--journal-dir", str(tmp / "journal")]


def assert_cards_issued(rig: RaRig, tmp: Path, rows: list[dict[str, str]]) -> None:
    for row in rows:
        with inserted(state_file(tmp / "cards", row["card_number"])) as (client, _psam):
            assert client.read_info().holder.ssn == row["ssn"]
            assert client.read_certificate("sign") is not None
            assert client.read_certificate("enc") is not None
        issued = certificates_for(rig, row["ssn"])
        assert len(issued) == 2 and all(s is Status.GOOD for s in issued.values())


def test_batch_issue(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "cards.csv", [7001, 7002, 7003])
    result = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"),
                                              *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 0, result.output
    assert "issuing cards" in result.output and "3 done" in result.output
    with (tmp_path / "report.csv").open(encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    assert [r["status"] for r in report] == ["done"] * 3
    assert [r["card_number"] for r in report] == [r["card_number"] for r in rows]
    assert all(r["sign_serial"] and r["enc_serial"] and r["request_id"] for r in report)
    assert_cards_issued(rig, tmp_path, rows)
    # a second run finds everything done and issues nothing more
    again = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"),
                                             *args(tmp_path, rig, ra_url, "again.json")])
    assert again.exit_code == 0, again.output
    report2 = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert [r["status"] for r in report2] == ["done"] * 3
    assert_cards_issued(rig, tmp_path, rows)


def test_batch_killed_and_resumed(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "cards.csv", [7101, 7102, 7103])
    cmd = [sys.executable, "-m", "reader_tools.issuance_cli", "batch-issue",
           str(tmp_path / "cards.csv"), *args(tmp_path, rig, ra_url)]
    killed = subprocess.run([*cmd, "--stop-after", "install"], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == 137, killed.stderr
    # the first card got its certificates but was never verified; the others not started
    assert len(certificates_for(rig, rows[0]["ssn"])) == 2
    assert certificates_for(rig, rows[1]["ssn"]) == {}
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 done" in resumed.stdout
    assert_cards_issued(rig, tmp_path, rows)


def test_batch_reports_a_failed_card_and_goes_on(rig: RaRig, ra_url: str,
                                                 tmp_path: Path) -> None:
    """A card number the RA already knows is refused for that card only."""
    rows = write_csv(tmp_path / "cards.csv", [7201, 7202])
    taken = write_csv(tmp_path / "taken.csv", [7201])
    first = CliRunner().invoke(batch_issue, [str(tmp_path / "taken.csv"),
                                             *args(tmp_path, rig, ra_url, "first.csv")])
    assert first.exit_code == 0, first.output
    # the same card number on a different (new) blank card
    other = tmp_path / "other"
    other.mkdir()
    result = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"),
                                              *args(other, rig, ra_url)])
    assert result.exit_code == 1
    with (other / "report.csv").open(encoding="utf-8") as f:
        report = {r["card_number"]: r for r in csv.DictReader(f)}
    assert report[taken[0]["card_number"]]["status"] == "failed"
    error = report[taken[0]["card_number"]]["error"]
    assert "already registered" in error
    # it says why: the card that holds the number and that card's request and its state
    first_report = {r["card_number"]: r for r in csv.DictReader(
        (tmp_path / "first.csv").open(encoding="utf-8"))}
    assert f"its request {first_report[taken[0]['card_number']]['request_id']} " \
        "(enrollment) is done" in error
    assert report[rows[1]["card_number"]]["status"] == "done"
    assert len(certificates_for(rig, rows[0]["ssn"])) == 2  # only the first card's


@pytest.mark.parametrize("damage,message", [
    (lambda text: text.replace("card_number", "number"), "missing column(s) card_number"),
    (lambda text: text.replace("19700", "19800", 1), "row 2, ssn:"),
    (lambda text: text + text.splitlines()[1] + "\n", "is also on row 2"),
])
def test_bad_csv_refused_before_any_card(rig: RaRig, ra_url: str, tmp_path: Path,
                                         damage: object, message: str) -> None:
    write_csv(tmp_path / "cards.csv", [7301, 7302])
    path = tmp_path / "cards.csv"
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")  # type: ignore[operator]
    result = CliRunner().invoke(batch_issue, [str(path), *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "cards").exists()


def test_three_bad_rows_all_reported(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    """Every bad row is named at once (row, column, fault), not only the first."""
    rows = write_csv(tmp_path / "cards.csv", [7401, 7402, 7403, 7404, 7405])
    rows[1]["ssn"] = rows[1]["ssn"][:17] + ("0" if rows[1]["ssn"][17] != "0" else "1")
    rows[2]["ethnicity"] = "77"  # not in GB/T 3304
    rows[4]["card_number"] = rows[0]["card_number"]  # the same card twice in the file
    path = tmp_path / "bad.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(batch_issue, [str(path), *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 2, result.output
    assert "3 bad row(s)" in result.output
    assert "row 3, ssn:" in result.output and "check digit" in result.output
    assert "row 4, ethnicity: ethnicity '77' is not a GB/T 3304 code" in result.output
    assert f"row 6, card_number: {rows[0]['card_number']} is also on row 2" in result.output
    assert "row 2," not in result.output and "row 5," not in result.output
    assert not (tmp_path / "cards").exists() and not (tmp_path / "report.csv").exists()


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig"])
def test_excel_csv_encodings_read(rig: RaRig, ra_url: str, tmp_path: Path,
                                  encoding: str) -> None:
    """What Excel saves: GBK with CRLF on Chinese Windows, or UTF-8 with a BOM; detected."""
    rows = write_csv(tmp_path / "utf8.csv", [7500 + len(encoding)])
    rows[0]["name"] = "欧阳娜娜"
    text = ",".join(rows[0]) + "\r\n" + ",".join(rows[0].values()) + "\r\n"
    path = tmp_path / "excel.csv"
    path.write_bytes(text.encode(encoding))
    if encoding == "gbk":  # really GBK bytes, not UTF-8 that happens to decode
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("utf-8")
    result = CliRunner().invoke(batch_issue, [str(path), *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 0, result.output
    with inserted(state_file(tmp_path / "cards", rows[0]["card_number"])) as (client, _psam):
        assert client.read_info().holder.name == "欧阳娜娜"


def test_wrong_encoding_named(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "utf8.csv", [7510])
    rows[0]["name"] = "欧阳娜娜"
    path = tmp_path / "gbk.csv"
    path.write_bytes((",".join(rows[0]) + "\r\n" + ",".join(rows[0].values())).encode("gbk"))
    result = CliRunner().invoke(batch_issue, [str(path), "--encoding", "utf-8",
                                              *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 2 and "not utf-8 text" in result.output
    assert "give the right --encoding" in result.output
    assert not (tmp_path / "cards").exists()


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_ra_stops_the_batch(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    """One clear message naming the cause, no card file created, no urllib3 text."""
    write_csv(tmp_path / "cards.csv", [7601, 7602, 7603])
    url = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"),
                                              *args(tmp_path, rig, url)])
    assert result.exit_code == 13, result.output
    assert f"RA not reachable at {url}/api/v1: connection refused" in result.output
    assert result.output.count("not reachable") == 1
    assert "urllib3" not in result.output and "HTTPConnection" not in result.output
    assert "Max retries" not in result.output
    assert not (tmp_path / "cards").exists() or not any((tmp_path / "cards").iterdir())
    assert not (tmp_path / "journal").exists()


def test_refused_token_stops_the_batch(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "cards.csv", [7611, 7612])
    argv = args(tmp_path, rig, ra_url)
    (tmp_path / "token").write_text("not-the-token\n")
    result = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"), *argv])
    assert result.exit_code == 13, result.output
    assert "the RA refused this station's credential (401" in result.output
    assert result.output.count("credential") == 1
    assert not (tmp_path / "cards").exists() or not any((tmp_path / "cards").iterdir())
    assert certificates_for(rig, rows[0]["ssn"]) == {}


def test_ra_gone_mid_batch_stops_at_the_next_card(rig: RaRig, tmp_path: Path) -> None:
    """The RA server stops after the first card: the second card stops the batch with the
    cause, its blank card file is removed, the third row is never tried."""
    from reader_tools.batch import BatchStopped, read_rows, run_batch
    from reader_tools.issuance_client import RestBackend

    rows = write_csv(tmp_path / "cards.csv", [7621, 7622, 7623])
    server = serve(create_app(rig.ra, WebConfig(secrets.token_bytes(32), False)))
    url = next(server)
    backend = RestBackend(url, rig.api_token)
    with pytest.raises(BatchStopped) as stopped:
        run_batch(read_rows(tmp_path / "cards.csv", BATCH), tmp_path / "cards",
                  tmp_path / "journal", backend, PIN, tmp_path / "report.csv",
                  on_card=lambda _result: server.close())  # shuts the server down
    message = str(stopped.value)
    assert "batch stopped at row 3 (card T00007622)" in message
    assert "connection refused" in message and "1 row(s) after it were not tried" in message
    assert [r.status for r in stopped.value.results] == ["done", "failed"]
    assert state_file(tmp_path / "cards", rows[0]["card_number"]).exists()
    assert not state_file(tmp_path / "cards", rows[1]["card_number"]).exists()
    assert not state_file(tmp_path / "cards", rows[2]["card_number"]).exists()
    with (tmp_path / "report.csv").open(encoding="utf-8") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done", "failed"]


def test_a_rejected_card_number_says_why_when_reused(rig: RaRig, ra_url: str,
                                                     tmp_path: Path) -> None:
    """An officer rejected the enrollment; the number used again names that request, its
    state and the officer's reason, and says what to do."""
    rows = write_csv(tmp_path / "cards.csv", [7701])
    argv = args(tmp_path, rig, ra_url)
    unbatched = argv[:argv.index("--batch")] + argv[argv.index("--batch") + 2:]
    waiting = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"), *unbatched])
    assert waiting.exit_code == 0 and "1 waiting" in waiting.output, waiting.output
    with (tmp_path / "report.csv").open(encoding="utf-8") as f:
        request_id = next(csv.DictReader(f))["request_id"]
    assert request_id
    rig.ra.reject(rig.actor("officer1"), request_id, "照片与本人不符")
    other = tmp_path / "other"
    other.mkdir()
    again = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"), *args(other, rig,
                                                                                ra_url)])
    assert again.exit_code == 1
    with (other / "report.csv").open(encoding="utf-8") as f:
        error = next(csv.DictReader(f))["error"]
    assert f"card number {rows[0]['card_number']} is already registered" in error
    assert f"its request {request_id} (enrollment) is rejected: 照片与本人不符" in error
    assert "give the new card its own number" in error


def test_tls_failure_stops_the_batch(rig: RaRig, ra_url: str, tmp_path: Path) -> None:
    """https:// to a server that speaks no TLS: a TLS failure, named as such, no card file."""
    write_csv(tmp_path / "cards.csv", [7631, 7632])
    url = ra_url.replace("http://", "https://")
    result = CliRunner().invoke(batch_issue, [str(tmp_path / "cards.csv"),
                                              *args(tmp_path, rig, url)])
    assert result.exit_code == 13, result.output
    assert f"RA not reachable at {url}/api/v1: TLS failure" in result.output
    assert "urllib3" not in result.output and "Max retries" not in result.output
    assert not (tmp_path / "cards").exists() or not any((tmp_path / "cards").iterdir())


def test_an_ssn_excel_turned_into_a_number_is_named(rig: RaRig, ra_url: str,
                                                    tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "cards.csv", [7801])
    rows[0]["ssn"] = "6.39900197001E+17"
    path = tmp_path / "excel.csv"
    path.write_bytes((",".join(rows[0]) + "\r\n" + ",".join(rows[0].values()) + "\r\n")
                     .encode("gbk"))
    result = CliRunner().invoke(batch_issue, [str(path), *args(tmp_path, rig, ra_url)])
    assert result.exit_code == 2, result.output
    assert "row 2, ssn: 6.39900197001E+17 is a number as Excel shows a long one" in result.output
    assert "format the column as text" in result.output
