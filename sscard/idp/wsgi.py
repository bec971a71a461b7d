"""The identity provider for WSGI servers: ``sscard idp serve`` runs ``IdpAppFactory`` under
gunicorn (``sscard.serving``); another WSGI server takes ``sscard.idp.wsgi:app`` with
``SSCARD_IDP_CONFIG`` naming the TOML configuration, ``SSCARD_IDP_DB_URL`` the database and
``SSCARD_AUDIT_DB_URL`` the audit log.

The configuration (paths relative to the file)::

    issuer = "https://idp.example.gov.cn"       # its origin is what the card signs
    agent_url = "http://127.0.0.1:24727"        # the browser agent the login page calls
    trust_anchors = ["root.pem"]                # the cardholder and staff CAs' roots
    intermediates = ["cardholder-ca.pem"]       # ... and their issuing CAs
    fetch_revocation = true                     # OCSP/CRL from the CA's publication points
    id_token_seconds = 600
    key_retention_hours = 24                    # a retired signing key stays in the JWKS so long

    [login_profiles]                            # the profiles a login may use: name = policy OID
    cardholder-sign = "1.2.156.10260.4.2.1.1"   # the default when the table is absent
    # staff cards, from the staff CA only: a profile as a table names the CAs that may issue it
    ra-officer = { policy = "1.2.156.10260.4.2.2.1", issuers = ["staff-ca.pem"] }
    # the verified card-number claim, from the RA's registry (sscard/idp/card_numbers.py); all
    # four or none (no card-number claim)
    card_number_ra_url = "https://ra.example.gov.cn"
    card_number_service_key = "idp-service.key.pem"     # the provider's service identity
    card_number_service_key_passphrase_file = "secrets/service-key.pass"
    card_number_service_certificate = "idp-service.pem"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sscard.gateway.config import CARDHOLDER_SIGN_POLICY
from sscard.idp.provider import Provider, ProviderConfig, create_app
from sscard.idp.store import IdpStore


class IdpConfigError(ValueError):
    """The configuration file names something missing or wrong."""


CARD_NUMBER_KEYS = ("card_number_ra_url", "card_number_service_key",
                    "card_number_service_key_passphrase_file", "card_number_service_certificate")


@dataclass
class IdpSettings:
    provider: ProviderConfig
    trust_anchors: list[Path]
    intermediates: list[Path]
    fetch_revocation: bool
    #: the RA's URL, the service key, its passphrase file and certificate; None: no lookup
    card_number_lookup: tuple[str, Path, Path, Path] | None = None


def load_settings(path: Path) -> IdpSettings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IdpConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"issuer", "agent_url", "trust_anchors", "intermediates",
                           "fetch_revocation", "id_token_seconds", "key_retention_hours",
                           "login_profiles", *CARD_NUMBER_KEYS}
    if unknown:
        raise IdpConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    if not isinstance(data.get("issuer"), str):
        raise IdpConfigError(f"{path}: 'issuer' (the provider's https URL) is required")
    anchors = [path.parent / str(p) for p in data.get("trust_anchors", [])]
    if not anchors:
        raise IdpConfigError(f"{path}: at least one trust anchor (the cardholder CA's root)")
    for cert in [*anchors, *(path.parent / str(p) for p in data.get("intermediates", []))]:
        if not cert.is_file():
            raise IdpConfigError(f"{path}: no certificate file {cert}")
    profiles, issuers = _login_profiles(path, data.get(
        "login_profiles", {"cardholder-sign": CARDHOLDER_SIGN_POLICY}))
    try:
        provider = ProviderConfig(
            issuer=data["issuer"],
            agent_url=str(data.get("agent_url", ProviderConfig.agent_url)),
            id_token_seconds=int(data.get("id_token_seconds", 600)),
            key_retention=timedelta(hours=float(data.get("key_retention_hours", 24))),
            login_profiles=profiles, profile_issuers=issuers)
    except (TypeError, ValueError) as exc:
        raise IdpConfigError(f"{path}: {exc}") from None
    given = [k for k in CARD_NUMBER_KEYS if k in data]
    lookup = None
    if given and len(given) != len(CARD_NUMBER_KEYS):
        raise IdpConfigError(f"{path}: the card-number lookup needs all of "
                             f"{', '.join(CARD_NUMBER_KEYS)}")
    if given:
        files = [path.parent / str(data[k]) for k in CARD_NUMBER_KEYS[1:]]
        for file in files:
            if not file.is_file():
                raise IdpConfigError(f"{path}: no file {file}")
        lookup = (str(data["card_number_ra_url"]), files[0], files[1], files[2])
    return IdpSettings(provider, anchors,
                       [path.parent / str(p) for p in data.get("intermediates", [])],
                       bool(data.get("fetch_revocation", True)), lookup)


def _login_profiles(path: Path, table: Any) -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """``name = "OID"``, or ``name = {policy = "OID", issuers = ["ca.pem", ...]}`` for a
    profile only those CAs may issue: (name -> OID, name -> the issuing CAs' subjects)."""
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_certificate

    wrong = IdpConfigError(f"{path}: 'login_profiles' maps profile names to policy OIDs, or to "
                           "{policy = OID, issuers = [CA certificate files]} (at least one)")
    if not isinstance(table, dict) or not table:
        raise wrong
    profiles: dict[str, str] = {}
    issuers: dict[str, tuple[Any, ...]] = {}
    for name, value in table.items():
        if isinstance(value, dict) and set(value) <= {"policy", "issuers"}:
            files = value.get("issuers", [])
            if not isinstance(files, list) or not files:
                raise wrong
            try:
                issuers[name] = tuple(load_certificate((path.parent / str(f)).read_bytes())
                                      .subject for f in files)
            except (OSError, ValueError, X509Error) as exc:
                raise IdpConfigError(f"{path}: login profile {name}: {exc}") from None
            value = value.get("policy")
        if not isinstance(value, str) or not _is_oid(value):
            raise wrong
        profiles[name] = value
    return profiles, issuers


def _is_oid(text: str) -> bool:
    arcs = text.split(".")
    return len(arcs) >= 2 and all(a.isdigit() for a in arcs)


class IdpAppFactory:
    """Builds the provider in one worker (after the fork); every worker shares the database:
    clients, codes, keys, the login nonces."""

    def __init__(self, config_file: Path, db_url: str, audit_url: str | None) -> None:
        self.config_file, self.db_url, self.audit_url = config_file, db_url, audit_url

    def __call__(self) -> Any:
        settings = load_settings(self.config_file)
        store = IdpStore(self.db_url)
        nonces, validator, parse = _card_login(settings, self.db_url)
        audit = None
        if self.audit_url:
            from sscard.audit import AuditLog

            audit = AuditLog.open(self.audit_url)
        return create_app(Provider(settings.provider, store, nonces, validator, parse,
                                   audit=audit))


def _card_login(settings: IdpSettings, db_url: str) -> tuple[Any, Any, Any]:
    """Part A's token validation (sscard.idp.authtoken): one-time nonces in the shared
    database and the card's certificate validated to the cardholder CA with revocation."""
    from sscard.cms import TrustConfig
    from sscard.cms.revocation import RevocationFetch
    from sscard.gateway.revocation import default_fetch_policy
    from sscard.idp import authtoken
    from sscard.x509.parse import load_certificate

    anchors = [load_certificate(p.read_bytes()) for p in settings.trust_anchors]
    intermediates = [load_certificate(p.read_bytes()) for p in settings.intermediates]
    trust = TrustConfig(
        trust_anchors=anchors, intermediates=intermediates,
        revocation_fetch=(RevocationFetch(default_fetch_policy([*anchors, *intermediates], [],
                                                               None))
                          if settings.fetch_revocation else None))
    nonces = authtoken.NonceStore(db_url)
    validator = authtoken.TokenValidator(
        trust, nonces=nonces, cardholder_policies=settings.provider.login_profiles.values(),
        card_numbers=_card_numbers(settings))
    return nonces, validator, authtoken.AuthToken.from_json


def _card_numbers(settings: IdpSettings) -> Any:
    """The RA lookup signed with the provider's service identity, or None (no claim)."""
    if settings.card_number_lookup is None:
        return None
    from sscard.httpsig import RequestSigner
    from sscard.idp.card_numbers import RaCardNumbers
    from sscard.keys.software import SoftwareKey
    from sscard.secrets_input import read_secret
    from sscard.x509.pem import pem_to_der

    ra_url, key_file, passphrase_file, cert_file = settings.card_number_lookup
    key = SoftwareKey.from_bytes(key_file.read_bytes(), read_secret(file=passphrase_file),
                                 str(key_file))
    certificate = pem_to_der(cert_file.read_bytes(), "CERTIFICATE")
    return RaCardNumbers(ra_url, RequestSigner(key, certificate))


def __getattr__(name: str) -> Any:
    # ``app`` is built when a WSGI server asks for it, not when the module is imported
    if name == "app":
        app = IdpAppFactory(Path(os.environ["SSCARD_IDP_CONFIG"]),
                            os.environ["SSCARD_IDP_DB_URL"],
                            os.environ.get("SSCARD_AUDIT_DB_URL"))()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
