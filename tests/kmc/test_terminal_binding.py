"""Issue 12 finding 14 (KMC): a terminal key got card-key cryptograms for any card, with no
binding and no limit. Terminals are now bound to their regions (and terminal id), rate-limited
per terminal across workers (one atomic conditional update in the KMC database, on SQLite and
PostgreSQL), and every answer or refusal is recorded against the card.

Also the KMC rows of the authorisation matrix: every caller role against every card-key
operation over the real HTTP app.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from keymgmt.cardkeys import CardKeyService, card_subject
from keymgmt.db import TerminalBindingRecord
from keymgmt.errors import KmcError, PermissionDenied, RateLimited
from keymgmt.service import KeyManagementCentre, Principal
from keymgmt.web import create_app
from sscard.card.diversify import CardAlgorithm
from sscard.emulator import testkeys
from tests.kmc.kmc_helpers import new_kmc

REGION = "639900"
ATR = bytes.fromhex("3B6D000000814E4323") + bytes(range(8))
OTHER_ATR = bytes.fromhex("3B6D000000814E4323") + bytes(range(8, 16))


def _import_roots(kmc: KeyManagementCentre) -> CardKeyService:
    service = CardKeyService(kmc)
    for kid in testkeys.KeyId:
        service.import_root_key("63", int(kid), "sm4",
                                testkeys.root_test_key(kid, CardAlgorithm.SM4))
    return service


@pytest.fixture
def kmc(tmp_path: Path) -> Iterator[KeyManagementCentre]:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


def _terminal(kmc: KeyManagementCentre, name: str, regions: list[str] | None,
              **binding: Any) -> Principal:
    principal = kmc.authenticate(kmc.add_caller(name, "terminal"))
    if regions is not None:
        CardKeyService(kmc).bind_terminal(name, regions, **binding)
    return principal


def _external(service: CardKeyService, who: Principal, region: str = REGION,
              atr: bytes = ATR, terminal_id: str | None = None) -> bytes:
    return service.external_cryptogram(who, region_code=region, atr=atr, algorithm_flag=3,
                                       challenge=bytes(8), terminal_id=terminal_id)


def test_an_unbound_terminal_gets_nothing(kmc: KeyManagementCentre) -> None:
    service = _import_roots(kmc)
    loose = _terminal(kmc, "loose", None)
    with pytest.raises(PermissionDenied, match="bound to no region"):
        _external(service, loose)
    with pytest.raises(PermissionDenied, match="bound to no region"):
        service.internal_check(loose, region_code=REGION, atr=ATR, algorithm_flag=3,
                               process_factor=bytes(8), data=bytes(8))
    refused = kmc.events(_auditor(kmc), "cardkey.external_auth.refused")
    assert refused and refused[-1]["subject"] == card_subject(ATR)
    assert refused[-1]["actor"] == "loose"


def _auditor(kmc: KeyManagementCentre) -> Principal:
    name = "auditor-" + secrets.token_hex(3)
    return kmc.authenticate(kmc.add_caller(name, "auditor"))


def test_a_terminal_answers_only_for_its_regions(kmc: KeyManagementCentre) -> None:
    service = _import_roots(kmc)
    city = _terminal(kmc, "city", ["6399"])
    assert len(_external(service, city)) == 8
    for region in ("630100", "110100"):
        with pytest.raises(PermissionDenied, match="bound to region"):
            _external(service, city, region=region)
    with pytest.raises(KmcError, match="region"):
        CardKeyService(kmc).bind_terminal("city", ["6"])
    with pytest.raises(KmcError, match="no terminal caller"):
        CardKeyService(kmc).bind_terminal("nobody", ["63"])


def test_a_terminal_bound_to_its_id_must_name_it(kmc: KeyManagementCentre) -> None:
    service = _import_roots(kmc)
    station = _terminal(kmc, "station", ["63"], terminal_id="000000000042")
    with pytest.raises(PermissionDenied, match="terminal id 000000000042"):
        _external(service, station)
    with pytest.raises(PermissionDenied, match="terminal id 000000000042"):
        _external(service, station, terminal_id="000000000043")
    assert len(_external(service, station, terminal_id="000000000042")) == 8
    # the Step-1 line carries the terminal number in its ninth field
    step1 = (f"{REGION}|{ATR.hex()}|03|639900D156000005|{'11' * 8}|{'22' * 8}|{'00' * 8}|"
             f"{'33' * 8}|")
    with pytest.raises(PermissionDenied):
        service.hsm_step(station, step1 + "000000000001|")
    assert service.hsm_step(station, step1 + "000000000042|").count("|") == 2


def test_each_answer_is_recorded_against_the_card(kmc: KeyManagementCentre) -> None:
    service = _import_roots(kmc)
    terminal = _terminal(kmc, "t", ["63"])
    _external(service, terminal)
    _external(service, terminal, atr=OTHER_ATR)
    service.internal_check(terminal, region_code=REGION, atr=ATR, algorithm_flag=3,
                           process_factor=bytes(8), data=bytes(8))
    events = kmc.events(_auditor(kmc), "cardkey.")
    per_card = [(e["action"], e["subject"]) for e in events
                if e["subject"].startswith("card:")]
    assert per_card == [("cardkey.external_auth", card_subject(ATR)),
                        ("cardkey.external_auth", card_subject(OTHER_ATR)),
                        ("cardkey.internal_auth", card_subject(ATR))]
    assert all(ATR.hex() not in str(e) for e in events)  # the ATR itself is never logged


def test_the_rate_limit_holds_and_resets_each_minute(kmc: KeyManagementCentre) -> None:
    service = _import_roots(kmc)
    terminal = _terminal(kmc, "slow", ["63"], rate_per_minute=3)
    for _ in range(3):
        _external(service, terminal)
    with pytest.raises(RateLimited, match="more than 3"):
        _external(service, terminal)
    # a minute later (moved back in the database rather than waited for)
    with kmc._tx() as s:
        s.execute(update(TerminalBindingRecord).values(
            window_start=datetime.now(UTC) - timedelta(minutes=2)))
    _external(service, terminal)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_requests_admit_exactly_the_rate(tmp_path: Path, backend: str,
                                                  request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'kmc.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    kmc = new_kmc(url)
    try:
        service = _import_roots(kmc) if not CardKeyService(kmc).list_master_keys() else \
            CardKeyService(kmc)
        name = f"burst-{backend}"
        terminal = _terminal(kmc, name, ["63"], rate_per_minute=5)
        outcomes: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(20)

        def one() -> None:
            start.wait()
            try:
                _external(service, terminal)
                result = "ok"
            except RateLimited:
                result = "limited"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["limited"] * 15 + ["ok"] * 5
    finally:
        kmc.close()


# -- the KMC rows of the authorisation matrix -----------------------------------------------


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@pytest.fixture
def web(kmc: KeyManagementCentre) -> tuple[FlaskClient, dict[str, str]]:
    _import_roots(kmc)
    tokens = {name: kmc.add_caller(name, role) for name, role in [
        ("ca", "ca"), ("ra", "ra"), ("officer", "officer"), ("auditor", "auditor"),
        ("terminal-unbound", "terminal"), ("terminal-here", "terminal"),
        ("terminal-elsewhere", "terminal")]}
    service = CardKeyService(kmc)
    service.bind_terminal("terminal-here", ["6399"])
    service.bind_terminal("terminal-elsewhere", ["1101"])
    return create_app(kmc).test_client(), tokens


CARD = {"region_code": REGION, "atr": _b64(ATR), "algorithm_flag": 3}
OPERATIONS = {
    "external": ("/card-auth/external", {**CARD, "challenge": _b64(bytes(8))}),
    "internal": ("/card-auth/internal", {**CARD, "process_factor": _b64(bytes(8)),
                                         "data": _b64(bytes(8))}),
    "pin": ("/card-auth/pin-command", {**CARD, "key_id": 0x0C, "challenge": _b64(bytes(8)),
                                       "header": _b64(b"\x84\x24\x00\x00"),
                                       "new_pin": "123456"}),
    "hsm-step": ("/card-auth/hsm-step", {"step1": (
        f"{REGION}|{ATR.hex()}|03|639900D156000005|{'11' * 8}|{'22' * 8}|{'00' * 8}|"
        f"{'33' * 8}|000000000000|")}),
}
#: who may get card-key answers for a card of region 639900: the RA (the issuing line) and a
#: terminal bound to that region; nobody else
ALLOWED = {"ra", "terminal-here"}


def test_kmc_card_key_matrix_has_zero_unauthorised_successes(
        web: tuple[FlaskClient, dict[str, str]]) -> None:
    client, tokens = web
    unauthorised, missed = [], []
    for who, token in [*tokens.items(), ("nobody", "kmc_not_a_key")]:
        for op, (path, body) in OPERATIONS.items():
            reply = client.post("/kmc/v1" + path, json=body,
                                headers={"Authorization": f"Bearer {token}"})
            if reply.status_code == 200 and who not in ALLOWED:
                unauthorised.append((who, op))
            if reply.status_code != 200:
                assert reply.status_code in (401, 403), (who, op, reply.json)
                if who in ALLOWED:
                    missed.append((who, op, reply.json))
    assert unauthorised == []
    assert missed == []


def test_kmc_key_operations_matrix(web: tuple[FlaskClient, dict[str, str]]) -> None:
    """The other KMC operations by role: escrow for the CA and RA, key lookup for them and
    officers and auditors, the event log for auditors and officers; terminals none of them."""
    from sscard.crypto.sm2 import SM2PrivateKey

    client, tokens = web
    recipient = _b64(SM2PrivateKey.generate().public_key().spki_der())
    operations = {
        "escrow": (lambda h: client.post("/kmc/v1/escrow", headers=h, json={
            "owner": "matrix", "recipient_public_key": recipient}), 201, {"ca", "ra"}),
        "find-keys": (lambda h: client.get("/kmc/v1/keys?owner=matrix", headers=h), 200,
                      {"ca", "ra", "officer", "auditor"}),
        "events": (lambda h: client.get("/kmc/v1/events", headers=h), 200,
                   {"auditor", "officer"}),
    }
    for who, token in [*tokens.items(), ("nobody", "kmc_not_a_key")]:
        for op, (call, ok, allowed) in operations.items():
            reply = call({"Authorization": f"Bearer {token}"})
            if who in allowed:
                assert reply.status_code == ok, (who, op, reply.json)
            else:
                assert reply.status_code in (401, 403), (who, op, reply.status_code)


def test_the_client_names_its_terminal_id_over_http(kmc: KeyManagementCentre) -> None:
    """A remote terminal bound to its terminal id authenticates a card through KmcClient."""
    import socket

    from werkzeug.serving import make_server

    from keymgmt.client import KmcClient, KmcServiceError, RemoteAuthenticator
    from sscard.card.client import CardClient
    from sscard.card.transport import InProcessTransport
    from sscard.emulator.card import EmulatedCard
    from sscard.emulator.sample import CardProfile, blank_card

    _import_roots(kmc)
    token = kmc.add_caller("remote", "terminal")
    CardKeyService(kmc).bind_terminal("remote", ["6399"], terminal_id="000000000042")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server("127.0.0.1", port, create_app(kmc), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        card = EmulatedCard(blank_card(CardProfile(generation=3, region_code=REGION)))
        with CardClient(InProcessTransport(card)) as client:
            with pytest.raises(KmcServiceError) as refused:
                client.internal_authenticate(RemoteAuthenticator(KmcClient(url, token)))
            assert refused.value.status == 403 and "terminal id" in refused.value.message
            client.internal_authenticate(RemoteAuthenticator(
                KmcClient(url, token, terminal_id="000000000042")))
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_over_the_rate_is_429_over_http(web: tuple[FlaskClient, dict[str, str]],
                                        kmc: KeyManagementCentre) -> None:
    client, tokens = web
    CardKeyService(kmc).bind_terminal("terminal-here", ["6399"], rate_per_minute=1)
    path, body = OPERATIONS["external"]
    headers = {"Authorization": f"Bearer {tokens['terminal-here']}"}
    assert client.post("/kmc/v1" + path, json=body, headers=headers).status_code == 200
    limited = client.post("/kmc/v1" + path, json=body, headers=headers)
    assert limited.status_code == 429 and "more than 1" in limited.json["detail"]
