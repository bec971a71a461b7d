"""The SM2 opt-in: a business system registered with ``id_token_alg = SM2-SM3`` gets an
SM2-signed ID token that ``sscard.idp.sm2jws`` verifies with the provider's SM2 key set, and
that a standard JOSE library refuses (the reason ES256 is the default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from joserfc.errors import JoseError

from sscard.idp import sm2jws
from sscard.idp.provider import new_signing_key
from sscard.idp.store import StoreError
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import RelyingParty, Rig, serve
from tests.idp.test_provider import _login, _tamper


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp-sm2") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


def _sm2_rp(rig: Rig) -> RelyingParty:
    client, secret = rig.store.add_client("基金监管系统", ["https://fund.example/cb"],
                                          id_token_alg="SM2-SM3")
    return RelyingParty(rig.url, client.client_id, secret, "https://fund.example/cb")


def _sm2_keys(rp: RelyingParty) -> dict[str, object]:
    return dict(requests.get(rp.meta["sscard_sm2_jwks_uri"]).json())


def test_sm2_opt_in_token_verifies_with_our_library_only(rig: Rig) -> None:
    rp = _sm2_rp(rig)
    id_token = rp.fetch(_login(rig, rp))["id_token"]
    claims = sm2jws.verify(id_token, _sm2_keys(rp), issuer=rig.url, audience=rp.client_id,
                           nonce=rp.nonce)
    assert claims["sscard:ssn"] == HOLDER_SSN and claims["amr"] == ["hwk", "pin"]
    with pytest.raises(JoseError):
        rp.verify(id_token)  # a standard client refuses it: no JOSE algorithm for SM2
    # the standard JWKS stays readable by standard libraries: no SM2 key in it
    assert all(k["crv"] == "P-256" for k in requests.get(rp.meta["jwks_uri"]).json()["keys"])


def test_tampered_or_foreign_sm2_token_is_refused(rig: Rig) -> None:
    rp = _sm2_rp(rig)
    id_token = rp.fetch(_login(rig, rp))["id_token"]
    keys = _sm2_keys(rp)
    with pytest.raises(sm2jws.Sm2JwsError, match="signature"):
        sm2jws.verify(_tamper(id_token), keys, issuer=rig.url, audience=rp.client_id)
    with pytest.raises(sm2jws.Sm2JwsError, match="aud"):
        sm2jws.verify(id_token, keys, issuer=rig.url, audience="another-client")
    with pytest.raises(sm2jws.Sm2JwsError, match="nonce"):
        sm2jws.verify(id_token, keys, issuer=rig.url, audience=rp.client_id, nonce="x")
    with pytest.raises(sm2jws.Sm2JwsError, match="no published SM2 key"):
        sm2jws.verify(id_token, {"keys": []}, issuer=rig.url, audience=rp.client_id)


def test_sm2_key_rotation_keeps_old_tokens_verifiable(rig: Rig) -> None:
    rp = _sm2_rp(rig)
    before = rp.fetch(_login(rig, rp))["id_token"]
    new_signing_key(rig.store, "SM2-SM3")
    sm2jws.verify(before, _sm2_keys(rp), issuer=rig.url, audience=rp.client_id)
    assert len(_sm2_keys(rp)["keys"]) >= 2  # type: ignore[arg-type]


def test_unknown_id_token_alg_is_refused(rig: Rig) -> None:
    with pytest.raises(StoreError, match="ID token algorithm"):
        rig.store.add_client("x", ["https://x.example/cb"], id_token_alg="HS256")
