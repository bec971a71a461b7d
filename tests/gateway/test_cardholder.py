"""Cardholder authentication: the gateway's one-time challenge, signed by the emulated card
(in-process, and over PC/SC through pcscd + vpcd), checked with certificate path and status;
replayed, expired, foreign and forged answers refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench._common import stop_process
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport, PcscTransport
from sscard.clock import FakeClock
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from sscard.gateway.audit import MemoryRecorder
from sscard.gateway.challenges import MemoryChallengeStore, new_challenge
from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.gateway.service import create_app
from tests.gateway.card import HOLDER_SSN, PIN, personalise
from tests.gateway.conftest import Rig, ServerThread


@pytest.fixture(scope="module")
def in_process_card(rig: Rig) -> tuple[CardKey, object]:
    card = EmulatedCard(sample_card(CardProfile(generation=3)))
    psam = EmulatedPsam(make_test_psam())
    cert = personalise(InProcessTransport(card), InProcessTransport(psam), rig.pki.ca)
    client = CardClient(InProcessTransport(card))
    client.connect()
    return CardKey(client, lambda: PIN), cert


def test_cardholder_authenticates_with_the_card(rig: Rig, in_process_card) -> None:
    key, cert = in_process_card
    answer = rig.client().authenticate_cardholder(key, cert)
    assert answer["authenticated"] is True, answer
    assert answer["cardholder"]["social_insurance_number"] == HOLDER_SSN
    assert answer["cardholder"]["common_name"] == "张三"
    assert answer["reasons"] == []


def test_replayed_answer_is_refused(rig: Rig, in_process_card) -> None:
    key, cert = in_process_card
    gw = rig.client()
    challenge = gw.cardholder_challenge()
    signature = key.sign(challenge["to_sign"])
    assert gw.cardholder_verify(challenge["challenge_id"], signature, cert)["authenticated"]
    with pytest.raises(GatewayClientError) as exc:
        gw.cardholder_verify(challenge["challenge_id"], signature, cert)
    assert exc.value.code == "CHALLENGE_REPLAYED" and exc.value.status == 409


def test_a_wrong_answer_also_consumes_the_challenge(rig: Rig, in_process_card) -> None:
    key, cert = in_process_card
    gw = rig.client()
    challenge = gw.cardholder_challenge()
    forged = rig.pki.signer.key.sign(challenge["to_sign"])  # not the card's key
    answer = gw.cardholder_verify(challenge["challenge_id"], forged, cert)
    assert answer["authenticated"] is False
    assert [r["code"] for r in answer["reasons"]] == ["BAD_SIGNATURE"]
    with pytest.raises(GatewayClientError) as exc:
        gw.cardholder_verify(challenge["challenge_id"], key.sign(challenge["to_sign"]), cert)
    assert exc.value.code == "CHALLENGE_REPLAYED"


def test_expired_challenge_is_refused(rig: Rig, in_process_card) -> None:
    """The gateway's clock is advanced past the challenge's life: no sleeping, no backdating."""
    key, cert = in_process_card
    clock = FakeClock()
    app = create_app(rig.config, recorder=MemoryRecorder(), clock=clock)
    with ServerThread(app) as server:
        system = rig.systems["employment"]
        gw = GatewayClient(f"http://127.0.0.1:{server.port}", key=system.key,
                           certificate=system.cert)
        seconds = rig.config.challenge_seconds
        fresh = gw.cardholder_challenge()
        clock.advance(seconds=seconds - 1)  # still in time
        answer = gw.cardholder_verify(fresh["challenge_id"], key.sign(fresh["to_sign"]), cert)
        assert answer["authenticated"] is True, answer
        late = gw.cardholder_challenge()
        clock.advance(seconds=seconds + 1)
        with pytest.raises(GatewayClientError) as exc:
            gw.cardholder_verify(late["challenge_id"], key.sign(late["to_sign"]), cert)
        assert exc.value.code == "CHALLENGE_EXPIRED" and exc.value.status == 410
        # the same clock judges request signatures: this machine's "now" is long past for it
        clock.advance(hours=1)
        with pytest.raises(GatewayClientError) as exc:
            gw.cardholder_challenge()
        assert exc.value.status == 401 and "date" in exc.value.message.lower()


def test_challenge_is_bound_to_the_relying_system(rig: Rig, in_process_card) -> None:
    key, cert = in_process_card
    challenge = new_challenge("fund", seconds=60)  # issued to another system
    assert b"system=fund" in challenge.to_sign
    _live_store(rig).put(challenge)
    with pytest.raises(GatewayClientError) as exc:
        rig.client().cardholder_verify(challenge.challenge_id, key.sign(challenge.to_sign), cert)
    assert exc.value.code == "CHALLENGE_WRONG_SYSTEM"
    with pytest.raises(GatewayClientError) as exc:
        rig.client().cardholder_verify("0" * 32, b"\x30\x00", cert)
    assert exc.value.code == "CHALLENGE_UNKNOWN"


def test_revoked_cardholder_certificate_is_not_authenticated(rig: Rig) -> None:
    gw = rig.client()
    challenge = gw.cardholder_challenge()
    person = rig.revoked_person
    answer = gw.cardholder_verify(challenge["challenge_id"],
                                  person.key.sign(challenge["to_sign"]), person.cert)
    assert answer["authenticated"] is False
    assert [r["code"] for r in answer["reasons"]] == ["REVOKED"]


def test_unauthenticated_caller_gets_no_challenge(rig: Rig) -> None:
    import requests

    answer = requests.post(rig.url + "/v1/cardholder/challenge", json={}, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["code"] == "UNAUTHENTICATED"


def _live_store(rig: Rig) -> MemoryChallengeStore:
    """The running app's challenge store (the rig builds one app for both servers)."""
    from tests.gateway.conftest import LIVE_APPS

    store = LIVE_APPS[-1].extensions["gateway"].challenges
    assert isinstance(store, MemoryChallengeStore)
    return store


# -- over PC/SC ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcsc_card(rig: Rig, pcsc_rig: object,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An emulated card on the session's pcscd + vpcd rig (tests/conftest.py), personalised."""
    from sscard.emulator.pcscd import CARD_READER, PSAM_READER

    pcscd: Any = pcsc_rig
    workdir = tmp_path_factory.mktemp("pcsc")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "card", "emulate", "--state",
         str(workdir / "card.json"), "--port", str(pcscd.port), "--new-sample"],
        env=pcscd.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        pcscd.wait_card(CARD_READER)
        pcscd.wait_card(PSAM_READER)
        cert = personalise(PcscTransport(CARD_READER), PcscTransport(PSAM_READER), rig.pki.ca)
        client = CardClient(PcscTransport(CARD_READER))
        client.connect()
        yield CardKey(client, lambda: PIN), cert, pcscd, workdir
        client.close()
    finally:
        stop_process(emulator)
        if emulator.stderr:
            emulator.stderr.close()
        # the emulator is gone: wait until pcscd sees both slots empty for the next user
        pcscd.wait_card(CARD_READER, present=False)
        pcscd.wait_card(PSAM_READER, present=False)


def test_cardholder_authentication_over_pcsc(rig: Rig, pcsc_card) -> None:
    key, cert, _pcscd, _workdir = pcsc_card
    gw = rig.client()
    answer = gw.authenticate_cardholder(key, cert)
    assert answer["authenticated"] is True, answer
    assert answer["cardholder"]["social_insurance_number"] == HOLDER_SSN
    # the same card, the same challenge twice: refused
    challenge = gw.cardholder_challenge()
    signature = key.sign(challenge["to_sign"])
    assert gw.cardholder_verify(challenge["challenge_id"], signature, cert)["authenticated"]
    with pytest.raises(GatewayClientError) as exc:
        gw.cardholder_verify(challenge["challenge_id"], signature, cert)
    assert exc.value.code == "CHALLENGE_REPLAYED"


def test_cardholder_authentication_from_the_cli(rig: Rig, pcsc_card) -> None:
    from sscard.emulator.pcscd import CARD_READER
    from sscard.x509.pem import der_to_pem

    _key, _cert, pcscd, workdir = pcsc_card
    system = rig.systems["employment"]
    system.key.store(workdir / "system.key", b"pass phrase")
    (workdir / "system.pem").write_bytes(der_to_pem(system.cert.dump(), "CERTIFICATE"))
    (workdir / "pass").write_text("pass phrase\n")
    (workdir / "pass").chmod(0o600)  # a secret file: owner only
    (workdir / "pin").write_text(PIN + "\n")
    (workdir / "pin").chmod(0o600)  # a secret file: owner only
    base = [sys.executable, "-m", "sscard.cli", "gateway", "authenticate-card",
            "--gateway", rig.url, "--client-cert", str(workdir / "system.pem"),
            "--client-key", str(workdir / "system.key"), "--passphrase-file",
            str(workdir / "pass"), "--reader", CARD_READER]
    res = subprocess.run([*base, "--pin-file", str(workdir / "pin")], env=pcscd.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("AUTHENTICATED: CN=张三")
    assert HOLDER_SSN in res.stdout
    (workdir / "wrong-pin").write_text("654321\n")
    (workdir / "wrong-pin").chmod(0o600)  # a secret file: owner only
    res = subprocess.run([*base, "--pin-file", str(workdir / "wrong-pin")], env=pcscd.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "card:" in res.stderr and "AUTHENTICATED" not in res.stdout
