"""The identity provider's database: registered clients, authorisation codes, ID-token signing
keys and the provider's own secrets, shared by every worker (SQLite file or PostgreSQL through
``sscard.sqlschema``).

The database holds the ID-token signing keys and the pairwise-subject secret: protect it as a
key file (owner-only SQLite file, a PostgreSQL role of its own). Client secrets are kept only as
SHA-256 digests (they are 32 random bytes, so a slow hash adds nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from sscard.sqlschema import UTCDateTime, create_all_concurrently, make_engine

_metadata = sa.MetaData()
_clients = sa.Table(
    "idp_clients", _metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("redirect_uris", sa.Text, nullable=False),  # JSON list
    sa.Column("post_logout_redirect_uris", sa.Text, nullable=False),  # JSON list
    sa.Column("sector", sa.String(255), nullable=False),
    sa.Column("id_token_alg", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
_client_scopes = sa.Table(
    # scopes beyond openid/profile an administrator granted a client (a table of its own: a
    # database made before grants existed gains it through create_all, no migration)
    "idp_client_scopes", _metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(64), primary_key=True),
)
_codes = sa.Table(
    "idp_codes", _metadata,
    sa.Column("code", sa.String(128), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("nonce", sa.String(255)),
    sa.Column("code_challenge", sa.String(128)),
    sa.Column("code_challenge_method", sa.String(16)),
    sa.Column("auth_time", sa.Integer, nullable=False),
    sa.Column("holder", sa.Text, nullable=False),  # JSON: the authenticated cardholder
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)
_keys = sa.Table(
    "idp_keys", _metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("private_jwk", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("retired_at", UTCDateTime()),
)
_sessions = sa.Table(
    "idp_sessions", _metadata,
    # the SHA-256 of the session id: a copy of the database gives no usable cookie
    sa.Column("sid_sha256", sa.String(64), primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),  # JSON: the authenticated cardholder
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)
_settings = sa.Table(
    "idp_settings", _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


#: the scope that releases the authentication certificate's identification (``x5t#S256``,
#: profile, issuer): only to clients an administrator granted it, never by default
CERT_SCOPE = "sscard:cert"
#: scopes every client may ask for, and those an administrator may grant on top
DEFAULT_SCOPES = frozenset({"openid", "profile"})
GRANTABLE_SCOPES = frozenset({CERT_SCOPE})

#: ID-token signature algorithms a client may be registered with; the first is the default
ID_TOKEN_ALGS = ("ES256", "SM2-SM3")
DEFAULT_ALG = ID_TOKEN_ALGS[0]


class StoreError(ValueError):
    """Bad registration input or an unknown client or key; changes nothing."""


@dataclass(frozen=True)
class Client:
    """A registered business system (relying party). Implements authlib's ``ClientMixin``."""

    client_id: str
    name: str
    secret_sha256: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    sector: str
    client_metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    #: ES256, or SM2-SM3 for a business system that verifies with sscard.idp.sm2jws
    id_token_alg: str = DEFAULT_ALG
    #: scopes granted beyond DEFAULT_SCOPES (sscard idp client add --grant-scope)
    granted_scopes: frozenset[str] = frozenset()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # a redirect_uri is always required: never guess where the code goes

    def get_allowed_scope(self, scope: str) -> str:
        # a scope not granted is dropped, not refused: the login goes on without its claims
        allowed = DEFAULT_SCOPES | self.granted_scopes
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, as OAuth 2.1 asks

    def check_client_secret(self, client_secret: str) -> bool:
        given = hashlib.sha256(client_secret.encode()).hexdigest()
        return hmac.compare_digest(given, self.secret_sha256)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(frozen=True)
class AuthorizationCode:
    """An issued code; implements authlib's ``AuthorizationCodeMixin`` (and the OIDC getters)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    holder: dict[str, Any]
    expires_at: datetime

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return ACR_CARD_PIN

    def get_amr(self) -> list[str]:
        return ["hwk", "pin"]


#: the authentication context: the social security card (a hardware key) unlocked by its PIN
ACR_CARD_PIN = "urn:sscard:acr:card-pin"


def _uris(values: list[str] | tuple[str, ...], what: str, allow_http_loopback: bool = True
          ) -> list[str]:
    out = []
    for uri in values:
        parts = urlsplit(uri)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
            raise StoreError(f"{what} {uri!r}: an absolute https URL without a fragment")
        if parts.scheme == "http" and not (allow_http_loopback and loopback):
            raise StoreError(f"{what} {uri!r}: https is required (http only on loopback)")
        out.append(uri)
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _private_sqlite_file(url: str) -> None:
    """An SQLite file is created owner-only before SQLite opens it (it will hold the signing
    keys; SQLite gives its WAL and journal files the database file's mode)."""
    import os

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        os.close(os.open(str(parsed.database), os.O_WRONLY | os.O_CREAT, 0o600))


class IdpStore:
    """The provider's tables on one engine shared by every worker."""

    def __init__(self, url: str, clock: Any = None) -> None:
        _private_sqlite_file(url)
        self.engine = make_engine(url)
        self.clock = clock or (lambda: datetime.now(UTC))
        create_all_concurrently(_metadata, self.engine)

    # -- clients -----------------------------------------------------------------------------

    def add_client(self, name: str, redirect_uris: list[str],
                   post_logout_redirect_uris: list[str] | None = None,
                   sector: str | None = None, id_token_alg: str = DEFAULT_ALG,
                   granted_scopes: frozenset[str] | set[str] = frozenset()
                   ) -> tuple[Client, str]:
        """Register a client; returns it and its secret (shown once, kept only as a digest)."""
        if id_token_alg not in ID_TOKEN_ALGS:
            raise StoreError(f"ID token algorithm {id_token_alg!r}: one of "
                             f"{', '.join(ID_TOKEN_ALGS)}")
        unknown = set(granted_scopes) - GRANTABLE_SCOPES
        if unknown:
            raise StoreError(f"scope {', '.join(sorted(unknown))}: only "
                             f"{', '.join(sorted(GRANTABLE_SCOPES))} can be granted")
        if not name.strip():
            raise StoreError("a client needs a name (shown to the cardholder on consent)")
        if not redirect_uris:
            raise StoreError("a client needs at least one --redirect-uri")
        redirect = _uris(redirect_uris, "redirect URI")
        logout = _uris(post_logout_redirect_uris or [], "post-logout redirect URI")
        hosts = {urlsplit(u).hostname for u in redirect}
        if sector is None:
            if len(hosts) > 1:
                raise StoreError("redirect URIs on several hosts: give --sector (the pairwise "
                                 "subject identifier's sector)")
            sector = hosts.pop() or ""
        client_id = secrets.token_urlsafe(18)
        secret = secrets.token_urlsafe(32)
        client = Client(client_id, name.strip(), hashlib.sha256(secret.encode()).hexdigest(),
                        tuple(redirect), tuple(logout), sector,
                        {"post_logout_redirect_uris": logout}, id_token_alg,
                        frozenset(granted_scopes))
        with self.engine.begin() as conn:
            conn.execute(_clients.insert().values(
                client_id=client_id, name=client.name, secret_sha256=client.secret_sha256,
                redirect_uris=json.dumps(redirect), post_logout_redirect_uris=json.dumps(logout),
                sector=sector, id_token_alg=id_token_alg, created_at=self.clock()))
            for scope in sorted(client.granted_scopes):
                conn.execute(_client_scopes.insert().values(client_id=client_id, scope=scope))
        return client, secret

    def client(self, client_id: str | None) -> Client | None:
        if not client_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_clients).where(
                _clients.c.client_id == client_id)).mappings().one_or_none()
            granted = frozenset(conn.execute(sa.select(_client_scopes.c.scope).where(
                _client_scopes.c.client_id == client_id)).scalars())
        if row is None:
            return None
        logout = tuple(json.loads(row["post_logout_redirect_uris"]))
        return Client(row["client_id"], row["name"], row["secret_sha256"],
                      tuple(json.loads(row["redirect_uris"])), logout, row["sector"],
                      {"post_logout_redirect_uris": list(logout)}, row["id_token_alg"],
                      granted)

    def clients(self) -> list[Client]:
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(_clients.c.client_id).order_by(
                _clients.c.created_at)).scalars().all()
        return [c for c in (self.client(i) for i in ids) if c is not None]

    def remove_client(self, client_id: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(_clients.delete().where(
                    _clients.c.client_id == client_id)).rowcount:
                raise StoreError(f"no client {client_id!r}")
            conn.execute(_codes.delete().where(_codes.c.client_id == client_id))
            conn.execute(_client_scopes.delete().where(_client_scopes.c.client_id == client_id))

    # -- authorisation codes -----------------------------------------------------------------

    def save_code(self, code: AuthorizationCode) -> None:
        """Keep a new code; codes expired over a day ago go in the same transaction (a used
        code is kept that long so that its nonce is still known as used)."""
        with self.engine.begin() as conn:
            conn.execute(_codes.delete().where(
                _codes.c.expires_at < self.clock() - timedelta(days=1)))
            conn.execute(_codes.insert().values(
                code=code.code, client_id=code.client_id, redirect_uri=code.redirect_uri,
                scope=code.scope, nonce=code.nonce, code_challenge=code.code_challenge,
                code_challenge_method=code.code_challenge_method, auth_time=code.auth_time,
                holder=json.dumps(code.holder), expires_at=code.expires_at, used=False))

    def take_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code, once: claimed by an atomic UPDATE (two workers racing with the same code
        get it once); None when unknown, used, expired or another client's."""
        with self.engine.connect().execution_options(sscard_write=True) as conn:
            row = conn.execute(sa.select(_codes).where(
                _codes.c.code == code)).mappings().one_or_none()
            if row is None or row["client_id"] != client_id:
                conn.rollback()
                return None
            claimed = conn.execute(_codes.update().where(
                (_codes.c.code == code) & _codes.c.used.is_(False)).values(used=True)).rowcount
            conn.commit()
        if not claimed or row["expires_at"] <= self.clock():
            return None
        return AuthorizationCode(
            row["code"], row["client_id"], row["redirect_uri"], row["scope"], row["nonce"],
            row["code_challenge"], row["code_challenge_method"], row["auth_time"],
            json.loads(row["holder"]), row["expires_at"])

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_codes.c.code).where(
                (_codes.c.client_id == client_id) & (_codes.c.nonce == nonce))).first() \
                is not None

    # -- signing keys ------------------------------------------------------------------------

    def add_key(self, kid: str, alg: str, private_jwk: dict[str, Any]) -> None:
        """A new current key of ``alg``; the previous current key of ``alg`` is retired now
        (kept for verifying)."""
        now = self.clock()
        with self.engine.connect().execution_options(sscard_write=True) as conn:
            conn.execute(_keys.update().where(
                _keys.c.retired_at.is_(None) & (_keys.c.alg == alg)).values(retired_at=now))
            conn.execute(_keys.insert().values(kid=kid, alg=alg, created_at=now,
                                               private_jwk=json.dumps(private_jwk)))
            conn.commit()

    def keys(self) -> list[dict[str, Any]]:
        """All keys, newest first: kid, alg, private_jwk, created_at, retired_at."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_keys).order_by(
                _keys.c.created_at.desc())).mappings().all()
        return [{**row, "private_jwk": json.loads(row["private_jwk"])} for row in rows]

    def drop_keys_retired_before(self, when: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(_keys.delete().where(
                _keys.c.retired_at.is_not(None) & (_keys.c.retired_at < when))).rowcount

    # -- sessions at the provider ------------------------------------------------------------

    def open_session(self, holder: dict[str, Any], seconds: int) -> str:
        """A new session for ``holder``; returns its id (for the cookie). Expired sessions
        go in the same transaction."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(_sessions.delete().where(_sessions.c.expires_at < now))
            conn.execute(_sessions.insert().values(
                sid_sha256=_sha256(sid), holder=json.dumps(holder),
                expires_at=now + timedelta(seconds=seconds)))
        return sid

    def session_holder(self, sid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_sessions).where(
                _sessions.c.sid_sha256 == _sha256(sid))).mappings().one_or_none()
        if row is None or row["expires_at"] <= self.clock():
            return None
        return dict(json.loads(row["holder"]))

    def close_session(self, sid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_sessions.delete().where(_sessions.c.sid_sha256 == _sha256(sid)))

    # -- the provider's own secrets ----------------------------------------------------------

    def setting(self, name: str, make: Any) -> str:
        """The value of ``name``, made once by ``make()`` (the first worker to write wins)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(_settings.c.value).where(
                _settings.c.name == name)).scalar_one_or_none()
        if value is not None:
            return str(value)
        try:
            with self.engine.begin() as conn:
                conn.execute(_settings.insert().values(name=name, value=make()))
        except sa.exc.IntegrityError:
            pass  # another worker made it first: use theirs
        with self.engine.connect() as conn:
            return str(conn.execute(sa.select(_settings.c.value).where(
                _settings.c.name == name)).scalar_one())
