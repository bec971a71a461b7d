"""The OpenID Connect provider: business systems' web applications let cardholders log in with
the social security card (DESIGN.md flow 3, the Web eID model with SM2).

Authlib's authorisation server does the protocol: the authorisation code flow with PKCE (S256
only, required of every client), ID tokens (``authlib.oidc.core``), RP-initiated logout
(``authlib.oidc.rpinitiated``). This module supplies what is ours:

- the login: the page gets a one-time nonce (part A's ``NonceStore``), the browser agent has the
  card sign the page's origin and the nonce after the PIN, and ``TokenValidator`` checks the
  token against this provider's own origin and returns the cardholder;
- the claims: a pairwise ``sub`` per client (HMAC-SHA256 of the social security number under a
  provider secret and the client's sector, so two business systems cannot join their users by
  ``sub``), ``name``, ``sscard:ssn``, ``sscard:card_number``, ``acr`` (card + PIN), ``amr``
  ``["hwk", "pin"]``; and, only for a client granted the scope ``sscard:cert``, the
  authentication certificate's ``x5t#S256``, profile and issuer (``certificate_claims``: what a
  relying party such as the RA maps to an account by fingerprint and profile);
- the signing keys: ES256 (P-256), rotated by ``sscard idp keys rotate``; a retired key stays in
  the JWKS for ``key_retention`` so tokens it signed still verify at the relying parties (and as
  ``id_token_hint`` at logout).

The session at the provider lives in the database; the browser's cookie (Flask's signed
cookie, key shared by the workers through the database; HttpOnly, SameSite=Lax, Secure
whenever the issuer is https) carries only its id, so it holds no personal data and logout
ends it for every copy of the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.errors import ConsentRequiredError
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, Response, jsonify, redirect, render_template, request, session
from joserfc.jwk import ECKey, KeySet

from sscard import httpops, problem
from sscard.audit.actions import AuditAction
from sscard.crypto.asymmetric import PrivateKey
from sscard.gateway.audit import MemoryRecorder, Recorder
from sscard.gateway.config import CARDHOLDER_SIGN_POLICY
from sscard.gateway.profiles import policies_of
from sscard.idp import sm2jws
from sscard.idp.store import ACR_CARD_PIN, CERT_SCOPE, AuthorizationCode, Client, IdpStore
from sscard.metrics import IDP_LOGINS

HERE = Path(__file__).parent
ALG = "ES256"
CODE_SECONDS = 60


class Cardholder(Protocol):
    """What ``TokenValidator.validate`` returns (part A's ``CardholderIdentity``)."""

    @property
    def name(self) -> str: ...
    @property
    def ssn(self) -> str: ...
    @property
    def card_number(self) -> str | None: ...
    @property
    def certificate_sha256(self) -> str: ...
    @property
    def certificate_der(self) -> bytes: ...


class Nonces(Protocol):
    def issue(self, seconds: int = 300) -> str: ...


class Validator(Protocol):
    def validate(self, token: Any, expected_origin: str, nonce: str) -> Cardholder: ...


class LoginError(Exception):
    """A login refused: ``code`` is stable (the token's TokenError codes pass through)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class ProviderConfig:
    issuer: str  # e.g. https://idp.example.gov.cn (no trailing slash, no query)
    #: the browser agent the login page talks to
    agent_url: str = "http://127.0.0.1:24727"
    id_token_seconds: int = 600
    #: how long a retired signing key stays in the JWKS (>= the relying parties' sessions)
    key_retention: timedelta = timedelta(days=1)
    session_seconds: int = 8 * 3600
    nonce_seconds: int = 300
    #: the certificate profiles a login may use, name -> policy OID (the cardholder CA's
    #: signing certificates by default; add the staff CA's officer profile for staff logins)
    login_profiles: Mapping[str, str] = field(
        default_factory=lambda: {"cardholder-sign": CARDHOLDER_SIGN_POLICY})
    #: profiles only some of the trusted CAs may issue, name -> those CAs' subject names (the
    #: staff profile from the staff CA alone: the cardholder CA cannot mint a staff login)
    profile_issuers: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query \
                or parts.fragment or self.issuer.endswith("/"):
            raise ValueError(f"issuer {self.issuer!r}: an https URL without a trailing slash, "
                             "query or fragment")

    @property
    def origin(self) -> str:
        """The origin of the login page: what the card signs and the validator expects."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"


def pairwise_sub(secret: bytes, sector: str, ssn: str) -> str:
    """The subject a client sees: the same cardholder gets a different ``sub`` in each
    sector and the same one on every login (OIDC Core §8.1)."""
    mac = hmac.new(secret, sector.encode() + b"\x00" + ssn.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


# -- the certificate claim (scope sscard:cert) ------------------------------------------------


def certificate_claims(der: bytes, profiles: Mapping[str, str],
                       issuers: Mapping[str, tuple[Any, ...]] | None = None) -> dict[str, str]:
    """What identifies the authentication certificate to a client granted ``sscard:cert``:
    ``x5t#S256`` (base64url SHA-256 of the DER, as RFC 7515 names it), the profile it was
    accepted under (by its policy OID, never by a name in the subject) and its issuer. A
    profile bound to some CAs (``issuers``) from any other CA is a LoginError."""
    from asn1crypto import x509

    from sscard.x509.names import format_name

    cert = x509.Certificate.load(der)
    have = policies_of(cert)
    profile = next((name for name, oid in profiles.items() if oid in have), "")
    allowed = (issuers or {}).get(profile)
    if allowed and cert.issuer not in allowed:
        raise LoginError("WRONG_CERTIFICATE", f"a {profile} certificate from "
                         f"{format_name(cert.issuer)}, which may not issue that profile", 401)
    return {"x5t#S256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(
                b"=").decode(),
            "sscard:cert_profile": profile, "sscard:cert_issuer": format_name(cert.issuer)}


# -- signing keys ----------------------------------------------------------------------------


def new_signing_key(store: IdpStore, alg: str = ALG) -> str:
    """Generate a key of ``alg`` (ES256: P-256; SM2-SM3: SM2), make it the current one of its
    algorithm (the previous one is retired, still published); returns its kid."""
    kid = secrets.token_urlsafe(12)
    if alg == sm2jws.ALG:
        sm2_key = PrivateKey.generate("sm2")
        store.add_key(kid, alg, {"pkcs8": base64.b64encode(sm2_key.pkcs8_der()).decode()})
        return kid
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"},
                             private=True)
    store.add_key(kid, ALG, key.as_dict(private=True))
    return kid


class SigningKeys:
    """The current key and the published set, read from the shared database (a rotation by
    the CLI reaches every worker without a restart)."""

    def __init__(self, store: IdpStore, retention: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self.store, self.retention, self.clock = store, retention, clock

    def _live(self, alg: str) -> list[dict[str, Any]]:
        cutoff = self.clock() - self.retention
        return [k for k in self.store.keys() if k["alg"] == alg
                and (k["retired_at"] is None or k["retired_at"] > cutoff)]

    def _current_row(self, alg: str) -> dict[str, Any]:
        live = [k for k in self.store.keys() if k["alg"] == alg and k["retired_at"] is None]
        if not live:
            new_signing_key(self.store, alg)
            return self._current_row(alg)
        return live[0]

    def current(self) -> ECKey:
        return ECKey.import_key(self._current_row(ALG)["private_jwk"])

    def current_sm2(self) -> tuple[str, PrivateKey]:
        row = self._current_row(sm2jws.ALG)
        return row["kid"], PrivateKey.from_pkcs8(base64.b64decode(row["private_jwk"]["pkcs8"]))

    def published(self) -> KeySet:
        keys = [ECKey.import_key(k["private_jwk"]) for k in self._live(ALG)]
        return KeySet(keys)  # type: ignore[arg-type]

    def sm2_jwks(self) -> dict[str, Any]:
        return {"keys": [sm2jws.public_jwk(PrivateKey.from_pkcs8(base64.b64decode(
            k["private_jwk"]["pkcs8"])).public_key(), k["kid"]) for k in self._live(sm2jws.ALG)]}

    def jwks(self) -> dict[str, Any]:
        return dict(self.published().as_dict(private=False))


# -- authlib's hooks ---------------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256, required on every authorisation request (``plain`` would hand the
    verifier to whoever reads the front channel)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: 'code_challenge' is missing")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE: 'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def _make_grant(provider: Provider) -> type:
    store, clock = provider.store, provider.clock

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            # the pairwise subject is fixed here, where the client (its sector) is known
            user = {**req.user, "sub": pairwise_sub(provider.sub_secret, req.client.sector,
                                                    req.user["ssn"])}
            store.save_code(AuthorizationCode(
                code=code, client_id=req.client.client_id,
                # the resolved scope: what the client asked for AND was granted (a scope it
                # was not granted, sscard:cert say, is dropped here, before any claim is made)
                redirect_uri=req.payload.redirect_uri, scope=req.scope,
                nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=user["auth_time"], holder=user,
                expires_at=clock() + timedelta(seconds=CODE_SECONDS)))

        def query_authorization_code(self, code: str, client: Client) -> Any:
            # claimed here, once, whatever follows (a wrong verifier burns the code too)
            return store.take_code(code, client.client_id)

        def delete_authorization_code(self, authorization_code: Any) -> None:
            pass  # already claimed by query_authorization_code

        def authenticate_user(self, authorization_code: Any) -> Any:
            return authorization_code.holder

    return CodeGrant


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        return self.provider.store.nonce_used(req.payload.client_id, nonce)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.provider.keys.current()

    def get_client_algorithm(self, client: Client) -> str:
        return ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = self.provider.keys.current()
        return {"alg": ALG, "kid": str(key.kid), "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.provider.config.issuer, "aud": client.client_id, "iat": now,
                "exp": now + self.provider.config.id_token_seconds}

    def generate_user_info(self, user: Mapping[str, Any], scope: str) -> UserInfo:
        return self.provider.claims(user, scope)

    def encode_id_token(self, token: Any, req: Any) -> Any:
        if req.client.id_token_alg != sm2jws.ALG:
            return super().encode_id_token(token, req)
        # the opt-in: the same claims, signed with SM2 (no at_hash: JOSE defines none for it,
        # and the code flow does not require one)
        claims = dict(self.get_compatible_claims(req))
        claims.update(self.get_authorization_code_claims(req.authorization_code))
        claims.update(self.generate_user_info(req.user, token["scope"]))
        kid, key = self.provider.keys.current_sm2()
        return sm2jws.encode(claims, key, kid)


class _Issuer(IssuerParameter):
    """RFC 9207: ``iss`` in every authorisation response, so a relying party that talks to
    several providers can tell which one answered (the mix-up attack)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class _EndSession(EndSessionEndpoint):
    def __init__(self, provider: Provider) -> None:
        super().__init__()
        self.provider = provider

    def get_server_jwks(self) -> KeySet:
        return self.provider.keys.published()

    def get_algorithms(self) -> list[str]:
        return [ALG]

    def end_session(self, end_session_request: Any) -> None:
        # the server-side session ends: a copy of the cookie is worth nothing from now on
        sid = session.get("sid")
        if sid:
            self.provider.store.close_session(sid)
        session.clear()


# -- the provider ----------------------------------------------------------------------------


class Provider:
    def __init__(self, config: ProviderConfig, store: IdpStore, nonces: Nonces,
                 validator: Validator, token_parser: Callable[[Mapping[str, object]], Any],
                 clock: Callable[[], datetime] | None = None,
                 audit: Recorder | None = None) -> None:
        self.config, self.store = config, store
        #: the audit log (``sscard.audit.AuditLog``): logins, codes, tokens, logouts
        self.audit: Recorder = audit if audit is not None else MemoryRecorder()
        self.nonces, self.validator, self.token_parser = nonces, validator, token_parser
        self.clock = clock or (lambda: datetime.now(UTC))
        self.keys = SigningKeys(store, config.key_retention, self.clock)
        self.sub_secret = base64.b64decode(
            store.setting("pairwise_secret", lambda: base64.b64encode(
                secrets.token_bytes(32)).decode()))

    def claims(self, holder: Mapping[str, Any], scope: str = "") -> UserInfo:
        info = {"sub": holder["sub"],
                "name": holder["name"], "sscard:ssn": holder["ssn"],
                "acr": ACR_CARD_PIN, "amr": ["hwk", "pin"]}
        if holder.get("card_number"):
            info["sscard:card_number"] = holder["card_number"]
        if CERT_SCOPE in scope.split() and holder.get("certificate"):
            info.update(holder["certificate"])
        return UserInfo(info)

    def discovery(self) -> dict[str, Any]:
        iss = self.config.issuer
        return {
            "issuer": iss,
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "jwks_uri": f"{iss}/jwks.json",
            # the SM2 opt-in's keys, apart so that the standard set stays readable by all
            "sscard_sm2_jwks_uri": f"{iss}/jwks-sm2.json",
            "end_session_endpoint": f"{iss}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [ALG],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "scopes_supported": ["openid", "profile", CERT_SCOPE],
            "claims_supported": ["sub", "name", "sscard:ssn", "sscard:card_number", "acr",
                                 "amr", "auth_time", "nonce", "iss", "aud", "exp", "iat",
                                 "x5t#S256", "sscard:cert_profile", "sscard:cert_issuer"],
            "acr_values_supported": [ACR_CARD_PIN],
            "ui_locales_supported": ["zh-CN"],
        }


_PROBLEMS = problem.ProblemTable({
    LoginError: lambda e: problem.Problem(e.status, e.code, e.message),  # type: ignore
})


def create_app(provider: Provider) -> Flask:
    config = provider.config
    app = Flask(__name__, static_folder=str(HERE / "static"), static_url_path="/static",
                template_folder=str(HERE / "templates"))
    app.secret_key = provider.store.setting(
        "session_key", lambda: secrets.token_urlsafe(48))
    app.config.update(
        SESSION_COOKIE_NAME="sscard_idp", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=config.issuer.startswith("https"),
        PERMANENT_SESSION_LIFETIME=config.session_seconds, MAX_CONTENT_LENGTH=64 * 1024,
        OAUTH2_TOKEN_EXPIRES_IN={"authorization_code": config.id_token_seconds})
    provider.keys.current()  # the first start makes the first signing key
    server = AuthorizationServer(app, query_client=provider.store.client,
                                 save_token=lambda token, req: None)
    server.register_grant(_make_grant(provider),
                          [S256CodeChallenge(required=True), _OpenIDCode(provider)])
    server.register_endpoint(_EndSession(provider))
    server.register_extension(_Issuer(config.issuer))
    app.extensions["idp_audit"] = provider.audit
    _PROBLEMS.install(app)
    httpops.install(app, "idp", {"database": lambda: provider.store.keys() is not None})

    @app.after_request
    def protect(answer: Response) -> Response:
        # the consent and login pages must not be framed (a hidden consent click), the code in
        # a URL must not leak through Referer, and nothing here is for a shared cache
        answer.headers.setdefault("X-Frame-Options", "DENY")
        answer.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        answer.headers.setdefault("Referrer-Policy", "no-referrer")
        answer.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.path.startswith("/jwks") and not request.path.startswith("/static/"):
            answer.headers["Cache-Control"] = "no-store"
        return answer

    def oauth_problem(error: OAuth2Error) -> Response:
        return problem.response(problem.Problem(
            error.status_code or 400, error.error,
            error.description or error.error.replace("_", " ")))

    def holder() -> dict[str, Any] | None:
        # the cookie holds only the session id; who is logged in stays in the database
        sid = session.get("sid")
        return provider.store.session_holder(sid) if isinstance(sid, str) else None

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return str(session["csrf"])

    def check_csrf() -> None:
        given = request.form.get("csrf", "")
        if not given or not hmac.compare_digest(given, session.get("csrf", "")):
            raise LoginError("csrf", "the form is stale or not ours; start the login again",
                             403)

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(provider.discovery())

    @app.get("/jwks.json")
    def jwks() -> Response:
        answer = jsonify(provider.keys.jwks())
        answer.headers["Cache-Control"] = "public, max-age=300"
        return answer

    @app.get("/jwks-sm2.json")
    def jwks_sm2() -> Response:
        answer = jsonify(provider.keys.sm2_jwks())
        answer.headers["Cache-Control"] = "public, max-age=300"
        return answer

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        user = holder()
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            if getattr(error, "redirect_uri", None):  # set only once the URI was checked
                return server.handle_error_response(None, error)
            return oauth_problem(error)
        if user is None:
            return redirect("/login?" + urlencode({"next": request.full_path}))
        if "none" in (grant.request.payload.data.get("prompt") or "").split():
            # no page may be shown, and consent is asked on every authorisation
            refusal = ConsentRequiredError(redirect_uri=grant.redirect_uri)
            refusal.state = grant.request.payload.state
            return server.handle_error_response(None, refusal)
        if request.method == "GET":
            return render_template("consent.html", client=grant.client, holder=user,
                                   csrf=csrf_token())
        check_csrf()
        allowed = request.form.get("decision") == "allow"
        with provider.audit.operation("cert:" + user["certificate_sha256"],
                                      AuditAction.IDP_AUTHORIZE, grant.client.client_id) as op:
            if not allowed:
                op.deny("the cardholder declined")
            return server.create_authorization_response(
                grant_user=user if allowed else None, grant=grant)

    @app.post("/token")
    def token() -> Any:
        client_id = request.authorization.username if request.authorization else None
        with provider.audit.operation("client:" + str(client_id or request.form.get(
                "client_id") or "-"), AuditAction.IDP_CODE_EXCHANGE, "token") as op:
            answer = server.create_token_response()
            if answer.status_code != 200:
                op.deny(str((answer.get_json(silent=True) or {}).get("error", "refused")))
            return answer

    @app.get("/login")
    def login() -> Any:
        target = request.args.get("next", "")
        if not target.startswith("/authorize?"):
            raise LoginError("bad_next", "a login starts from a business system's "
                             "authorisation request")
        session["next"] = target
        return render_template("login.html", agent_url=config.agent_url, csrf=csrf_token())

    @app.post("/login/nonce")
    def login_nonce() -> Response:
        # bound to this browser's session: a token made for another session's nonce (login
        # CSRF: logging the victim in as someone else) is refused
        nonce = provider.nonces.issue(config.nonce_seconds)
        session["login_nonce"] = nonce
        return jsonify({"nonce": nonce})

    @app.post("/login/token")
    def login_token() -> Response:
        nonce = session.pop("login_nonce", None)
        if not nonce:
            raise LoginError("NONCE_UNKNOWN", "no login started in this browser; reload the "
                             "page")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise LoginError("MALFORMED", "the body is not a JSON object")
        refused: LoginError | None = None
        with provider.audit.operation("browser:" + (request.remote_addr or "-"),
                                      AuditAction.IDP_LOGIN, config.origin) as op:
            try:
                token = provider.token_parser(body)
                who = provider.validator.validate(token, config.origin, nonce)
                certificate = certificate_claims(who.certificate_der, config.login_profiles,
                                                 config.profile_issuers)
            except Exception as exc:
                code = getattr(exc, "code", None)
                if not isinstance(code, str):
                    raise
                refused = LoginError(code, getattr(exc, "message", None) or str(exc), 401)
                op.deny(code)
                IDP_LOGINS.labels(code).inc()
            else:
                op.set(certificate_sha256=who.certificate_sha256, ssn=who.ssn)
                IDP_LOGINS.labels("success").inc()
        if refused is not None:
            raise refused
        target = session.get("next") or "/"
        session.clear()  # a fresh session: nothing from before the login survives it
        session["sid"] = provider.store.open_session(
            {"name": who.name, "ssn": who.ssn, "card_number": who.card_number,
             "certificate_sha256": who.certificate_sha256, "auth_time": int(time.time()),
             "certificate": certificate},
            config.session_seconds)
        session.permanent = True
        return jsonify({"redirect": target})

    @app.route("/logout", methods=["GET", "POST"])
    def logout() -> Any:
        try:
            req = server.validate_endpoint_request("end_session")
        except OAuth2Error as error:
            return oauth_problem(error)
        if req.needs_confirmation and request.method == "GET":
            return render_template("logout_confirm.html", csrf=csrf_token(),
                                   params=request.args)
        if req.needs_confirmation:
            check_csrf()
        who = holder()
        with provider.audit.operation(
                "cert:" + who["certificate_sha256"] if who else "browser:-",
                AuditAction.IDP_LOGOUT, req.client.client_id if req.client else "-"):
            answer = server.create_endpoint_response("end_session", req)
        return answer or render_template("logged_out.html")

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return problem.response(problem.Problem(404, "not_found", f"no {request.path} here"))

    return app
