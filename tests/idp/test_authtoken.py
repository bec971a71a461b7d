"""Login token validation (issue 15 part A, the web-eid-authtoken-validation model): a token
signed by the card (emulated, in process) and by software keys, then every bad input about the
token: a replay, another origin, an expired or unknown nonce, a revoked, expired or untrusted
certificate, the card's encryption (not authentication) certificate, a tampered signature,
malformed JSON, base64 and DER. Each is refused with its stable code."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from sscard.idp.authtoken import (
    AuthToken,
    NonceStore,
    TokenError,
    TokenValidator,
    signed_data,
)
from tests.gateway.card import HOLDER_SSN, PIN, personalise
from tests.idp.login_pki import SSN, LoginPki, make_login_pki, make_token
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

ORIGIN = "https://rp.example:8443"


@pytest.fixture(scope="module")
def pki() -> LoginPki:
    return make_login_pki()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def nonces(tmp_path: Path, clock: Clock) -> NonceStore:
    return NonceStore(f"sqlite:///{tmp_path / 'nonces.db'}", clock)


@pytest.fixture
def validator(pki: LoginPki, nonces: NonceStore) -> TokenValidator:
    return TokenValidator(pki.trust(), nonces=nonces)


def refused(code: str, validator: TokenValidator, token: AuthToken, nonce: str,
            origin: str = ORIGIN) -> TokenError:
    with pytest.raises(TokenError) as exc:
        validator.validate(token, origin, nonce)
    assert exc.value.code == code, exc.value
    return exc.value


def test_sm2_token_gives_the_holder(pki: LoginPki, nonces: NonceStore,
                                    validator: TokenValidator) -> None:
    nonce = nonces.issue()
    assert len(base64.urlsafe_b64decode(nonce + "=")) == 32
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    who = validator.validate(AuthToken.from_json(token.to_json()), ORIGIN, nonce)
    assert (who.name, who.ssn, who.card_number) == ("张三", SSN, None)
    assert who.certificate_der == pki.sign.cert.dump()
    assert len(who.certificate_sha256) == 64


def test_es256_token_gives_the_holder(pki: LoginPki, nonces: NonceStore,
                                      validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.es256.key, pki.es256.cert.dump(), ORIGIN, nonce, "ES256")
    assert validator.validate(token, ORIGIN, nonce).ssn == SSN


@pytest.fixture(scope="module")
def card_key(pki: LoginPki) -> Iterator[tuple[CardKey, bytes]]:
    """The emulated card, personalised with a signing key certified by the login CA."""
    card = EmulatedCard(sample_card(CardProfile(generation=3)))
    cert = personalise(InProcessTransport(card), InProcessTransport(EmulatedPsam(make_test_psam())),
                       pki.ca)
    client = CardClient(InProcessTransport(card))
    client.connect()
    yield CardKey(client, lambda: PIN), cert.dump()
    client.close()


def test_token_signed_by_the_card(card_key: tuple[CardKey, bytes], nonces: NonceStore,
                                  pki: LoginPki) -> None:
    """The card's PSO over e = SM3(Z || SM3(origin) || SM3(nonce)) verifies as SM2-SM3; the
    personalised card's certificate carries O=人社厅 and the gateway's cardholder policy."""
    key, cert_der = card_key
    validator = TokenValidator(pki.trust(), nonces=nonces)
    nonce = nonces.issue()
    who = validator.validate(make_token(key, cert_der, ORIGIN, nonce), ORIGIN, nonce)
    assert (who.name, who.ssn) == ("张三", HOLDER_SSN)


def test_replayed_token_is_refused(pki: LoginPki, nonces: NonceStore,
                                   validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    validator.validate(token, ORIGIN, nonce)
    refused("NONCE_USED", validator, token, nonce)


def test_nonce_is_shared_by_workers(tmp_path: Path, pki: LoginPki) -> None:
    """Two stores on one database (two gunicorn workers): a nonce used in one is used in both."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = NonceStore(url), NonceStore(url)
    nonce = one.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    TokenValidator(pki.trust(), nonces=one).validate(token, ORIGIN, nonce)
    refused("NONCE_USED", TokenValidator(pki.trust(), nonces=two), token, nonce)


def test_token_for_another_origin_is_refused(pki: LoginPki, nonces: NonceStore,
                                             validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), "https://evil.example", nonce)
    refused("ORIGIN_MISMATCH", validator, token, nonce)
    # the origin is checked first: the nonce is still good for the real login
    good = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    assert validator.validate(good, ORIGIN, nonce).ssn == SSN


def test_origin_relabelled_in_the_token_is_refused(pki: LoginPki, nonces: NonceStore,
                                                   validator: TokenValidator) -> None:
    """A token made for evil.example with its 'origin' field rewritten: the signature binds
    the origin."""
    nonce = nonces.issue()
    made = make_token(pki.sign.key, pki.sign.cert.dump(), "https://evil.example", nonce)
    relabelled = AuthToken(made.certificate, made.algorithm, made.signature, ORIGIN)
    refused("SIGNATURE_INVALID", validator, relabelled, nonce)


def test_expired_nonce_is_refused(pki: LoginPki, nonces: NonceStore, clock: Clock,
                                  validator: TokenValidator) -> None:
    nonce = nonces.issue(seconds=60)
    clock.now += timedelta(seconds=61)
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    refused("NONCE_EXPIRED", validator, token, nonce)
    refused("NONCE_USED", validator, token, nonce)


def test_unknown_nonce_is_refused(pki: LoginPki, validator: TokenValidator) -> None:
    nonce = "A" * 43
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    refused("NONCE_UNKNOWN", validator, token, nonce)
    refused("NONCE_UNKNOWN", validator, token, "x" * 500)


@pytest.mark.parametrize("which, code", [
    ("revoked", "CERTIFICATE_REVOKED"),
    ("expired", "CERTIFICATE_EXPIRED"),
    ("outsider", "CERTIFICATE_UNTRUSTED"),
    ("encrypt", "WRONG_CERTIFICATE"),
    ("nonrepudiation_only", "WRONG_CERTIFICATE"),
])
def test_certificate_refusals(pki: LoginPki, nonces: NonceStore, validator: TokenValidator,
                              which: str, code: str) -> None:
    issued = getattr(pki, which)
    nonce = nonces.issue()
    token = make_token(issued.key, issued.cert.dump(), ORIGIN, nonce)
    error = refused(code, validator, token, nonce)
    assert error.message
    refused("NONCE_USED", validator, token, nonce)  # consumed, nothing else recorded


def test_wrong_certificate_names_the_profile(pki: LoginPki, nonces: NonceStore,
                                             validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.encrypt.key, pki.encrypt.cert.dump(), ORIGIN, nonce)
    error = refused("WRONG_CERTIFICATE", validator, token, nonce)
    assert "not a cardholder certificate" in error.message
    assert "digitalSignature" in error.message


def test_tampered_signature_is_refused(pki: LoginPki, nonces: NonceStore,
                                       validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    sig = bytearray(token.signature)
    sig[-3] ^= 0x01
    tampered = AuthToken(token.certificate, token.algorithm, bytes(sig), token.origin)
    refused("SIGNATURE_INVALID", validator, tampered, nonce)


def test_signature_by_another_key_is_refused(pki: LoginPki, nonces: NonceStore,
                                             validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.revoked.key, pki.sign.cert.dump(), ORIGIN, nonce)
    refused("SIGNATURE_INVALID", validator, token, nonce)


def test_algorithm_not_fitting_the_key_is_refused(pki: LoginPki, nonces: NonceStore,
                                                  validator: TokenValidator) -> None:
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    refused("SIGNATURE_INVALID", validator,
            AuthToken(token.certificate, "ES256", token.signature, ORIGIN), nonce)


def _good(pki: LoginPki) -> dict[str, object]:
    return dict(make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, "n").to_json())


@pytest.mark.parametrize("change, field", [
    ({"format": "sscard-auth-token:2"}, "'format'"),
    ({"algorithm": "RS256"}, "'algorithm'"),
    ({"algorithm": None}, "'algorithm'"),
    ({"origin": "https://rp.example/path"}, "'origin'"),
    ({"origin": "rp.example"}, "'origin'"),
    ({"origin": 42}, "'origin'"),
    ({"certificate": "%%%not-base64"}, "'certificate'"),
    ({"certificate": ""}, "'certificate'"),
    ({"certificate": base64.b64encode(b"\x30\x03\x02\x01\x01").decode()}, "'certificate'"),
    ({"certificate": base64.b64encode(b"garbage").decode()}, "'certificate'"),
    ({"signature": "not base64!"}, "'signature'"),
    ({"signature": 7}, "'signature'"),
    ({"signature": "A" * 20_000}, "'signature'"),
])
def test_malformed_tokens_are_refused(pki: LoginPki, change: dict[str, object],
                                      field: str) -> None:
    data = dict(_good(pki), **change)
    with pytest.raises(TokenError) as exc:
        AuthToken.from_json(data)
    assert exc.value.code == "TOKEN_MALFORMED" and field in exc.value.message


def test_missing_fields_and_non_objects_are_refused(pki: LoginPki) -> None:
    for name in ("format", "algorithm", "origin", "certificate", "signature"):
        data = _good(pki)
        del data[name]
        with pytest.raises(TokenError) as exc:
            AuthToken.from_json(data)
        assert exc.value.code == "TOKEN_MALFORMED" and name in exc.value.message
    not_objects: list[object] = [[], "token", None, 3]
    for not_object in not_objects:
        with pytest.raises(TokenError) as exc:
            AuthToken.from_json(not_object)  # type: ignore[arg-type]
        assert exc.value.code == "TOKEN_MALFORMED"


def test_signed_data_is_the_hash_pair() -> None:
    from sscard.crypto.hashes import sm3

    assert signed_data("SM2-SM3", ORIGIN, "n") == sm3(ORIGIN.encode()) + sm3(b"n")
    assert len(signed_data("ES256", ORIGIN, "n")) == 64
    with pytest.raises(TokenError):
        signed_data("none", ORIGIN, "n")


def test_nonce_lifetime_is_bounded(nonces: NonceStore) -> None:
    for seconds in (0, -5, 3601):
        with pytest.raises(ValueError):
            nonces.issue(seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_a_nonce_raced_by_many_workers_is_used_once(store_url: str) -> None:
    """Eight workers (own engines, as gunicorn workers have) present the same nonce at once:
    exactly one consumes it, the others are told it was used."""
    import threading

    stores = [NonceStore(store_url) for _ in range(8)]
    nonce = stores[0].issue()
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def present(store: NonceStore) -> None:
        barrier.wait()
        try:
            store.consume(nonce)
            outcomes.append("ok")
        except TokenError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=present, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["NONCE_USED"] * 7 + ["ok"]
    with pytest.raises(TokenError) as exc:
        stores[3].consume("B" * 43)
    assert exc.value.code == "NONCE_UNKNOWN"
    for store in stores:
        store.engine.dispose()


def test_a_certificate_expired_by_the_validators_clock(pki: LoginPki,
                                                      nonces: NonceStore) -> None:
    """The validator's clock past the card certificate's notAfter (it lives a year): refused;
    the same token at the real time passes."""
    later = Clock()
    later.now += timedelta(days=400)
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    refused("CERTIFICATE_EXPIRED", TokenValidator(pki.trust(), later, nonces=nonces), token,
            nonce)
    nonce = nonces.issue()
    token = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    assert TokenValidator(pki.trust(), Clock(), nonces=nonces).validate(token, ORIGIN, nonce)
