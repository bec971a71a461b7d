"""Officers log in to the RA with their card through the OpenID Connect provider (``sscard
idp``), the same login business systems use (issue 15): the RA is a confidential client of the
provider, registered by its administrator with the scope ``sscard:cert`` granted.

Why through the provider rather than a form of its own: the card, the PIN prompt, the origin
binding, path validation and OCSP live in one audited place (the provider and the browser
agent), and the RA keeps only what is its own: which certificate belongs to which officer.

Authlib's Flask client does the protocol: discovery, the authorisation code flow with PKCE
(S256), ``state`` kept in the RA's server-side session (CSRF on the callback), and the ID token
verified with the provider's JWKS: signature, ``aud`` (this client), ``exp``, ``nonce``, and
``iss`` pinned to the configured issuer (not to whatever the discovery document says). The
claims that identify the officer are the certificate's ``x5t#S256`` and profile, released only
to clients granted ``sscard:cert``; ``RegistrationAuthority.authenticate_card`` maps them to an
account (never a name alone).

The configuration file (TOML, paths relative to it)::

    issuer = "https://idp.example.gov.cn"     # the provider, exactly as its ID tokens name it
    client_id = "..."                         # sscard idp client add --grant-scope sscard:cert
    client_secret_file = "ra-idp.secret"      # mode 0600; never on a command line
    ra_url = "https://ra.example.gov.cn"      # the RA as browsers reach it
    profiles = ["cardholder-sign", "ra-officer"]  # certificate profiles an officer may log in with
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from ra.errors import AuthenticationFailed
from sscard.secrets_input import SecretFileError, read_secret_file

SCOPE = "openid profile sscard:cert"
CALLBACK = "/login/card/callback"
#: the profiles an officer's card certificate may have, unless the file says otherwise
DEFAULT_PROFILES = frozenset({"cardholder-sign", "ra-officer"})


class CardLoginConfigError(ValueError):
    """The card-login file names something missing or wrong."""


@dataclass(frozen=True)
class CardLoginConfig:
    issuer: str
    client_id: str
    client_secret: str
    ra_url: str
    profiles: frozenset[str] = DEFAULT_PROFILES

    def __post_init__(self) -> None:
        for name, url in (("issuer", self.issuer), ("ra_url", self.ra_url)):
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.query \
                    or parts.fragment or url.endswith("/"):
                raise CardLoginConfigError(f"{name} {url!r}: an https URL without a trailing "
                                           "slash, query or fragment")
        if not self.client_id or not self.client_secret:
            raise CardLoginConfigError("client_id and the client secret are required")
        if not self.profiles:
            raise CardLoginConfigError("profiles: at least one certificate profile")

    @property
    def redirect_uri(self) -> str:
        return self.ra_url + CALLBACK

    @property
    def post_logout_redirect_uri(self) -> str:
        return self.ra_url + "/login"

    @property
    def issuer_origin(self) -> str:
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"


def load_config(path: Path) -> CardLoginConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CardLoginConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"issuer", "client_id", "client_secret_file", "ra_url", "profiles"}
    if unknown:
        raise CardLoginConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    missing = [k for k in ("issuer", "client_id", "client_secret_file", "ra_url")
               if not isinstance(data.get(k), str)]
    if missing:
        raise CardLoginConfigError(f"{path}: {', '.join(missing)} required")
    profiles = data.get("profiles", sorted(DEFAULT_PROFILES))
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise CardLoginConfigError(f"{path}: profiles is a list of profile names")
    try:
        secret = read_secret_file(path.parent / data["client_secret_file"],
                                  "client secret").decode().strip()
    except (OSError, ValueError, SecretFileError) as exc:
        raise CardLoginConfigError(f"{path}: the client secret: {exc}") from None
    try:
        return CardLoginConfig(data["issuer"], data["client_id"], secret, data["ra_url"],
                               frozenset(profiles))
    except CardLoginConfigError as exc:
        raise CardLoginConfigError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class CardClaims:
    """What the RA takes from a verified ID token to find the officer."""

    fingerprint: str
    """``x5t#S256``: base64url SHA-256 of the authentication certificate's DER."""
    profile: str
    issuer: str
    ssn: str

    @classmethod
    def from_id_token(cls, claims: dict[str, Any]) -> CardClaims:
        values = {k: claims.get(k) for k in ("x5t#S256", "sscard:cert_profile",
                                              "sscard:cert_issuer", "sscard:ssn")}
        missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
        if missing:
            # a client not granted sscard:cert gets none of them: nothing to map an officer by
            raise AuthenticationFailed(f"the ID token lacks {', '.join(missing)} (is the RA "
                                       "granted the scope sscard:cert at the provider?)",
                                       "card_login_refused")
        return cls(*(str(v) for v in values.values()))


class CardLogin:
    """The RA app's client of the provider (one per Flask app)."""

    def __init__(self, app: Flask, config: CardLoginConfig) -> None:
        from authlib.integrations.flask_client import OAuth

        self.config = config
        oauth = OAuth(app)
        self.client: Any = oauth.register(
            "sscard", client_id=config.client_id, client_secret=config.client_secret,
            server_metadata_url=config.issuer + "/.well-known/openid-configuration",
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256",
                           "token_endpoint_auth_method": "client_secret_basic"})

    def start(self) -> Any:
        """The redirect to the provider: state, nonce and the PKCE verifier stay in the
        RA's session."""
        return self.client.authorize_redirect(self.config.redirect_uri)

    def finish(self) -> tuple[CardClaims, str]:
        """The callback: (the officer's claims, the ID token for logout). Anything wrong
        (state, code, token, claims) is AuthenticationFailed, with Authlib's reason."""
        from authlib.common.errors import AuthlibBaseError
        from joserfc.errors import JoseError

        try:
            token = self.client.authorize_access_token(claims_options=self._pinned())
        except (AuthlibBaseError, JoseError, ValueError) as exc:
            raise AuthenticationFailed(f"card login refused: {exc}",
                                       "card_login_refused") from None
        userinfo = token.get("userinfo")
        if not userinfo:
            raise AuthenticationFailed("card login refused: no ID token",
                                       "card_login_refused")
        return CardClaims.from_id_token(dict(userinfo)), str(token["id_token"])

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """An ID token checked as ``finish`` checks it (tests hand in tokens made for other
        clients or by other providers)."""
        from authlib.common.errors import AuthlibBaseError
        from joserfc.errors import JoseError

        try:
            return dict(self.client.parse_id_token(
                {"id_token": id_token, "access_token": ""}, nonce=nonce,
                claims_options=self._pinned()))
        except (AuthlibBaseError, JoseError, ValueError) as exc:
            raise AuthenticationFailed(f"card login refused: {exc}",
                                       "card_login_refused") from None

    def _pinned(self) -> dict[str, Any]:
        # iss pinned to the configured provider, aud to this client (Authlib alone would take
        # a token for another audience that names this client as azp); exp and nonce as
        # Authlib checks them
        return {"iss": {"essential": True, "values": [self.config.issuer]},
                "aud": {"essential": True, "values": [self.config.client_id]}}

    def logout_url(self, id_token: str | None) -> str | None:
        """The provider's RP-initiated logout, back to the RA's log-in page afterwards; None
        when the provider's metadata cannot be read now (the RA's own session is over anyway,
        and the provider's ends with its lifetime)."""
        import requests

        try:
            result = self.client.create_logout_url(
                post_logout_redirect_uri=self.config.post_logout_redirect_uri,
                id_token_hint=id_token, client_id=self.config.client_id)
        except (requests.RequestException, RuntimeError, ValueError):
            return None
        return str(result["url"])
