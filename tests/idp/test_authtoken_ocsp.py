"""Login token validation with revocation from the OCSP responder the card's certificate names
(the project's ca.ocsp responder over HTTP), answers cached: a second login with the same card
asks the responder nothing; a certificate only OCSP knows to be revoked is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sscard.cms.revocation import RevocationFetch
from sscard.cms.verify import TrustConfig
from sscard.gateway.config import CARDHOLDER_SIGN_POLICY
from sscard.idp.authtoken import NonceStore, TokenError, TokenValidator
from tests.cms.pki import NOW, Issued, make_crl
from tests.cms.revocation_http import Http, ocsp_chain, sources
from tests.idp.login_pki import holder, make_token

ORIGIN = "https://idp.example"


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    with Http() as server:
        yield server


@pytest.fixture(scope="module")
def chain(http: Http) -> tuple[Issued, Issued, dict[int, datetime]]:
    root, ca, revoked = ocsp_chain(http, "CN=Login OCSP Root,C=CN", "CN=Login OCSP CA,C=CN")
    http.crl = make_crl(ca).dump()  # the CRL knows nothing: only OCSP tells of revocations
    return root, ca, revoked


def card_holder(http: Http, ca: Issued) -> Issued:
    return holder(ca, extra=[("certificate_policies",
                              [{"policy_identifier": CARDHOLDER_SIGN_POLICY}], False),
                             *sources(http.url + "/ocsp", http.url + "/ca.crl")])


@pytest.fixture
def validator(chain, tmp_path: Path) -> TokenValidator:
    root, ca, _ = chain
    # what the provider configures: fetch from the publication points its CAs name
    trust = TrustConfig([root.cert], intermediates=[ca.cert], cache_seconds=60,
                        revocation_fetch=RevocationFetch.configure([root.cert, ca.cert]))
    return TokenValidator(trust, nonces=NonceStore(f"sqlite:///{tmp_path / 'n.db'}"))


def login(validator: TokenValidator, who: Issued) -> str:
    nonce = validator.nonces.issue()
    token = make_token(who.key, who.cert.dump(), ORIGIN, nonce)
    return validator.validate(token, ORIGIN, nonce).ssn


def test_ocsp_checked_once_then_cached(http: Http, chain, validator: TokenValidator) -> None:
    _root, ca, _revoked = chain
    card = card_holder(http, ca)
    before = http.ocsp_requests
    assert login(validator, card)
    asked = http.ocsp_requests - before
    assert asked >= 1
    assert login(validator, card)  # warm: the cached answer serves the next login
    assert http.ocsp_requests - before == asked


def test_certificate_revoked_at_the_responder_is_refused(http: Http, chain,
                                                         validator: TokenValidator) -> None:
    _root, ca, revoked = chain
    card = card_holder(http, ca)
    revoked[card.cert.serial_number] = NOW - timedelta(hours=1)
    with pytest.raises(TokenError) as exc:
        login(validator, card)
    assert exc.value.code == "CERTIFICATE_REVOKED"
