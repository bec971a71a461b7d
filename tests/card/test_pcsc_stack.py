"""Through the real stack: the CLI and pyscard -> private pcscd -> vpcd -> `sscard card emulate`
in a subprocess (see conftest.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess

import pytest

from sscard.card import errors
from sscard.card.apdu import CommandApdu
from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.records import HolderData
from sscard.card.transport import PcscTransport
from sscard.crypto import envelopes
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey, SM2PublicKey
from sscard.keys.software import SoftwareKey
from tests.card.conftest import CARD_READER, PSAM_READER, run_cli


def open_client() -> CardClient:
    client = CardClient(PcscTransport(CARD_READER))
    client.connect()
    return client


def open_psam() -> PsamAuthenticator:
    transport = PcscTransport(PSAM_READER)
    transport.connect()
    return PsamAuthenticator(transport)


def test_info_formats(emulator):
    result = run_cli(emulator.rig, "info", "--format", "json", reader=False)  # auto-detects
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["ssn"], info["name"], info["algorithm"]) == ("111111198101011110", "张三", "SM4")
    assert info["first_region"] == "639900" and len(info["person_id"]) == 11

    mohrss = run_cli(emulator.rig, "info", "--format", "mohrss")
    assert mohrss.returncode == 0, mohrss.stderr
    line = mohrss.stdout.strip()
    fields = line.split("|")
    assert line.endswith("|") and len(fields) == 12 and fields[-1] == ""
    assert fields[0] == info["card_id"][:6] == "639900"
    assert fields[1:5] == [info["ssn"], info["card_number"], info["card_id"], "张三"]
    assert info["atr"].endswith(fields[5]) and len(fields[5]) == 26  # 13 historical bytes
    assert fields[6:9] == [info["spec_version"], info["issue_date"], info["expiry_date"]]
    psam = open_psam()
    try:
        assert fields[9] == psam.terminal_number() != "000000000000"
        assert fields[10] == psam.device_number()
    finally:
        psam.transport.disconnect()

    text = run_cli(emulator.rig, "info")
    assert "张三" in text.stdout and "111111198101011110" in text.stdout
    # names for codes in the text view (GB/T 2261.1, 3304, 2260); codes in JSON
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines() if " " in line)
    assert (lines["sex"], lines["ethnicity"], lines["birthplace"]) == \
        ("男", "汉族", "北京市 (111111)")
    assert (info["sex"], info["ethnicity"], info["birthplace"]) == ("1", "01", "111111")


def test_pin_verify_change_block_unblock(emulator):
    rig = emulator.rig
    ok = run_cli(rig, "pin", "verify", "--pin-stdin", stdin="123456\n")
    assert ok.returncode == 0 and "PIN correct" in ok.stdout, ok.stderr

    changed = run_cli(rig, "pin", "change", "--pin-stdin", stdin="123456\n24680\n")
    assert changed.returncode == 0, changed.stderr
    old_refused = run_cli(rig, "pin", "verify", "--pin-stdin", stdin="123456\n")
    assert old_refused.returncode == 6
    assert "wrong PIN: 2 tries left" in old_refused.stderr
    assert run_cli(rig, "pin", "verify", "--pin-stdin", stdin="24680\n").returncode == 0

    for left in (2, 1):
        wrong = run_cli(rig, "pin", "verify", "--pin-stdin", stdin="999999\n")
        assert wrong.returncode == 6
        assert f"wrong PIN: {left} tr" in wrong.stderr
    last = run_cli(rig, "pin", "verify", "--pin-stdin", stdin="999999\n")
    assert last.returncode == 7, last.stderr  # the last try: "blocked", not "0 tries left"
    assert "the PIN is now blocked" in last.stderr and "0 tries" not in last.stderr
    blocked = run_cli(rig, "pin", "verify", "--pin-stdin", stdin="24680\n")  # right PIN, too late
    assert blocked.returncode == 7 and "PIN blocked" in blocked.stderr

    unblocked = run_cli(rig, "pin", "unblock", "--pin-stdin", stdin="135790\n")
    assert unblocked.returncode == 0, unblocked.stderr
    assert run_cli(rig, "pin", "verify", "--pin-stdin", stdin="135790\n").returncode == 0
    client = open_client()
    try:
        assert client.pin_tries_left() == 3
    finally:
        client.close()


def test_pin_rules_and_secrets_not_on_argv(emulator):
    initial = run_cli(emulator.rig, "pin", "change", "--pin-stdin", stdin="123456\n123456\n")
    assert initial.returncode == 2 and "initial PIN" in initial.stderr
    # one rule for every PIN that is set: unblock and reload refuse trivial PINs too
    for command in ("unblock", "reload"):
        for trivial, why in (("123456", "initial PIN"), ("888888", "one digit repeated"),
                             ("98765", "consecutive digits")):
            refused = run_cli(emulator.rig, "pin", command, "--pin-stdin", stdin=trivial + "\n")
            assert refused.returncode == 2 and why in refused.stderr, refused.stderr
            assert why == "initial PIN" or trivial not in refused.stderr
    assert run_cli(emulator.rig, "pin", "verify", "--pin-stdin",
                   stdin="123456\n").returncode == 0  # nothing was changed
    short = run_cli(emulator.rig, "pin", "verify", "--pin-stdin", stdin="12\n")
    assert short.returncode == 2 and "4 to 16 digits" in short.stderr
    no_tty = run_cli(emulator.rig, "pin", "verify")
    assert no_tty.returncode != 0 and "--*-stdin" in no_tty.stderr


def test_keygen_sign_and_verify_with_openssl(emulator, tmp_path):
    rig = emulator.rig
    pub_pem = tmp_path / "card.pub.pem"
    generated = run_cli(rig, "keygen", "--out", str(pub_pem))
    assert generated.returncode == 0, generated.stderr
    message = tmp_path / "message.txt"
    message.write_bytes("社会保障卡 signature test".encode())
    sig = tmp_path / "message.sig"
    signed = run_cli(rig, "sign", "--pin-stdin", "--in", str(message), "--out", str(sig),
                     stdin="123456\n")
    assert signed.returncode == 0, signed.stderr

    public = PublicKey.from_pem(pub_pem.read_bytes())
    public.verify(sig.read_bytes(), message.read_bytes(), None)  # sscard.crypto
    openssl = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub_pem), "-rawin",
         "-digest", "sm3", "-pkeyopt", "distid:1234567812345678", "-in", str(message),
         "-sigfile", str(sig)], capture_output=True, text=True,
    )
    assert openssl.returncode == 0 and "Signature Verified Successfully" in openssl.stdout, \
        openssl.stdout + openssl.stderr
    message.write_bytes(b"tampered")
    tampered = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub_pem), "-rawin",
         "-digest", "sm3", "-pkeyopt", "distid:1234567812345678", "-in", str(message),
         "-sigfile", str(sig)], capture_output=True, text=True,
    )
    assert tampered.returncode != 0

    wrong_pin = run_cli(rig, "sign", "--pin-stdin", "--in", str(message), stdin="654321\n")
    assert wrong_pin.returncode == 6 and "2 tries left" in wrong_pin.stderr

    request = tmp_path / "card.csr"
    made = run_cli(rig, "csr", "--pin-stdin", "--subject",
                   "CN=张三,serialNumber=111111198101011110,C=CN", "--out", str(request),
                   stdin="123456\n")
    assert made.returncode == 0, made.stderr
    from sscard.x509.parse import load_csr
    from sscard.x509.verify import verify_csr

    assert verify_csr(load_csr(request.read_bytes())) == public  # proof of possession
    openssl_req = subprocess.run(["openssl", "req", "-in", str(request), "-verify", "-noout"],
                                 capture_output=True, text=True)
    assert openssl_req.returncode == 0, openssl_req.stderr

    listed = run_cli(rig, "readers")
    assert listed.returncode == 0
    assert "Virtual PCD 00 00\tcard present" in listed.stdout
    assert "Virtual PCD 00 01\tcard present" in listed.stdout


def test_card_key_handle_over_pcsc_and_pso_needs_pin(emulator):
    client = open_client()
    psam = open_psam()
    try:
        client.external_authenticate(0x0B, psam)
        point = client.generate_signing_key()
        with pytest.raises(errors.SecurityStatusNotSatisfied, match="6982"):
            client.sign_digest(bytes(32))  # no PKI PIN in this session
        key = CardKey(client, lambda: "123456")
        assert key.public_key().raw.point == point
        signature = key.sign(b"data", uid=b"ALICE123@YAHOO.COM")
        SM2PublicKey.from_point(point).verify(signature, b"data", uid=b"ALICE123@YAHOO.COM")
        with pytest.raises(Exception, match="does not verify"):
            SM2PublicKey.from_point(point).verify(signature, b"data")
    finally:
        client.close()
        psam.transport.disconnect()


def _certificate_for(point: bytes, ca: SoftwareKey) -> bytes:
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name

    now = dt.datetime.now(dt.UTC)
    return (
        CertificateBuilder()
        .subject(parse_name("CN=张三,serialNumber=111111198101011110,O=人社厅,C=CN"))
        .issuer(parse_name("CN=Test SS CA,C=CN"))
        .public_key(PublicKey(SM2PublicKey.from_point(point)))
        .serial_number(0x1234567890ABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(ca)
        .dump()
    )


def test_dual_certificates_and_enveloped_key_written_and_read_back(emulator, tmp_path):
    client = open_client()
    psam = open_psam()
    try:
        client.external_authenticate(0x0B, psam)
        sign_point = client.generate_signing_key()
    finally:
        client.close()
        psam.transport.disconnect()
    ca = SoftwareKey.generate("sm2")
    enc_key = SM2PrivateKey.generate()
    sign_cert = tmp_path / "sign.cer"
    enc_cert = tmp_path / "enc.cer"
    sign_cert.write_bytes(_certificate_for(sign_point, ca))
    enc_cert.write_bytes(_certificate_for(enc_key.public_key().point, ca))
    blob = tmp_path / "enc.keyblob"
    blob.write_bytes(envelopes.wrap(enc_key, SM2PublicKey.from_point(sign_point)).to_blob())

    empty = run_cli(emulator.rig, "certs")
    assert empty.returncode == 0 and "sign: (empty)" in empty.stdout
    written = run_cli(emulator.rig, "certs", "--write-sign", str(sign_cert), "--write-enc",
                      str(enc_cert), "--import-enc-key", str(blob), "--out-dir",
                      str(tmp_path / "back"))
    assert written.returncode == 0, written.stderr
    assert "imported" in written.stdout and "CN=张三" not in written.stderr
    assert (tmp_path / "back" / "sign.cer").read_bytes() == sign_cert.read_bytes()
    assert (tmp_path / "back" / "enc.cer").read_bytes() == enc_cert.read_bytes()

    client = open_client()
    try:
        assert client.read_certificate("enc") == enc_cert.read_bytes()
        assert client.public_point(0x0014) == enc_key.public_key().point
        ciphertext = enc_key.public_key().encrypt(b"session key 1234", CipherFormat.ASN1)
        assert CardKey(client, lambda: "123456", which="enc").decrypt(ciphertext) == \
            b"session key 1234"
    finally:
        client.close()


def test_holder_data_written_only_after_external_authentication(emulator, tmp_path):
    new_holder = {"ssn": "11010519491231002X", "name": "欧阳娜娜", "sex": "2",
                  "ethnicity": "01", "birthplace": "110105", "birth_date": "19491231"}
    data = tmp_path / "holder.json"
    data.write_text(json.dumps(new_holder, ensure_ascii=False), encoding="utf-8")

    client = open_client()
    try:
        client.select_ssse()
        with pytest.raises(errors.SecurityStatusNotSatisfied, match="6982"):
            client.write_holder_data(HolderData(**new_holder))
        card = client.read_card_data()
        with pytest.raises(errors.SecurityStatusNotSatisfied):
            client.write_card_data(card)
        psam = open_psam()
        try:  # EF05 through the PSAM-computed cryptogram
            client.external_authenticate(0x0B, psam)
            client.write_card_data(dataclasses.replace(card, card_number="X00000019"))
            assert client.read_card_data().card_number == "X00000019"
            client.get_challenge()
            with pytest.raises(errors.AuthenticationFailed, match="63C4"):
                client.send(CommandApdu(0x00, 0x82, 0x00, 0x0B, bytes(8)), "EXTERNAL AUTH")
        finally:
            psam.transport.disconnect()
    finally:
        client.close()

    written = run_cli(emulator.rig, "write-data", "--data", str(data))
    assert written.returncode == 0, written.stderr
    info = json.loads(run_cli(emulator.rig, "info", "--format", "json").stdout)
    assert (info["ssn"], info["name"], info["sex"]) == ("11010519491231002X", "欧阳娜娜", "2")

    bad = dict(new_holder, ssn="110105194912310021")
    data.write_text(json.dumps(bad), encoding="utf-8")
    refused = run_cli(emulator.rig, "write-data", "--data", str(data))
    assert refused.returncode == 2 and "check digit" in refused.stderr


def test_write_refused_without_psam(pcsc_rig, tmp_path):
    from tests.card.conftest import EmulatorProcess

    emu = EmulatorProcess(pcsc_rig, tmp_path / "card.json")
    emu.start("--new-sample", "--no-psam")
    try:
        data = tmp_path / "holder.json"
        data.write_text(json.dumps({"ssn": "11010519491231002X", "name": "李四", "sex": "1",
                                    "ethnicity": "01", "birthplace": "110105",
                                    "birth_date": "19491231"}), encoding="utf-8")
        refused = run_cli(pcsc_rig, "write-data", "--data", str(data), reader=False)
        assert refused.returncode == 9 and "no PSAM" in refused.stderr
        info = json.loads(run_cli(pcsc_rig, "info", "--format", "json", reader=False).stdout)
        assert info["name"] == "张三"  # unchanged
        mohrss = run_cli(pcsc_rig, "info", "--format", "mohrss", reader=False)
        assert mohrss.stdout.strip().split("|")[9] == "000000000000"
    finally:
        emu.stop()


def test_selftest(emulator):
    result = run_cli(emulator.rig, "selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "ok   internal authentication (card genuine)" in result.stdout


def test_generation_2_card(pcsc_rig, tmp_path):
    from tests.card.conftest import EmulatorProcess

    emu = EmulatorProcess(pcsc_rig, tmp_path / "card2.json")
    emu.start("--new-sample", "--generation", "2")
    try:
        info = json.loads(run_cli(pcsc_rig, "info", "--format", "json").stdout)
        assert (info["algorithm"], info["spec_version"]) == ("DES3", "2.00")
        assert "person_id" not in info  # no EF0D before generation 3
        selftest = run_cli(pcsc_rig, "selftest")
        assert selftest.returncode == 0, selftest.stdout + selftest.stderr
        unblock = run_cli(pcsc_rig, "pin", "unblock", "--pin-stdin", stdin="8642\n")
        assert unblock.returncode == 0, unblock.stderr
        assert run_cli(pcsc_rig, "pin", "verify", "--pin-stdin", stdin="8642\n").returncode == 0
        keygen = run_cli(pcsc_rig, "keygen")
        assert keygen.returncode == 8 and "6A82" in keygen.stderr  # no PKI application
    finally:
        emu.stop()


def test_pcsc_tools_find_well_formed_atrs_and_t0_get_response(emulator):
    """Debian's pcsc-tools and OpenSC against the emulated card and PSAM behind pcscd: no ATR
    error, and SELECT of the PKI application (case 3 over T=0) answers 61xx, after which
    GET RESPONSE gives the FCI."""
    home = emulator.state.parent / "home"
    (home / ".cache").mkdir(parents=True)
    # ATR_analysis downloads its card list when $HOME has no fresh copy: give it the packaged
    # one, so the test needs no network
    shutil.copy("/usr/share/pcsc/smartcard_list.txt", home / ".cache" / "smartcard_list.txt")
    env = dict(emulator.rig.env, HOME=str(home))
    scan = subprocess.run(["pcsc_scan", "-t", "2"], env=env, capture_output=True, text=True,
                          timeout=60)
    report = scan.stdout + scan.stderr
    assert "ATR: 3B 6D 00 00" in report and "ATR: 3B 6C 00 00" in report, report[-2000:]
    assert report.count("K: 13 (historical bytes)") >= 1, report[-2000:]
    assert report.count("K: 12 (historical bytes)") >= 1, report[-2000:]
    assert "truncated" not in report and "missing" not in report, report[-2000:]
    assert "Updating" not in report  # no download attempted

    pki_ddf = "504B492EC9E7BBE1B1A3D5CF"
    tool = subprocess.run(["opensc-tool", "--reader", "0", "--atr", "--verbose", "--verbose",
                           "--verbose", "--send-apdu", f"00A404000C{pki_ddf}00"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert tool.returncode == 0, tool.stderr[-2000:]
    assert "3B 6D 00 00 00 81 4E 43 23" in tool.stdout.upper().replace(":", " "), tool.stdout
    log = tool.stderr
    select_at = log.rindex(f"00 A4 04 00 0C {pki_ddf[:2]}")  # the SELECT on the wire (no Le)
    answer = log[select_at:]
    assert "Incoming APDU (2 bytes):\n61 18" in answer, answer[:1500]
    assert "Outgoing APDU (5 bytes):\n00 C0 00 00 18" in answer, answer[:1500]
    assert "Incoming APDU (26 bytes):\n6F 16 84 0C 50 4B 49" in answer, answer[:1500]
    assert "Received (SW1=0x90, SW2=0x00)" in tool.stdout
    assert "6F 16 84 0C 50 4B 49 2E C9 E7 BB E1 B1 A3 D5 CF" in tool.stdout, tool.stdout


def _write_raw(which: str, der: bytes) -> None:
    """Put a certificate on the card behind the tools' back (as a hostile or buggy writer
    could), to see that selftest notices."""
    client = open_client()
    psam = open_psam()
    try:
        client.external_authenticate(0x0B, psam)
        client.write_certificate(which, der)
    finally:
        client.close()
        psam.transport.disconnect()


def test_certs_refuses_a_certificate_that_is_not_for_the_card(emulator, tmp_path):
    """Issue 12 finding 12: `card certs --write-sign` wrote a certificate whose key is not the
    card's, and selftest still said ok."""
    rig = emulator.rig
    assert run_cli(rig, "keygen", "--out", str(tmp_path / "card.pub")).returncode == 0
    point = PublicKey.from_pem((tmp_path / "card.pub").read_bytes()).raw.point
    ca = SoftwareKey.generate("sm2")
    foreign = tmp_path / "foreign.cer"
    foreign.write_bytes(_certificate_for(SM2PrivateKey.generate().public_key().point, ca))
    refused = run_cli(rig, "certs", "--write-sign", str(foreign))
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "certifies another key, not the card's own" in refused.stderr
    assert "sign: (empty)" in run_cli(rig, "certs").stdout  # nothing written

    # the card's key, but another person's SSN
    other = tmp_path / "other.cer"
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name

    now = dt.datetime.now(dt.UTC)
    other.write_bytes(CertificateBuilder().subject(parse_name(
        "CN=王五,serialNumber=11010519491231002X,C=CN")).issuer(parse_name("CN=Test SS CA,C=CN"))
        .public_key(PublicKey(SM2PublicKey.from_point(point))).serial_number(7)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30)).sign(ca).dump())
    refused = run_cli(rig, "certs", "--write-sign", str(other))
    assert refused.returncode == 12 and "names SSN 11010519491231002X" in refused.stderr

    # an encryption certificate with no encryption key on the card
    refused = run_cli(rig, "certs", "--write-enc", str(foreign))
    assert refused.returncode == 12 and "holds no encryption key" in refused.stderr

    # selftest compares certificate and key
    _write_raw("sign", foreign.read_bytes())
    selftest = run_cli(rig, "selftest")
    assert selftest.returncode != 0, selftest.stdout
    assert "FAIL signing certificate" in selftest.stdout
    assert "certifies another key" in selftest.stdout

    good = tmp_path / "good.cer"
    good.write_bytes(_certificate_for(point, ca))
    written = run_cli(rig, "certs", "--write-sign", str(good))
    assert written.returncode == 0, written.stderr
    selftest = run_cli(rig, "selftest")
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert "ok   signing certificate" in selftest.stdout


def test_keygen_does_not_silently_replace_a_certified_key(emulator, tmp_path):
    """Issue 12 finding 12: `card keygen` silently replaced a certified key. Now it needs
    --force, which is recorded in the card's journal and clears the stale certificate."""
    rig = emulator.rig
    pub = tmp_path / "card.pub"
    assert run_cli(rig, "keygen", "--out", str(pub)).returncode == 0
    assert run_cli(rig, "keygen", "--out", str(pub)).returncode == 0  # not certified yet
    point = PublicKey.from_pem(pub.read_bytes()).raw.point
    cert = tmp_path / "sign.cer"
    cert.write_bytes(_certificate_for(point, SoftwareKey.generate("sm2")))
    assert run_cli(rig, "certs", "--write-sign", str(cert)).returncode == 0

    journals = tmp_path / "journals"
    refused = run_cli(rig, "keygen", "--journal-dir", str(journals))
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "certified" in refused.stderr and "--force" in refused.stderr
    client = open_client()
    try:
        assert client.public_point() == point  # unchanged
        card_id = client.read_card_data().card_id.hex().upper()
    finally:
        client.close()

    forced = run_cli(rig, "keygen", "--force", "--journal-dir", str(journals),
                     "--out", str(tmp_path / "new.pub"))
    assert forced.returncode == 0, forced.stderr
    assert "revoke" in forced.stdout + forced.stderr
    new_point = PublicKey.from_pem((tmp_path / "new.pub").read_bytes()).raw.point
    assert new_point != point
    record = json.loads((journals / f"{card_id}.json").read_text(encoding="utf-8"))
    event = record["events"][-1]
    assert event["event"] == "signing key replaced with --force"
    assert event["old_point"] == point.hex() and event["new_point"] == new_point.hex()
    assert event["certificate_serial"] == f"{0x1234567890ABCDEF:X}"
    assert "sign: (empty)" in run_cli(rig, "certs").stdout  # the stale certificate is gone
    selftest = run_cli(rig, "selftest")
    assert selftest.returncode == 0, selftest.stdout


def test_write_data_refuses_another_person_on_a_certified_card(emulator, tmp_path):
    rig = emulator.rig
    pub = tmp_path / "card.pub"
    assert run_cli(rig, "keygen", "--out", str(pub)).returncode == 0
    cert = tmp_path / "sign.cer"  # certifies 张三 (the sample holder)
    cert.write_bytes(_certificate_for(PublicKey.from_pem(pub.read_bytes()).raw.point,
                                      SoftwareKey.generate("sm2")))
    assert run_cli(rig, "certs", "--write-sign", str(cert)).returncode == 0
    data = tmp_path / "holder.json"
    data.write_text(json.dumps({"ssn": "11010519491231002X", "name": "李四", "sex": "1",
                                "ethnicity": "01", "birthplace": "110105",
                                "birth_date": "19491231"}), encoding="utf-8")
    refused = run_cli(rig, "write-data", "--data", str(data))
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "111111198101011110" in refused.stderr
    info = json.loads(run_cli(rig, "info", "--format", "json").stdout)
    assert info["name"] == "张三"
