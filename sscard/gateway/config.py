"""Gateway configuration: trust, signing and decryption keys, and what each business system may
do. Built in code (tests, embedding) or loaded from a TOML file (``load_config``)::

    trust_anchors = ["root.pem"]            # our CA's root(s): callers, signers, cardholders
    intermediates = ["issuing-ca.pem"]
    crl_files = ["issuing-ca.crl"]          # and/or crl_urls = [...], fetch_revocation = true
    tsa_url = "http://127.0.0.1:8080/tsa"   # optional, for "timestamp": true
    max_request_bytes = 10485760
    audit_url = "sqlite:////var/lib/sscard/audit.db"   # every call recorded (sscard.audit)
    database_url = "sqlite:////var/lib/sscard/gateway.db"  # replay memory shared by workers
    # only behind a TLS-terminating proxy that checks client certificates and always sets it:
    # trusted_client_cert_header = "X-Client-Cert"     # e.g. nginx $ssl_client_escaped_cert

    [keys.hr-sign]                          # a key the gateway holds
    key = "hr-sign.key"                     # encrypted PKCS#8
    passphrase_file = "hr-sign.pass"
    certificate = "hr-sign.pem"

    [systems.employment]                    # the caller's certificate CN
    subject = "CN=employment, O=就业登记系统, C=CN"  # optional: the whole subject must match
    operations = ["sign", "verify", "encrypt", "decrypt", "status", "cardholder"]
    signing_keys = ["hr-sign"]
    decryption_key = "employment-enc"
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import crl, x509

from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey
from sscard.secrets_input import SecretFileError, read_secret_file
from sscard.x509.parse import load_certificate, load_certificates, load_crl

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


@dataclass(frozen=True)
class SystemPolicy:
    """What one business system (named by its certificate's CN) may do."""

    operations: frozenset[str]
    signing_keys: frozenset[str] = frozenset()
    decryption_key: str | None = None
    subject: str | None = None
    """When set, the caller's whole subject must be this (as ``format_name`` writes it), not
    only its CN: for deployments where CNs alone are not unique enough."""

    def __post_init__(self) -> None:
        unknown = set(self.operations) - OPERATIONS
        if unknown:
            raise ConfigError(f"unknown operations {sorted(unknown)}; use {sorted(OPERATIONS)}")


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

    def __post_init__(self) -> None:
        if not self.trust_anchors:
            raise ConfigError("at least one trust anchor is needed")
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
    systems = {
        name: SystemPolicy(frozenset(spec.get("operations", [])),
                           frozenset(spec.get("signing_keys", [])), spec.get("decryption_key"),
                           spec.get("subject"))
        for name, spec in data.get("systems", {}).items()
    }
    return GatewayConfig(
        trust_anchors=anchors, systems=systems, keys=keys, intermediates=intermediates,
        crls=crls, crl_urls=list(data.get("crl_urls", [])),
        fetch_revocation=bool(data.get("fetch_revocation", False)),
        tsa_url=data.get("tsa_url"),
        max_request_bytes=int(data.get("max_request_bytes", 10 * 1024 * 1024)),
        challenge_seconds=float(data.get("challenge_seconds", 120)),
        audit_url=data.get("audit_url"),
        database_url=data.get("database_url"),
        trusted_client_cert_header=data.get("trusted_client_cert_header"),
    )
