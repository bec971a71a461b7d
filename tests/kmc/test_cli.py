"""``sscard kmc ...``: ceremony, unseal with M-1 / M shares, callers, recovery by officers with
their own API keys, card keys, and the service started as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from sscard.audit import AuditLog
from sscard.cli import cli
from sscard.crypto import envelopes
from sscard.crypto.sm2 import SM2PrivateKey

NAMES = ["zhang", "li", "wang"]


def _run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), "kmc", *args], catch_exceptions=False)


def _secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    args = ["ceremony", "--threshold", "2", "--shares-dir", str(tmp_path / "shares"),
            "--officiant", "test"]
    for n in NAMES:
        args += ["--custodian", n, "--custodian-passphrase-file",
                 str(_secret(tmp_path / f"{n}.pass", f"{n} passphrase 1"))]
    r = _run(home, *args)
    assert r.exit_code == 0, r.output
    assert "2 of 3 custodians" in r.output
    return home


def _shares(home: Path, names: list[str]) -> list[str]:
    tmp = home.parent
    args: list[str] = []
    for n in names:
        share = next((tmp / "shares").glob(f"share-*-{n}.json"))
        args += ["--share", str(share), "--share-passphrase-file", str(tmp / f"{n}.pass")]
    return args


def test_unseal_needs_m_shares(home: Path) -> None:
    r = _run(home, "unseal", *_shares(home, ["li"]))
    assert r.exit_code == 1 and "1 custodian share(s) given, 2 of 3 are needed" in r.output
    r = _run(home, "unseal", *_shares(home, ["wang", "zhang"]))
    assert r.exit_code == 0 and "opened with 2 share(s)" in r.output
    wrong = _shares(home, ["li", "wang"])
    wrong[3] = str(home.parent / "zhang.pass")  # li's share file with zhang's passphrase
    r = _run(home, "unseal", *wrong)
    assert r.exit_code == 1 and "wrong passphrase for custodian 'li'" in r.output
    r = _run(home, "ceremony-log")
    assert r.exit_code == 0 and "chain intact" in r.output and "unseal.refused" in r.output
    r = _run(home, "unseal")
    assert r.exit_code == 2 and "--share" in r.output


def test_ceremony_cannot_run_twice(home: Path) -> None:
    args = ["ceremony", "--threshold", "2", "--shares-dir", str(home.parent / "s2")]
    for n in NAMES:
        args += ["--custodian", n, "--custodian-passphrase-file", str(home.parent / f"{n}.pass")]
    r = _run(home, *args)
    assert r.exit_code == 1 and "already ran" in r.output


def test_recovery_by_officers_on_the_command_line(home: Path, tmp_path: Path) -> None:
    from keymgmt.service import KeyManagementCentre

    keys = {}
    for name, role in [("ca", "ca"), ("o1", "officer"), ("o2", "officer"), ("o3", "officer")]:
        r = _run(home, "caller", "add", name, "--role", role, "--key-out",
                 str(tmp_path / f"{name}.key"))
        assert r.exit_code == 0, r.output
        keys[name] = tmp_path / f"{name}.key"
        assert (tmp_path / f"{name}.key").read_text().strip() not in r.output
    r = _run(home, "caller", "add", "o1", "--role", "officer")
    assert r.exit_code == 1 and "already exists" in r.output

    # escrow through the library with the unsealed key (the CA does this over HTTP)
    from keymgmt import ceremony

    storage = ceremony.unseal_from_files(home, [
        (next((tmp_path / "shares").glob("share-*-li.json")), b"li passphrase 1"),
        (next((tmp_path / "shares").glob("share-*-wang.json")), b"wang passphrase 1")],
                                         audit=AuditLog.at_home(home))
    kmc = KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}", storage,
                                   audit=AuditLog.at_home(home))
    card = SM2PrivateKey.generate()
    ca = kmc.authenticate(keys["ca"].read_text().strip())
    escrowed = kmc.escrow(ca, "11010519491231002X", card.public_key().spki_der())
    kmc.close()

    new_card = SM2PrivateKey.generate()
    pub = tmp_path / "newcard.der"
    pub.write_bytes(new_card.public_key().spki_der())
    r = _run(home, "recovery", "request", "--api-key-file", str(keys["o1"]), "--owner",
             "11010519491231002X", "--card-public-key", str(pub), "--reason", "card lost")
    assert r.exit_code == 0, r.output
    rid = json.loads(r.output)["request_id"]
    r = _run(home, "recovery", "approve", rid, "--api-key-file", str(keys["o1"]))
    assert r.exit_code == 1 and "requested this recovery" in r.output
    assert _run(home, "recovery", "approve", rid, "--api-key-file", str(keys["o2"])).exit_code == 0
    out = tmp_path / "recovered.blob"
    r = _run(home, "recovery", "complete", rid, "--api-key-file", str(keys["o1"]),
             "--out", str(out), *_shares(home, ["zhang", "wang"]))
    assert r.exit_code == 1 and "1 of the 2 approvals" in r.output and not out.exists()
    assert _run(home, "recovery", "approve", rid, "--api-key-file", str(keys["o3"])).exit_code == 0
    r = _run(home, "recovery", "complete", rid, "--api-key-file", str(keys["o1"]),
             "--out", str(out), *_shares(home, ["zhang", "wang"]))
    assert r.exit_code == 0, r.output
    got = envelopes.unwrap(out.read_bytes(), new_card)
    assert got.public_key().spki_der() == escrowed.public_key_spki


def test_card_keys_and_psam_export(home: Path, tmp_path: Path) -> None:
    r = _run(home, "cardkeys", "generate", "--province", "63", "--algorithm", "sm4")
    assert r.exit_code == 2 and "--share" in r.output
    r = _run(home, "cardkeys", "generate", "--province", "63", "--algorithm", "sm4",
             *_shares(home, ["li", "zhang"]))
    assert r.exit_code == 0 and r.output.count("KCV") == 5, r.output
    r = _run(home, "cardkeys", "list")
    assert r.exit_code == 0 and "0A external_auth" in r.output
    station = SM2PrivateKey.generate()
    pub = tmp_path / "station.der"
    pub.write_bytes(station.public_key().spki_der())
    out = tmp_path / "psam.sealed"
    r = _run(home, "cardkeys", "export-psam", "--region", "639900", "--recipient", str(pub),
             "--out", str(out), *_shares(home, ["li", "zhang"]))
    assert r.exit_code == 0, r.output
    from keymgmt import export_seal
    from keymgmt.cardkeys import PSAM_EXPORT_PURPOSE

    doc = export_seal.open_sealed(out.read_bytes(), station, PSAM_EXPORT_PURPOSE)
    assert sorted(doc["keys"]["SM4"]) == ["09", "0A", "0B", "0C", "0D"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_as_a_real_process(home: Path, tmp_path: Path) -> None:
    """The service in its own process, called with KmcClient (the CA's and terminals' side):
    escrow, and card authentication plus PIN unblock through RemoteAuthenticator."""
    from keymgmt import ceremony
    from keymgmt.cardkeys import CardKeyService
    from keymgmt.client import KmcClient, KmcServiceError, RemoteAuthenticator
    from keymgmt.service import KeyManagementCentre
    from sscard.card.auth import CardIdentity
    from sscard.card.client import CardClient
    from sscard.card.diversify import CardAlgorithm
    from sscard.card.transport import InProcessTransport
    from sscard.emulator import testkeys
    from sscard.emulator.card import EmulatedCard
    from sscard.emulator.sample import CardProfile, blank_card

    for name, role in [("ra", "ra"), ("t1", "terminal"), ("ca", "ca")]:
        region = ["--region", "6399"] if role == "terminal" else []
        r = _run(home, "caller", "add", name, "--role", role, "--key-out",
                 str(tmp_path / f"{name}.key"), *region)
        assert r.exit_code == 0
    # the ministry's (test) root keys, imported by the administrator with two custodians
    storage = ceremony.unseal_from_files(home, [
        (next((tmp_path / "shares").glob("share-*-li.json")), b"li passphrase 1"),
        (next((tmp_path / "shares").glob("share-*-zhang.json")), b"zhang passphrase 1")],
                                         audit=AuditLog.at_home(home))
    local = KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}", storage,
                                     audit=AuditLog.at_home(home))
    for kid in testkeys.KeyId:
        CardKeyService(local).import_root_key("63", int(kid), "sm4",
                                              testkeys.root_test_key(kid, CardAlgorithm.SM4))
    local.close()

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "--home", str(home), "kmc", "serve", "--port",
         str(port), "--audit-db-url", f"sqlite:///{tmp_path / 'audit.db'}",
         *_shares(home, ["li", "wang"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/health", timeout=2).json()["sealed"] is False:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine: try again
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                if proc.poll() is None:
                    proc.kill()
                pytest.fail(f"KMC did not start: {proc.stdout.read() if proc.stdout else ''!r}")
            time.sleep(0.1)

        ra = KmcClient(url, (tmp_path / "ra.key").read_text().strip())
        card_sign = SM2PrivateKey.generate()
        escrow = ra.escrow("owner-http", card_sign.public_key().spki_der())
        assert escrow.enveloped_key_blob is not None
        got = envelopes.unwrap(escrow.enveloped_key_blob, card_sign)
        assert got.public_key().spki_der() == escrow.public_key_spki
        with pytest.raises(KmcServiceError) as refused:
            KmcClient(url, "kmc_wrong").escrow("x", card_sign.public_key().spki_der())
        assert refused.value.status == 401
        assert "kmc_" not in repr(ra)

        terminal = RemoteAuthenticator(KmcClient(url, (tmp_path / "t1.key").read_text().strip()))
        card = EmulatedCard(blank_card(CardProfile(generation=3, region_code="639900")))
        with CardClient(InProcessTransport(card)) as client:
            client.internal_authenticate(terminal)
            client.external_authenticate(testkeys.KeyId.READ, terminal)
            for _ in range(3):
                with pytest.raises(Exception):  # noqa: B017  (the card's wrong-PIN errors)
                    client.verify_pin("999999")
            client.unblock_pin("135790", terminal)
            client.verify_pin("135790")
        ca = KmcClient(url, (tmp_path / "ca.key").read_text().strip())
        with pytest.raises(KmcServiceError) as refused:
            ca.external_cryptogram(0x0A, CardIdentity(card.atr, "639900", CardAlgorithm.SM4),
                                   bytes(8))
        assert refused.value.status == 403 and "terminal" in refused.value.message
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    audit = AuditLog.open(f"sqlite:///{tmp_path / 'audit.db'}", create=False)
    assert ("ra", "kmc.escrow.generate", "success") in [
        (r.record.actor, r.record.action, r.record.outcome) for r in audit.records()]
