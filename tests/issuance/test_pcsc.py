"""Personalisation end to end over PC/SC: pcscd + vpcd with a blank emulated card and its PSAM
(the card developer's rig from tests/card/conftest.py), the RA serving its enrollment API over
HTTP, and the `personalize` command in its own process. The card that comes out has a signing
certificate that validates up to the root, an encryption key that decrypts what is encrypted
to its encryption certificate, and data that `sscard card info` reads back. A run killed
between steps resumes, or rolls back, without an orphan certificate."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import x509

from ca.records import Status
from ra.web import WebConfig, create_app
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscTransport
from sscard.crypto.algorithms import EncryptionScheme
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import CipherFormat
from sscard.validation import validate_path
from tests.card.conftest import (
    CARD_READER,
    PSAM_READER,
    EmulatorProcess,
    PcscRig,
    run_cli,
)
from tests.issuance.cards import card_number, holder, new_blank_card
from tests.issuance.conftest import BATCH
from tests.issuance.test_personalize import certificates_for
from tests.ra.browser import serve
from tests.ra.rig import RaRig

PIN = "135790"


@pytest.fixture(scope="module")
def ra_url(rig: RaRig) -> Iterator[str]:
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    yield from serve(app)


@pytest.fixture
def blank(pcsc_rig: PcscRig, tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(pcsc_rig, new_blank_card(tmp_path / "card.json"))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def personalize(rig: PcscRig, ra: RaRig, url: str, work: Path, *args: str,
                data: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    token, pin = work / "token", work / "pin"
    token.write_text(ra.api_token + "\n")
    token.chmod(0o600)  # a secret file: owner only
    pin.write_text(PIN + "\n")
    pin.chmod(0o600)  # a secret file: owner only
    cmd = [sys.executable, "-m", "reader_tools.issuance_cli", "personalize", "--ra-url", url,
           "--token-file", str(token), "--journal-dir", str(work / "journal"), *args]
    if data is not None:
        (work / "holder.json").write_text(json.dumps(data, ensure_ascii=False),
                                          encoding="utf-8")
        cmd += ["--data", str(work / "holder.json"), "--pin-file", str(pin)]
    env = dict(rig.env, SSCARD_READER=CARD_READER, SSCARD_PSAM_READER=PSAM_READER)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def order_json(n: int) -> dict[str, str]:
    h = holder(n)
    return {"ssn": h.ssn, "name": h.name, "sex": h.sex, "ethnicity": h.ethnicity,
            "birthplace": h.birthplace, "birth_date": h.birth_date,
            "card_number": card_number(n), "batch": BATCH}


def check_card(pcsc: PcscRig, ra: RaRig, data: dict[str, str]) -> None:
    # what card-issuing staff see
    info = run_cli(pcsc, "info", "--format", "json")
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert (shown["ssn"], shown["name"], shown["card_number"]) == \
        (data["ssn"], data["name"], data["card_number"])
    chain = ra.ca.chain()
    with CardClient(PcscTransport(CARD_READER)) as client:
        sign = x509.Certificate.load(client.read_certificate("sign"))
        enc = x509.Certificate.load(client.read_certificate("enc"))
        for cert in (sign, enc):
            result = validate_path(cert, trust_anchors=[chain[-1]], intermediates=chain[:-1])
            assert result.valid, result.reasons
        key = PublicKey.from_spki(enc["tbs_certificate"]["subject_public_key_info"].dump())
        message = "医保结算单 2026-11".encode()
        assert CardKey(client, lambda: PIN, which="enc").decrypt(
            key.raw.encrypt(message, CipherFormat.C1C3C2), EncryptionScheme.SM2_C1C3C2) == message
        # and the signing key is the certified one: the card signs, the certificate verifies
        challenge = secrets.token_bytes(32)
        signature = CardKey(client, lambda: PIN).sign(challenge)
        PublicKey.from_spki(sign["tbs_certificate"]["subject_public_key_info"].dump()).verify(
            signature, challenge)
        on_card = {f"{sign.serial_number:x}", f"{enc.serial_number:x}"}
    issued = certificates_for(ra, data["ssn"])
    assert set(issued) == on_card and all(s is Status.GOOD for s in issued.values())


def test_personalise_over_pcsc(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                               blank: EmulatorProcess, tmp_path: Path) -> None:
    data = order_json(9001)
    done = personalize(pcsc_rig, rig, ra_url, tmp_path, data=data)
    assert done.returncode == 0, done.stderr
    assert "issued" in done.stdout
    check_card(pcsc_rig, rig, data)


def test_issued_card_not_personalised_for_another_person_over_pcsc(
        pcsc_rig: PcscRig, rig: RaRig, ra_url: str, blank: EmulatorProcess,
        tmp_path: Path) -> None:
    """Issue 12 finding 12: `card personalize` on a card issued to 李四 with another person's
    data printed "issued" and exited 0 while the card still held 李四."""
    first = order_json(9006)
    assert personalize(pcsc_rig, rig, ra_url, tmp_path, data=first).returncode == 0
    second = dict(order_json(9007), name="王五")
    refused = personalize(pcsc_rig, rig, ra_url, tmp_path, data=second)
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "issued" not in refused.stdout
    assert f"issued to {first['ssn']}" in refused.stderr and second["ssn"] in refused.stderr
    # from another station (no journal for this card): refused before the card is touched
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = personalize(pcsc_rig, rig, ra_url, elsewhere, data=second)
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "not blank" in refused.stderr
    assert certificates_for(rig, second["ssn"]) == {}
    check_card(pcsc_rig, rig, first)  # still 李四's, with 李四's key and certificates
    again = personalize(pcsc_rig, rig, ra_url, tmp_path, data=first)
    assert again.returncode == 0 and "already issued" in again.stdout, again.stderr


def test_killed_then_resumed_over_pcsc(pcsc_rig: PcscRig, rig: RaRig,
                                       ra_url: str, blank: EmulatorProcess,
                                       tmp_path: Path) -> None:
    data = order_json(9002)
    killed = personalize(pcsc_rig, rig, ra_url, tmp_path, "--stop-after", "install", data=data)
    assert killed.returncode == 137, killed.stderr
    resumed = personalize(pcsc_rig, rig, ra_url, tmp_path, data=data)
    assert resumed.returncode == 0, resumed.stderr
    check_card(pcsc_rig, rig, data)


def test_killed_then_rolled_back_over_pcsc(pcsc_rig: PcscRig, rig: RaRig,
                                           ra_url: str, blank: EmulatorProcess,
                                           tmp_path: Path) -> None:
    data = order_json(9003)
    killed = personalize(pcsc_rig, rig, ra_url, tmp_path, "--stop-after", "enroll", data=data)
    assert killed.returncode == 137, killed.stderr
    assert len(certificates_for(rig, data["ssn"])) == 2  # issued, not yet on the card
    rolled = personalize(pcsc_rig, rig, ra_url, tmp_path, "--rollback")
    assert rolled.returncode == 0, rolled.stderr
    issued = certificates_for(rig, data["ssn"])
    assert len(issued) == 2 and all(s is Status.REVOKED for s in issued.values())
    with CardClient(PcscTransport(CARD_READER)) as client:
        assert client.read_certificate("sign") is None
        assert client.read_certificate("enc") is None
    # the spoiled card is not issued again
    again = personalize(pcsc_rig, rig, ra_url, tmp_path, data=data)
    assert again.returncode == 1 and "rolled back" in again.stderr


def test_refusals_over_pcsc(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                            blank: EmulatorProcess, tmp_path: Path) -> None:
    """A wrong token and bad holder data stop the command with a clear message and leave the
    card blank."""
    data = order_json(9004)
    bad_token = tmp_path / "bad"
    bad_token.mkdir()
    (bad_token / "token").write_text("ra_not-a-token\n")
    (bad_token / "token").chmod(0o600)  # a secret file: owner only
    env = dict(pcsc_rig.env, SSCARD_READER=CARD_READER, SSCARD_PSAM_READER=PSAM_READER)
    (bad_token / "holder.json").write_text(json.dumps(data), encoding="utf-8")
    (bad_token / "pin").write_text(PIN + "\n")
    (bad_token / "pin").chmod(0o600)  # a secret file: owner only
    proc = subprocess.run(
        [sys.executable, "-m", "reader_tools.issuance_cli", "personalize", "--ra-url", ra_url,
         "--token-file", str(bad_token / "token"), "--journal-dir", str(bad_token / "j"),
         "--data", str(bad_token / "holder.json"), "--pin-file", str(bad_token / "pin")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 13 and "unknown or deactivated API token" in proc.stderr
    assert "the RA refused this station's credential" in proc.stderr
    assert "the card was not touched" in proc.stderr
    assert certificates_for(rig, data["ssn"]) == {}
    wrong = dict(data, birth_date="19991231")
    proc = personalize(pcsc_rig, rig, ra_url, tmp_path, data=wrong)
    assert proc.returncode == 2 and "birth date" in proc.stderr
    info = run_cli(pcsc_rig, "info", "--format", "json")
    assert json.loads(info.stdout)["ssn"] == ""


@pytest.fixture
def blank_without_psam(pcsc_rig: PcscRig, tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(pcsc_rig, new_blank_card(tmp_path / "card.json"))
    emu.start("--no-psam")
    try:
        yield emu
    finally:
        emu.stop()


def test_personalise_over_pcsc_with_kmc_cryptograms(
        pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
        blank_without_psam: EmulatorProcess, tmp_path: Path) -> None:
    """No PSAM in the terminal: the card is authenticated with cryptograms the KMC service
    computes (its HTTP API), and a wrong KMC key stops before anything is written."""
    from keymgmt.cardkeys import CardKeyService
    from keymgmt.web import create_app as kmc_app
    from sscard.emulator import testkeys

    cardkeys = CardKeyService(rig.kmc)
    if not cardkeys.list_master_keys():
        for kid in testkeys.KeyId:
            cardkeys.import_root_key("63", int(kid), "sm4",
                                     testkeys.root_test_key(kid, testkeys.CardAlgorithm.SM4))
    key_file = tmp_path / "kmc.key"
    terminal = f"terminal-{secrets.token_hex(3)}"
    key_file.write_text(rig.kmc.add_caller(terminal, "terminal"))
    key_file.chmod(0o600)  # a secret file: owner only
    cardkeys.bind_terminal(terminal, ["63"])
    (tmp_path / "wrong.key").write_text("kmc_wrong\n")
    (tmp_path / "wrong.key").chmod(0o600)  # a secret file: owner only
    data = order_json(9005)
    for kmc_url in serve(kmc_app(rig.kmc)):
        wrong = personalize(pcsc_rig, rig, ra_url, tmp_path, "--kmc-url", kmc_url,
                            "--kmc-key-file", str(tmp_path / "wrong.key"), data=data)
        assert wrong.returncode == 1 and "KMC" in wrong.stderr, wrong.stderr
        assert certificates_for(rig, data["ssn"]) == {}
        done = personalize(pcsc_rig, rig, ra_url, tmp_path, "--kmc-url", kmc_url,
                           "--kmc-key-file", str(key_file), data=data)
        assert done.returncode == 0, done.stderr
    check_card(pcsc_rig, rig, data)


def test_guide_step_by_step_over_pcsc(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                                      blank: EmulatorProcess, tmp_path: Path) -> None:
    """docs/card-issuing-guide.md §4 command by command, against the RA over HTTP: holder
    data, PIN, on-card key, CSR, enroll, fetch-certs, certs, confirm; the card ends issued."""
    data = order_json(9301)
    holder_file = tmp_path / "holder.json"
    holder_file.write_text(json.dumps({k: data[k] for k in (
        "ssn", "name", "sex", "ethnicity", "birthplace", "birth_date")}, ensure_ascii=False),
        encoding="utf-8")
    token = tmp_path / "token"
    token.write_text(rig.api_token + "\n")
    token.chmod(0o600)
    ra = ["--ra-url", ra_url, "--token-file", str(token)]

    def step(*args: str, stdin: str | None = None, code: int = 0) -> str:
        done = run_cli(pcsc_rig, *args, stdin=stdin)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    step("write-data", "--data", str(holder_file))
    step("pin", "change", "--pin-stdin", stdin=f"123456\n{PIN}\n")
    step("keygen", "--out", str(tmp_path / "sign.pub.pem"))
    step("csr", "--pin-stdin", "--subject", f"CN={data['name']},serialNumber={data['ssn']},C=CN",
         "--out", str(tmp_path / "req.pem"), stdin=PIN + "\n")
    # without a batch the request waits for an officer (exit 11) and names itself
    waiting = step("enroll", "--csr", str(tmp_path / "req.pem"), "--card-number",
                   data["card_number"], *ra, code=11)
    request_id = waiting.split()[1]
    assert request_id.startswith("rq-") and "waits for an officer" in waiting
    assert "waits for an officer" in step("fetch-certs", request_id, "--out-dir",
                                          str(tmp_path / "issued"), *ra, code=11)
    rig.ra.approve(rig.actor("officer1"), request_id)
    fetched = step("fetch-certs", request_id, "--out-dir", str(tmp_path / "issued"), *ra)
    assert "sscard card certs --import-enc-key" in fetched
    issued = tmp_path / "issued"
    # confirming before the certificates are on the card is refused
    assert "not enrollment" in step("confirm", request_id, *ra, code=12)
    step("certs", "--import-enc-key", str(issued / "enc.keyblob"), "--write-sign",
         str(issued / "sign.cer"), "--write-enc", str(issued / "enc.cer"))
    assert "is issued" in step("confirm", request_id, *ra)
    assert rig.ra.request(rig.actor("officer1"), request_id)["state"] == "done"
    # the card: holder data, both certificates of its own keys, issued at the RA
    with CardClient(PcscTransport(CARD_READER)) as client:
        assert client.read_info().holder.ssn == data["ssn"]
        on_card = {f"{x509.Certificate.load(client.read_certificate(w)).serial_number:x}"
                   for w in ("sign", "enc")}
    issued_now = certificates_for(rig, data["ssn"])
    assert set(issued_now) == on_card and all(s is Status.GOOD for s in issued_now.values())


def test_enroll_refuses_a_csr_of_another_key(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                                             blank: EmulatorProcess, tmp_path: Path) -> None:
    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CsrBuilder
    from sscard.x509.names import parse_name
    from sscard.x509.pem import der_to_pem

    data = order_json(9302)
    other = CsrBuilder().subject(parse_name(f"CN={data['name']},serialNumber={data['ssn']}"
                                            ",C=CN")).sign(SoftwareKey.generate("sm2"))
    (tmp_path / "req.pem").write_bytes(der_to_pem(other.dump(), "CERTIFICATE REQUEST"))
    token = tmp_path / "token"
    token.write_text(rig.api_token + "\n")
    token.chmod(0o600)
    refused = run_cli(pcsc_rig, "enroll", "--csr", str(tmp_path / "req.pem"), "--card-number",
                      data["card_number"], "--ra-url", ra_url, "--token-file", str(token))
    assert refused.returncode == 12, refused.stderr
    assert "not for the signing key of the card in the reader" in refused.stderr


def reader_batch(pcsc: PcscRig, ra: RaRig, url: str, work: Path, rows: list[dict[str, str]],
                 *extra: str) -> subprocess.Popen[str]:
    import csv

    with (work / "cards.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "batch"])
        writer.writeheader()
        writer.writerows([{k: v for k, v in r.items() if k != "batch"} for r in rows])
    for name, value in (("token", ra.api_token), ("pin", PIN)):
        (work / name).write_text(value + "\n")
        (work / name).chmod(0o600)
    return subprocess.Popen(
        [sys.executable, "-m", "reader_tools.issuance_cli", "batch-issue",
         str(work / "cards.csv"), "--reader", CARD_READER, "--psam-reader", PSAM_READER,
         "--report", str(work / "report.csv"), "--batch", BATCH, "--ra-url", url,
         "--token-file", str(work / "token"), "--pin-file", str(work / "pin"),
         "--journal-dir", str(work / "journal"), *extra],
        env=pcsc.env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expect(proc: subprocess.Popen[str], fragment: str, seen: list[str]) -> str:
    """The next stderr line holding ``fragment`` (the process prompts on stderr)."""
    assert proc.stderr is not None
    while line := proc.stderr.readline():
        seen.append(line)
        if fragment in line:
            return line
    raise AssertionError(f"no {fragment!r}; stderr: {''.join(seen)[-1500:]}")


def test_batch_in_a_real_reader(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                                tmp_path: Path) -> None:
    """A counter's batch: the tool asks for each card, waits for its insertion, personalises
    the card in the reader, shows n of m, waits for its removal, and asks for the next."""
    from tests.issuance.cards import inserted

    rows = [order_json(9401), order_json(9402)]
    cards = [new_blank_card(tmp_path / f"blank{i}.json") for i in range(2)]
    proc = reader_batch(pcsc_rig, rig, ra_url, tmp_path, rows, "--wait-seconds", "90")
    seen: list[str] = []
    try:
        for i, (row, card) in enumerate(zip(rows, cards, strict=True), start=1):
            asked = expect(proc, f"card {i} of 2: insert the blank card", seen)
            assert row["ssn"] in asked and row["card_number"] in asked
            emulator = EmulatorProcess(pcsc_rig, card)
            emulator.start()
            try:
                assert f"[{i}/2] {row['card_number']} done" in expect(proc, f"[{i}/2]", seen)
                expect(proc, f"card {i} of 2 done; remove the card", seen)
            finally:
                emulator.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + err
    assert "2 done" in out
    for row, card in zip(rows, cards, strict=True):  # the data went to the card in the reader
        with inserted(card) as (client, _psam):
            assert client.read_info().holder.ssn == row["ssn"]
            assert client.read_certificate("sign") and client.read_certificate("enc")
    assert not list(tmp_path.glob("*.card.json"))  # and no emulated card files were made


def test_reader_batch_stops_when_no_card_comes(pcsc_rig: PcscRig, rig: RaRig, ra_url: str,
                                               tmp_path: Path) -> None:
    proc = reader_batch(pcsc_rig, rig, ra_url, tmp_path, [order_json(9411)],
                        "--wait-seconds", "1")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "card 1 of 1: insert the blank card" in err
    assert "no card was inserted within 1 s (row 2); run the same command again" in err
