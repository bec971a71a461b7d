"""The provider on a free port with the emulated card in process, a browser (a ``requests``
session that keeps the provider's cookie) and a relying party built with Authlib's client.

Part A's ``sscard.idp.authtoken`` (token parsing, NonceStore, TokenValidator with path and
revocation checks) is not on this branch yet: ``ContractValidator`` below follows the agreed
contract (origin, one-time nonce, the card's SM2 signature over SM3(origin) || SM3(nonce), the
holder's name and social security number from the certificate) so the provider is tested end
to end with a token the emulated card really signs. When authtoken.py lands, ``make_rig`` takes
the real classes (see ``_token_classes``)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from sscard.cms.identity import identify
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.hashes import sm3
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from sscard.idp.provider import Provider, ProviderConfig, create_app
from sscard.idp.store import IdpStore
from tests.cms.pki import make_pki
from tests.gateway.card import PIN, personalise


class StandInTokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class StandInToken:
    certificate: bytes
    algorithm: str
    signature: bytes
    origin: str

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> StandInToken:
        try:
            if data["format"] != "sscard-auth-token:1" or data["algorithm"] != "SM2-SM3":
                raise StandInTokenError("FORMAT", "not an sscard-auth-token:1 SM2-SM3 token")
            return cls(base64.b64decode(str(data["certificate"]), validate=True),
                       str(data["algorithm"]),
                       base64.b64decode(str(data["signature"]), validate=True),
                       str(data["origin"]))
        except (KeyError, ValueError) as exc:
            raise StandInTokenError("MALFORMED", f"malformed token: {exc}") from None


@dataclass(frozen=True)
class Holder:
    name: str
    ssn: str
    card_number: str | None
    certificate_sha256: str
    certificate_der: bytes


class StandInNonces:
    def __init__(self) -> None:
        self.issued: dict[str, tuple[datetime, bool]] = {}
        self.lock = threading.Lock()

    def issue(self, seconds: int = 300) -> str:
        nonce = secrets.token_urlsafe(32)
        with self.lock:
            self.issued[nonce] = (datetime.now(UTC) + timedelta(seconds=seconds), False)
        return nonce

    def consume(self, nonce: str) -> None:
        with self.lock:
            found = self.issued.get(nonce)
            if found is None:
                raise StandInTokenError("NONCE_UNKNOWN", "unknown nonce")
            if found[1]:
                raise StandInTokenError("NONCE_USED", "nonce already used")
            self.issued[nonce] = (found[0], True)
        if found[0] < datetime.now(UTC):
            raise StandInTokenError("NONCE_EXPIRED", "nonce expired")


class ContractValidator:
    def __init__(self, nonces: StandInNonces, card_number: str | None) -> None:
        self.nonces, self.card_number = nonces, card_number

    def validate(self, token: StandInToken, expected_origin: str, nonce: str) -> Holder:
        if token.origin != expected_origin:
            raise StandInTokenError("ORIGIN_MISMATCH", f"token made for {token.origin}")
        self.nonces.consume(nonce)
        cert = x509.Certificate.load(token.certificate)
        try:
            PublicKey.from_spki(cert.public_key.dump()).verify(
                token.signature, sm3(token.origin.encode()) + sm3(nonce.encode()))
        except Exception:
            raise StandInTokenError("BAD_SIGNATURE", "signature does not verify") from None
        who = identify(cert)
        assert who.common_name and who.social_insurance_number
        return Holder(who.common_name, who.social_insurance_number, self.card_number,
                      hashlib.sha256(token.certificate).hexdigest(), token.certificate)


@dataclass
class Card:
    key: CardKey
    cert: x509.Certificate
    card_number: str

    def token(self, origin: str, nonce: str) -> dict[str, str]:
        """What the agent hands the page: the card signs SM3(origin) || SM3(nonce)."""
        signature = self.key.sign(sm3(origin.encode()) + sm3(nonce.encode()))
        return {"format": "sscard-auth-token:1",
                "certificate": base64.b64encode(self.cert.dump()).decode(),
                "algorithm": "SM2-SM3", "signature": base64.b64encode(signature).decode(),
                "origin": origin}


def make_card() -> Card:
    data = sample_card(CardProfile(generation=3))
    card = EmulatedCard(data)
    psam = EmulatedPsam(make_test_psam())
    cert = personalise(InProcessTransport(card), InProcessTransport(psam), make_pki("sm2").ca)
    client = CardClient(InProcessTransport(card))
    client.connect()
    return Card(CardKey(client, lambda: PIN), cert, client.read_card_data().card_number)


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

    def __init__(self, issuer: str, client_id: str, secret: str, redirect_uri: str) -> None:
        self.issuer, self.client_id, self.redirect_uri = issuer, client_id, redirect_uri
        self.meta = requests.get(issuer + "/.well-known/openid-configuration").json()
        self.session = OAuth2Session(client_id, secret, scope="openid profile",
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
               logout: str = "https://rp.example/bye") -> Client:
    client, secret = rig.store.add_client(name, [redirect], [logout])
    return Client(client.client_id, secret, redirect)


def serve(db_url: str) -> Iterator[Rig]:
    card = make_card()
    store = IdpStore(db_url)
    audit = AuditLog.open(db_url.replace(".sqlite", "-audit.sqlite"))
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    nonces = StandInNonces()
    provider = Provider(ProviderConfig(issuer=url), store, nonces,
                        ContractValidator(nonces, card.card_number), StandInToken.from_json,
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
