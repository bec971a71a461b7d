"""Gateway configuration: trust, signing and decryption keys, and what each business system may
do. Built in code (tests, embedding) or loaded from a TOML file (``load_config``)::

    trust_anchors = ["root.pem"]            # our CA's root(s): callers, signers, cardholders
    intermediates = ["issuing-ca.pem"]
    crl_files = ["issuing-ca.crl"]          # and/or crl_urls = [...], fetch_revocation = true
    tsa_url = "http://127.0.0.1:8080/tsa"   # optional, for "timestamp": true
    max_request_bytes = 10485760
    validation_cache_seconds = 60           # 0: a revocation shows at the next call
    audit_url = "sqlite:////var/lib/sscard/audit.db"   # every call recorded (sscard.audit)
    database_url = "sqlite:////var/lib/sscard/gateway.db"  # replay memory shared by workers
    # only behind a TLS-terminating proxy that checks client certificates and always sets it:
    # trusted_client_cert_header = "X-Client-Cert"     # e.g. nginx $ssl_client_escaped_cert

    [keys.hr-sign]                          # a key the gateway holds
    key = "hr-sign.key"                     # encrypted PKCS#8
    passphrase_file = "hr-sign.pass"
    certificate = "hr-sign.pem"

    [systems.employment]                    # a name for the system (audit, challenges)
    certificate_files = ["employment.pem"]  # its business-system certificates, and/or
    certificates = ["sha256 fingerprint in hex"]  # (colons and case do not matter)
    operations = ["sign", "verify", "encrypt", "decrypt", "status", "cardholder"]
    signing_keys = ["hr-sign"]
    decryption_key = "employment-enc"

A caller is the system whose registered fingerprint its certificate has, and that certificate
must be a business-system certificate (``caller_policies``, EKU clientAuth): never a CN.
Optional, with the defaults of ca/profiles/ (change them with your CPS's OIDs)::

    caller_policies = ["1.2.156.10260.4.2.3.1"]      # business-system
    cardholder_policies = ["1.2.156.10260.4.2.1.1"]  # cardholder-sign: /v1/cardholder/verify
    recipient_policies = ["1.2.156.10260.4.2.1.2"]   # cardholder-encrypt: /v1/encrypt
    fetch_allow = ["http://ca.example/"]  # URL prefixes the gateway may fetch (default: the
                                          # origins of the URLs in the configured CA certificates
                                          # and crl_urls)
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import crl, x509

from sscard.fetch import AllowList, FetchRefused
from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey
from sscard.secrets_input import SecretFileError, read_secret_file
from sscard.x509.parse import load_certificate, load_certificates, load_crl

#: the certificate policies of ca/profiles/ (placeholders under the MOHRSS arc, like there)
BUSINESS_SYSTEM_POLICY = "1.2.156.10260.4.2.3.1"
CARDHOLDER_SIGN_POLICY = "1.2.156.10260.4.2.1.1"
CARDHOLDER_ENCRYPT_POLICY = "1.2.156.10260.4.2.1.2"

#: every operation a system can be allowed
OPERATIONS = frozenset({"sign", "verify", "encrypt", "decrypt", "status", "cardholder"})


class ConfigError(ValueError):
    """The gateway configuration is unusable; the message names the entry."""


@dataclass(frozen=True)
class GatewayKey:
    """A key the gateway holds for business systems, with its certificate and chain."""

    key: KeyHandle
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: how systems are registered."""
    der = cert if isinstance(cert, bytes) else cert.dump()
    return hashlib.sha256(der).hexdigest()


def _normal_fingerprint(text: str, where: str) -> str:
    value = text.replace(":", "").strip().lower() if isinstance(text, str) else ""
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{where}: {text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return value


@dataclass(frozen=True)
class SystemPolicy:
    """What one business system may do, and the certificates (SHA-256 fingerprints) that are
    it: a caller is this system only if its certificate is one of them."""

    operations: frozenset[str]
    signing_keys: frozenset[str] = frozenset()
    decryption_key: str | None = None
    certificates: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.operations) - OPERATIONS
        if unknown:
            raise ConfigError(f"unknown operations {sorted(unknown)}; use {sorted(OPERATIONS)}")
        object.__setattr__(self, "certificates", frozenset(
            _normal_fingerprint(f, "certificates") for f in self.certificates))


@dataclass
class GatewayConfig:
    trust_anchors: Sequence[x509.Certificate]
    systems: Mapping[str, SystemPolicy]
    keys: Mapping[str, GatewayKey] = field(default_factory=dict)
    intermediates: Sequence[x509.Certificate] = ()
    crls: Sequence[crl.CertificateList] = ()
    crl_urls: Sequence[str] = ()
    fetch_revocation: bool = False
    tsa_url: str | None = None
    timestamp_fetcher: Callable[[bytes], bytes] | None = None
    """Overrides tsa_url: TimeStampReq DER -> TimeStampResp DER (e.g. an in-process TSA)."""
    max_request_bytes: int = 10 * 1024 * 1024
    max_batch_items: int = 1000
    challenge_seconds: float = 120.0
    request_signature_window: float = 300.0
    """How far a signed request's date may be from the gateway's clock (seconds)."""
    validation_cache_seconds: float = 60.0
    """Path validation results (callers, signers) are reused this long."""
    trusted_client_cert_header: str | None = None
    """Only behind a TLS-terminating proxy that sets it: the header with the client's PEM."""
    audit_url: str | None = None
    """The audit log's database (``sscard.audit``); None records in memory only."""
    database_url: str | None = None
    """The gateway's own database, shared by every worker: the replay memory of signed
    requests. None keeps it in this process only (one process, e.g. ``gateway serve``)."""
    caller_policies: frozenset[str] = frozenset({BUSINESS_SYSTEM_POLICY})
    """A caller's certificate must carry one of these policies (the business-system profile)."""
    cardholder_policies: frozenset[str] = frozenset({CARDHOLDER_SIGN_POLICY})
    """/v1/cardholder/verify accepts only certificates with one of these policies."""
    recipient_policies: frozenset[str] = frozenset({CARDHOLDER_ENCRYPT_POLICY})
    """/v1/encrypt accepts recipients with one of these policies, and the certificates of the
    gateway's own decryption keys."""
    fetch_allow: Sequence[str] | None = None
    """URL prefixes the gateway may fetch from (CRLs, OCSP, issuers); None: the origins of the
    URLs in the configured CA certificates and ``crl_urls``."""
    max_json_depth: int = 16
    """Deeper JSON request bodies are refused before they are parsed."""

    def __post_init__(self) -> None:
        if not self.trust_anchors:
            raise ConfigError("at least one trust anchor is needed")
        if self.fetch_allow is not None:
            try:
                AllowList(self.fetch_allow)
            except FetchRefused as exc:
                raise ConfigError(f"fetch_allow: {exc}") from None
        owners: dict[str, str] = {}
        for name, policy in self.systems.items():
            for fp in policy.certificates:
                if owners.setdefault(fp, name) != name:
                    raise ConfigError(f"certificate {fp} is registered for both systems "
                                      f"{owners[fp]!r} and {name!r}")
        for key_id, entry in self.keys.items():
            if entry.key.public_key().spki_der() != entry.certificate.public_key.dump():
                raise ConfigError(f"keys.{key_id}: the key does not match the certificate")
        for name, policy in self.systems.items():
            for key_id in policy.signing_keys:
                if key_id not in self.keys:
                    raise ConfigError(f"system {name}: signing key {key_id!r} is not configured")
            if policy.decryption_key and policy.decryption_key not in self.keys:
                raise ConfigError(
                    f"system {name}: decryption key {policy.decryption_key!r} is not configured")


def _path(base: Path, value: object, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a file name")
    p = Path(value)
    return p if p.is_absolute() else base / p


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def load_config(path: Path) -> GatewayConfig:
    """Load a TOML configuration; relative file names are relative to its directory."""
    base = path.parent
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    anchors = [load_certificate(_read(_path(base, f, "trust_anchors"), "trust anchor"))
               for f in data.get("trust_anchors", [])]
    intermediates = [c for f in data.get("intermediates", [])
                     for c in load_certificates(_read(_path(base, f, "intermediates"),
                                                      "intermediate"))]
    crls = [load_crl(_read(_path(base, f, "crl_files"), "CRL")) for f in data.get("crl_files", [])]
    keys: dict[str, GatewayKey] = {}
    for key_id, spec in data.get("keys", {}).items():
        what = f"keys.{key_id}"
        passphrase_file = _path(base, spec.get("passphrase_file"), f"{what}.passphrase_file")
        try:
            text = read_secret_file(passphrase_file, f"{what}.passphrase_file").decode() \
                .splitlines()
        except SecretFileError as exc:
            raise ConfigError(exc.message) from None
        handle = SoftwareKey.load(_path(base, spec.get("key"), f"{what}.key"),
                                  (text[0] if text else "").encode())
        cert = load_certificate(_read(_path(base, spec.get("certificate"), f"{what}.certificate"),
                                      f"{what}.certificate"))
        chain = tuple(c for f in spec.get("chain", []) for c in load_certificates(
            _read(_path(base, f, f"{what}.chain"), f"{what}.chain")))
        if handle.public_key().spki_der() != cert.public_key.dump():
            raise ConfigError(f"{what}: the key does not match the certificate")
        keys[key_id] = GatewayKey(handle, cert, chain)
    systems = {}
    for name, spec in data.get("systems", {}).items():
        if "subject" in spec:
            raise ConfigError(f"systems.{name}.subject: systems are no longer named by their "
                              "certificate's subject; register the certificates (certificates "
                              "= [SHA-256 fingerprints] or certificate_files = [PEM files])")
        prints = [_normal_fingerprint(f, f"systems.{name}.certificates")
                  for f in spec.get("certificates", [])]
        prints += [fingerprint(c) for f in spec.get("certificate_files", [])
                   for c in load_certificates(_read(_path(base, f, f"systems.{name}"),
                                                    f"systems.{name}.certificate_files"))]
        systems[name] = SystemPolicy(frozenset(spec.get("operations", [])),
                                     frozenset(spec.get("signing_keys", [])),
                                     spec.get("decryption_key"), frozenset(prints))

    def oids(key: str, default: frozenset[str]) -> frozenset[str]:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of policy OIDs")
        return frozenset(value)

    fetch_allow = data.get("fetch_allow")
    if fetch_allow is not None and (not isinstance(fetch_allow, list) or not all(
            isinstance(v, str) for v in fetch_allow)):
        raise ConfigError("fetch_allow must be a list of URL prefixes")
    return GatewayConfig(
        trust_anchors=anchors, systems=systems, keys=keys, intermediates=intermediates,
        crls=crls, crl_urls=list(data.get("crl_urls", [])),
        fetch_revocation=bool(data.get("fetch_revocation", False)),
        tsa_url=data.get("tsa_url"),
        max_request_bytes=int(data.get("max_request_bytes", 10 * 1024 * 1024)),
        challenge_seconds=float(data.get("challenge_seconds", 120)),
        validation_cache_seconds=float(data.get("validation_cache_seconds", 60)),
        audit_url=data.get("audit_url"),
        database_url=data.get("database_url"),
        trusted_client_cert_header=data.get("trusted_client_cert_header"),
        caller_policies=oids("caller_policies", frozenset({BUSINESS_SYSTEM_POLICY})),
        cardholder_policies=oids("cardholder_policies", frozenset({CARDHOLDER_SIGN_POLICY})),
        recipient_policies=oids("recipient_policies", frozenset({CARDHOLDER_ENCRYPT_POLICY})),
        fetch_allow=fetch_allow,
    )
