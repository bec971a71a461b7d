"""The provider on a free port with the emulated card in process, a browser (a ``requests``
session that keeps the provider's cookie) and a relying party built with Authlib's client.

The card login is the real one (``sscard.idp.authtoken``): nonces in a NonceStore in the
provider's database, and the TokenValidator checking the token the emulated card signs against
the test CA, with the CA's CRLs as revocation sources (no HTTP: test_login_e2e fetches OCSP)."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from asn1crypto import x509
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug.serving import make_server

from sscard.audit import AuditLog
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport
from sscard.cms.verify import TrustConfig
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from sscard.idp.authtoken import AuthToken, NonceStore, TokenValidator, signed_data
from sscard.idp.provider import Provider, ProviderConfig, create_app
from sscard.idp.store import IdpStore
from tests.cms.pki import make_crl, make_pki
from tests.gateway.card import PIN, personalise


@dataclass
class Card:
    key: CardKey
    cert: x509.Certificate
    card_number: str
    trust: TrustConfig
    """The card's CA as the provider trusts it."""

    def token(self, origin: str, nonce: str) -> dict[str, str]:
        """What the agent hands the page: the card signs SM3(origin) || SM3(nonce)."""
        signature = self.key.sign(signed_data("SM2-SM3", origin, nonce))
        return AuthToken(self.cert.dump(), "SM2-SM3", signature, origin).to_json()


def make_card() -> Card:
    data = sample_card(CardProfile(generation=3))
    card = EmulatedCard(data)
    psam = EmulatedPsam(make_test_psam())
    pki = make_pki("sm2")
    cert = personalise(InProcessTransport(card), InProcessTransport(psam), pki.ca)
    client = CardClient(InProcessTransport(card))
    client.connect()
    trust = TrustConfig(trust_anchors=[pki.root.cert], intermediates=[pki.ca.cert],
                        crls=[make_crl(pki.ca), make_crl(pki.root)])
    return Card(CardKey(client, lambda: PIN), cert, client.read_card_data().card_number, trust)


@dataclass
class Rig:
    url: str
    store: IdpStore
    provider: Provider
    card: Card

    def browser(self) -> requests.Session:
        return requests.Session()

    def login(self, browser: requests.Session, authorize_url: str,
              origin: str | None = None) -> requests.Response:
        """The browser follows the RP to /authorize, logs in with the card if it has no
        session, consents, and returns the provider's final redirect (not followed)."""
        answer = browser.get(authorize_url, allow_redirects=False)
        if answer.status_code == 302 and "/login?" in answer.headers["Location"]:
            login_page = urljoin(self.url, answer.headers["Location"])
            assert browser.get(login_page).status_code == 200
            nonce = browser.post(self.url + "/login/nonce").json()["nonce"]
            token = self.card.token(origin or self.provider.config.origin, nonce)
            done = browser.post(self.url + "/login/token", json=token)
            if done.status_code != 200:
                return done
            answer = browser.get(urljoin(self.url, done.json()["redirect"]),
                                 allow_redirects=False)
        if answer.status_code != 200:
            return answer
        csrf = re.search(r'name="csrf" value="([^"]+)"', answer.text)
        assert csrf, answer.text
        return browser.post(answer.url, data={"csrf": csrf.group(1), "decision": "allow"},
                            allow_redirects=False)


class RelyingParty:
    """A business system's web application: Authlib's OAuth2Session with PKCE, and the ID
    token verified with the provider's JWKS (joserfc, as Authlib's own clients do)."""

    def __init__(self, issuer: str, client_id: str, secret: str, redirect_uri: str,
                 scope: str = "openid profile") -> None:
        self.issuer, self.client_id, self.redirect_uri = issuer, client_id, redirect_uri
        self.meta = requests.get(issuer + "/.well-known/openid-configuration").json()
        self.session = OAuth2Session(client_id, secret, scope=scope,
                                     redirect_uri=redirect_uri,
                                     code_challenge_method="S256")
        self.verifier = secrets.token_urlsafe(48)
        self.nonce = secrets.token_urlsafe(16)
        self.state = ""

    def authorize_url(self) -> str:
        self.nonce = secrets.token_urlsafe(16)  # one per authorisation request
        url, self.state = self.session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce)
        return str(url)

    def code_of(self, redirect: str) -> str:
        query = parse_qs(urlsplit(redirect).query)
        assert query["state"] == [self.state]
        return query["code"][0]

    def fetch(self, redirect: str, verifier: str | None = "") -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if verifier is not None:
            kwargs["code_verifier"] = verifier or self.verifier
        return dict(self.session.fetch_token(self.meta["token_endpoint"],
                                             authorization_response=redirect, **kwargs))

    def verify(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        keys = KeySet.import_key_set(requests.get(self.meta["jwks_uri"]).json())
        decoded = jwt.decode(id_token, keys, algorithms=["ES256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            nonce={"essential": True, "value": nonce or self.nonce},
            exp={"essential": True}, sub={"essential": True}).validate(decoded.claims)
        return dict(decoded.claims)


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uri: str


def add_client(rig: Rig, name: str = "就业登记系统",
               redirect: str = "https://rp.example/callback",
               logout: str = "https://rp.example/bye",
               granted_scopes: frozenset[str] = frozenset()) -> Client:
    client, secret = rig.store.add_client(name, [redirect], [logout],
                                          granted_scopes=granted_scopes)
    return Client(client.client_id, secret, redirect)


def serve(db_url: str) -> Iterator[Rig]:
    card = make_card()
    store = IdpStore(db_url)
    audit = AuditLog.open(db_url.replace(".sqlite", "-audit.sqlite"))
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    nonces = NonceStore(db_url)  # in the provider's database, as sscard idp serve keeps it
    provider = Provider(ProviderConfig(issuer=url), store, nonces,
                        TokenValidator(card.trust, nonces=nonces), AuthToken.from_json,
                        audit=audit)
    server.app = create_app(provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Rig(url, store, provider, card)
    finally:
        server.shutdown()
        thread.join()
        audit.engine.dispose()


__all__ = ["RelyingParty", "Rig", "add_client", "create_s256_code_challenge", "serve"]
