"""The verified card-number claim (sscard.idp.card_numbers): the provider asks the RA's registry
for the card of a validated certificate, signing with its service identity. A certificate whose
card number cannot be established (the RA knows no active card with it, the RA is down, the
provider is not a card-number reader there) gives no claim, never a guessed one; a refused token
asks nothing; answers are cached."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509

from ra.web import WebConfig, create_app
from sscard import httpsig
from sscard.idp.authtoken import NonceStore, TokenError, TokenValidator
from sscard.idp.card_numbers import RaCardNumbers
from sscard.x509.parse import load_certificate
from tests.cms.pki import make_ca, make_leaf
from tests.http.test_contract import Served
from tests.idp.login_pki import LoginPki, make_login_pki, make_token
from tests.ra import conftest as ra_fixtures
from tests.ra.enroll import new_enrollment
from tests.ra.rig import RaRig

ORIGIN = "https://idp.example"


#: the RA tests' fixture, one rig (CA, KMC, audit log, RA) per module, not a copy of it (an
#: assignment rather than an import, so that the tests' parameters named rig are no redefinition)
rig = ra_fixtures.rig


@pytest.fixture(scope="module")
def idp_identity(rig: RaRig) -> Any:
    """The provider's service certificate, registered at the RA as a signed API client."""
    identity = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    rig.ra.add_signing_client(None, "idp", identity.cert.dump())
    return identity


@pytest.fixture(scope="module")
def ra_url(rig: RaRig, idp_identity: Any) -> Iterator[str]:
    readers = frozenset({httpsig.decode_certificate(idp_identity.cert.dump()).identity.hex()})
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False,
                                       card_number_readers=readers))
    with Served(app) as url:
        yield url


def active_card(rig: RaRig) -> tuple[x509.Certificate, str]:
    pending, _key = new_enrollment(rig)
    done = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    rig.ra.confirm_personalised(rig.client, pending["request_id"])
    sign_cert = base64.b64decode(done["sign_cert"])  # what the station writes to the card
    return load_certificate(sign_cert), done["card"]["card_number"]


def lookups(rig: RaRig) -> int:
    return sum(1 for s in rig.ra.audit.records()
               if s.record.action == "ra.card.lookup" and s.record.outcome == "success")


def test_a_provider_that_is_no_card_number_reader_gets_no_claim(
        rig: RaRig, ra_url: str) -> None:
    cert, _number = active_card(rig)
    stranger = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    rig.ra.add_signing_client(None, "not-the-idp", stranger.cert.dump())
    cards = RaCardNumbers(ra_url, httpsig.RequestSigner(stranger.key, stranger.cert))
    assert cards(cert) is None


def test_the_ra_is_down_gives_no_claim_and_is_asked_again(rig: RaRig, idp_identity: Any,
                                                         tmp_path: Path) -> None:
    cert, _number = active_card(rig)
    cards = RaCardNumbers("http://127.0.0.1:9", httpsig.RequestSigner(idp_identity.key,
                                                                      idp_identity.cert),
                          timeout=2)
    assert cards(cert) is None
    assert not cards._cache  # an outage is not the registry's answer


def test_the_registrys_card_number_cached(rig: RaRig, ra_url: str, idp_identity: Any) -> None:
    cert, number = active_card(rig)
    now = [0.0]
    cards = RaCardNumbers(ra_url, httpsig.RequestSigner(idp_identity.key, idp_identity.cert),
                          cache_seconds=60, clock=lambda: now[0])
    before = lookups(rig)
    assert cards(cert) == number and cards(cert) == number
    assert lookups(rig) == before + 1  # the second from the cache
    now[0] = 61
    assert cards(cert) == number and lookups(rig) == before + 2
    unknown = make_leaf("CN=张三,serialNumber=x,C=CN", make_ca("CN=Other CA")).cert
    assert cards(unknown) is None  # no active card with this certificate: no guess


def test_another_cas_certificate_with_a_cards_serial_gets_no_claim(
        rig: RaRig, ra_url: str, idp_identity: Any) -> None:
    cert, number = active_card(rig)
    cards = RaCardNumbers(ra_url, httpsig.RequestSigner(idp_identity.key, idp_identity.cert))
    # a CA the provider may also trust (another issuing CA of the hierarchy) certifies another
    # holder under the serial of the card's certificate: not that card's certificate
    forged = make_leaf("CN=李四,serialNumber=x,C=CN",
                       make_ca("CN=测试社保CA2,O=某省人力资源和社会保障厅,C=CN"),
                       serial=cert.serial_number).cert
    assert cards(forged) is None  # asked first: not from the cache either
    assert cards(cert) == number
    assert cards(forged) is None  # the genuine answer, cached, is not the forged one's


@pytest.fixture(scope="module")
def pki() -> LoginPki:
    return make_login_pki()


def test_the_validator_gives_the_registrys_number_and_asks_only_after_every_check(
        pki: LoginPki, tmp_path: Path) -> None:
    asked: list[int] = []

    def registry(cert: x509.Certificate) -> str | None:
        asked.append(cert.serial_number)
        return "D63990001"

    nonces = NonceStore(f"sqlite:///{tmp_path / 'nonces.db'}")
    validator = TokenValidator(pki.trust(), nonces=nonces, card_numbers=registry)
    nonce = nonces.issue()
    signed = make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, nonce)
    assert validator.validate(signed, ORIGIN, nonce).card_number == "D63990001"
    assert asked == [pki.sign.cert.serial_number]
    with pytest.raises(TokenError):  # a replay: refused before the registry is asked
        validator.validate(signed, ORIGIN, nonce)
    other = nonces.issue()
    with pytest.raises(TokenError):  # the encryption certificate: refused, nothing asked
        validator.validate(make_token(pki.sign.key, pki.encrypt.cert.dump(), ORIGIN, other),
                           ORIGIN, other)
    assert len(asked) == 1
    unknown = TokenValidator(pki.trust(), nonces=nonces, card_numbers=lambda _c: None)
    third = nonces.issue()
    who = unknown.validate(make_token(pki.sign.key, pki.sign.cert.dump(), ORIGIN, third),
                           ORIGIN, third)
    assert who.card_number is None and who.ssn  # the holder, without a card number


def test_the_lookup_is_configured_whole_or_not_at_all(tmp_path: Path, pki: LoginPki) -> None:
    from sscard.idp.wsgi import IdpConfigError, load_settings
    from sscard.x509.pem import der_to_pem

    (tmp_path / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    base = 'issuer = "https://idp.example"\ntrust_anchors = ["root.pem"]\n'
    config = tmp_path / "idp.toml"
    config.write_text(base, encoding="utf-8")
    assert load_settings(config).card_number_lookup is None  # no lookup: no claim
    config.write_text(base + 'card_number_ra_url = "https://ra.example"\n', encoding="utf-8")
    with pytest.raises(IdpConfigError, match="needs all of"):
        load_settings(config)
    config.write_text(base + 'card_number_ra_url = "https://ra.example"\n'
                      'card_number_service_key = "k.pem"\n'
                      'card_number_service_key_passphrase_file = "k.pass"\n'
                      'card_number_service_certificate = "c.pem"\n', encoding="utf-8")
    with pytest.raises(IdpConfigError, match="no file"):
        load_settings(config)
