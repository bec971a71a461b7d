"""Who may do what at the CA API: principals, their permissions, and one pure decision.

Every credential that reaches the CA API (an API token, or a service certificate identified by
its profile and its SHA-256 fingerprint) maps to a *principal* configured in the CA's access
file (``<home>/ca/access.toml``, managed by ``sscard ca principal ...``). A principal names the
operations (``issue``, ``revoke``, ``status``), the profiles and the CAs it may use; nothing is
allowed by default. ``decide`` is a pure function of (principal, operation, CA, profile): how a
caller was authenticated (token, signed request, mutual TLS) does not enter it, so any
authentication scheme plugs in.

Rules no configuration can lift:

- CA-level profiles (``is_ca``, OCSP signing, time stamping, or ``offline_only``) are never
  issued or revoked over the network; only ``sscard ca issue`` on the CA's own home, under dual
  control (``ca.dual_control``), issues them.
- Officers act only through the RA: a certificate of an officer profile (the RA officer policy)
  is never a CA API principal.

The file::

    version = 1

    [principals.ra]
    operations = ["issue", "revoke", "status"]
    profiles = ["cardholder-sign", "cardholder-encrypt", "business-system"]
    cas = ["issuing"]
    token_sha256 = "<hex SHA-256 of the API token>"
    # or, for a service certificate:
    # certificate = { profile = "service", sha256 = "<hex SHA-256 of the DER certificate>" }

    [administrators.alice]       # see ca.dual_control
    public_key = "-----BEGIN PUBLIC KEY-----..."
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w
from asn1crypto import x509 as asn1x509

from ca.errors import ConfigError
from ca.profile import EXTENDED_KEY_USAGES, Profile
from sscard.secrets_input import write_private_file

ACCESS_FILE = "access.toml"
#: the RA officer certificate policy (ca/profiles/ra-officer.toml): never a CA API principal
OFFICER_POLICY = "1.2.156.10260.4.2.2.1"
_CA_LEVEL_EKUS = frozenset({EXTENDED_KEY_USAGES["OCSPSigning"],
                            EXTENDED_KEY_USAGES["timeStamping"]})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


#: what the RA's credential may issue and revoke (issue 11 item 2): nothing CA-level
RA_PROFILES = ("cardholder-sign", "cardholder-encrypt", "business-system")


class ApiOperation(enum.StrEnum):
    ISSUE = "issue"
    REVOKE = "revoke"
    STATUS = "status"
    #: vouch in a signed batch request that the caller verified each CSR's proof of
    #: possession itself (CMP's raVerified): the RA's, never a token's
    ATTEST_POP = "attest-pop"


def is_ca_level(profile: Profile) -> bool:
    """Profiles whose certificates act for the CA itself: a sub-CA, OCSP and TSA signers, and
    whatever a profile marks ``offline_only`` (service identities)."""
    return (profile.is_ca or profile.offline_only
            or bool(_CA_LEVEL_EKUS & set(profile.extended_key_usage)))


def access_path(home: Path) -> Path:
    return Path(home) / "ca" / ACCESS_FILE


@dataclass(frozen=True)
class CertificateIdentity:
    """A service certificate: the profile it must come from and its fingerprint."""

    profile: str
    sha256: str


@dataclass(frozen=True)
class Principal:
    name: str
    operations: frozenset[ApiOperation] = frozenset()
    profiles: frozenset[str] = frozenset()
    cas: frozenset[str] = frozenset()
    token_sha256: str | None = None
    certificate: CertificateIdentity | None = None


@dataclass(frozen=True)
class Administrator:
    """An administrator whose signed approval counts towards dual control."""

    name: str
    public_key_pem: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: what was asked, e.g. ``issue profile=sub-ca ca=issuing``
    permission: str
    reason: str


def _permission(operation: ApiOperation, ca: str, profile: str | None) -> str:
    return f"{operation.value}" + (f" profile={profile}" if profile else "") + f" ca={ca}"


def decide(principal: Principal | None, operation: ApiOperation, ca: str,
           profile: Profile | str | None = None) -> Decision:
    """Allow or deny ``operation`` on CA ``ca`` (for a certificate of ``profile``: a loaded
    profile, or just a name the CA does not know). Pure: no I/O, no clock."""
    name = profile.name if isinstance(profile, Profile) else profile
    permission = _permission(operation, ca, name)

    def deny(reason: str) -> Decision:
        return Decision(False, permission, reason)

    if principal is None:
        return deny("no principal is configured for this credential")
    who = f"principal {principal.name}"
    if principal.certificate is not None and principal.certificate.profile == "ra-officer":
        return deny("officers act only through the RA, never at the CA API")
    if isinstance(profile, Profile) and is_ca_level(profile) and operation is not \
            ApiOperation.STATUS:
        return deny(f"profile {profile.name} is CA-level: issued and revoked only offline "
                    "(sscard ca issue on the CA's home, under dual control)")
    if operation not in principal.operations:
        return deny(f"{who} lacks the permission '{operation.value}'")
    if ca not in principal.cas:
        return deny(f"{who} lacks the permission to use CA {ca}")
    if operation is ApiOperation.ISSUE and name is None:
        return deny("issuance names a profile")
    if name is not None and name not in principal.profiles:
        return deny(f"{who} lacks the permission '{operation.value}' for profile {name}")
    return Decision(True, permission, f"{who} may {permission}")


# -- the access file ------------------------------------------------------------------------


def hash_token(token: str | bytes) -> str:
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


def certificate_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def certificate_fits_profile(cert: asn1x509.Certificate, profile: Profile) -> bool:
    """The certificate carries the profile's identifying marks: all its certificate policies
    (at least one) and extended key usages."""
    if not profile.certificate_policies:
        return False
    policies = {p["policy_identifier"].dotted for p in (cert.certificate_policies_value or [])}
    ekus = {e.dotted for e in (cert.extended_key_usage_value or [])}
    return (set(profile.certificate_policies) <= policies
            and set(profile.extended_key_usage) <= ekus)


def is_officer_certificate(cert: asn1x509.Certificate) -> bool:
    policies = {p["policy_identifier"].dotted for p in (cert.certificate_policies_value or [])}
    return OFFICER_POLICY in policies


@dataclass(frozen=True)
class AccessConfig:
    principals: Mapping[str, Principal] = field(default_factory=dict)
    administrators: Mapping[str, Administrator] = field(default_factory=dict)

    def by_token(self, token: str) -> Principal | None:
        digest = hash_token(token)
        found = None
        for principal in self.principals.values():  # every entry compared: constant time
            if principal.token_sha256 is not None and hmac.compare_digest(
                    digest, principal.token_sha256):
                found = principal
        return found

    def by_certificate(self, der: bytes) -> Principal | None:
        """The principal registered for exactly this certificate (the caller still checks
        that it fits the principal's profile: ``certificate_fits_profile``)."""
        fingerprint = certificate_fingerprint(der)
        for principal in self.principals.values():
            if principal.certificate is not None and hmac.compare_digest(
                    fingerprint, principal.certificate.sha256):
                return principal
        return None

    # -- changes (each returns a new config; ``save_access`` writes it) ---------------------

    def with_principal(self, principal: Principal) -> AccessConfig:
        _check_principal(principal, f"principal {principal.name}")
        return replace(self, principals={**self.principals, principal.name: principal})

    def without_principal(self, name: str) -> AccessConfig:
        if name not in self.principals:
            raise ConfigError(f"no principal named {name!r}")
        return replace(self, principals={k: v for k, v in self.principals.items() if k != name})

    def with_administrator(self, admin: Administrator) -> AccessConfig:
        _check_admin(admin, f"administrator {admin.name}")
        return replace(self, administrators={**self.administrators, admin.name: admin})

    def without_administrator(self, name: str) -> AccessConfig:
        if name not in self.administrators:
            raise ConfigError(f"no administrator named {name!r}")
        return replace(self, administrators={k: v for k, v in self.administrators.items()
                                             if k != name})


def _check_principal(p: Principal, where: str) -> None:
    if not _NAME_RE.match(p.name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-'")
    if (p.token_sha256 is None) == (p.certificate is None):
        raise ConfigError(f"{where}: give exactly one credential: token_sha256 or certificate")
    if p.token_sha256 is not None and not _HEX64_RE.match(p.token_sha256):
        raise ConfigError(f"{where}: token_sha256 must be 64 lower-case hex digits")
    if p.certificate is not None:
        if not _HEX64_RE.match(p.certificate.sha256):
            raise ConfigError(f"{where}: certificate.sha256 must be 64 lower-case hex digits")
        if p.certificate.profile == "ra-officer":
            raise ConfigError(f"{where}: officers act only through the RA; an officer "
                              "certificate cannot be a CA API principal")


def _check_admin(a: Administrator, where: str) -> None:
    from sscard.crypto.asymmetric import PublicKey
    from sscard.crypto.errors import CryptoError
    from sscard.x509.pem import pem_blocks

    if not _NAME_RE.match(a.name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-'")
    try:
        blocks = pem_blocks(a.public_key_pem.encode("ascii"))
        if len(blocks) != 1 or blocks[0][0] != "PUBLIC KEY":
            raise ValueError("expected one PUBLIC KEY block")
        PublicKey.from_spki(blocks[0][1])
    except (ValueError, CryptoError, UnicodeEncodeError) as exc:
        raise ConfigError(f"{where}: public_key is not a PEM public key: {exc}") from None


def _str_set(data: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings")
    return frozenset(value)


def parse_access(text: str, where: str = ACCESS_FILE,
                 profiles: Mapping[str, Profile] | None = None) -> AccessConfig:
    """Validate the access file; with ``profiles``, also that every named profile exists."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"version", "principals", "administrators"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if data.get("version", 1) != 1:
        raise ConfigError(f"{where}: version must be 1")
    principals: dict[str, Principal] = {}
    for name, entry in _tables(data, "principals", where).items():
        at = f"{where} [principals.{name}]"
        extra = sorted(set(entry) - {"operations", "profiles", "cas", "token_sha256",
                                     "certificate"})
        if extra:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(extra)}")
        try:
            operations = frozenset(ApiOperation(o) for o in _str_set(entry, "operations", at))
        except ValueError as exc:
            raise ConfigError(f"{at}: {exc}; use "
                              + ", ".join(o.value for o in ApiOperation)) from None
        cert = entry.get("certificate")
        identity = None
        if cert is not None:
            if not isinstance(cert, dict) or set(cert) != {"profile", "sha256"} or not all(
                    isinstance(v, str) for v in cert.values()):
                raise ConfigError(f"{at}: certificate must be {{profile = ..., sha256 = ...}}")
            identity = CertificateIdentity(cert["profile"], cert["sha256"])
        token = entry.get("token_sha256")
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"{at}: token_sha256 must be a string")
        principal = Principal(name, operations, _str_set(entry, "profiles", at),
                              _str_set(entry, "cas", at), token, identity)
        _check_principal(principal, at)
        if profiles is not None:
            named = set(principal.profiles) | ({identity.profile} if identity else set())
            missing = sorted(named - set(profiles))
            if missing:
                raise ConfigError(f"{at}: unknown profile(s) {', '.join(missing)}")
            ca_level = sorted(n for n in principal.profiles if is_ca_level(profiles[n]))
            if ca_level:
                raise ConfigError(f"{at}: {', '.join(ca_level)} CA-level: issued only offline "
                                  "under dual control, never by a principal")
        principals[name] = principal
    tokens = [p.token_sha256 for p in principals.values() if p.token_sha256]
    certs = [p.certificate.sha256 for p in principals.values() if p.certificate]
    if len(set(tokens)) != len(tokens) or len(set(certs)) != len(certs):
        raise ConfigError(f"{where}: one credential is given to two principals")
    administrators: dict[str, Administrator] = {}
    for name, entry in _tables(data, "administrators", where).items():
        at = f"{where} [administrators.{name}]"
        if set(entry) != {"public_key"} or not isinstance(entry["public_key"], str):
            raise ConfigError(f"{at}: give exactly public_key (PEM)")
        admin = Administrator(name, entry["public_key"])
        _check_admin(admin, at)
        administrators[name] = admin
    return AccessConfig(principals, administrators)


def _tables(data: Mapping[str, Any], key: str, where: str) -> dict[str, dict[str, Any]]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{where}: [{key}.NAME] entries must be tables")
    return value


def dump_access(config: AccessConfig) -> str:
    principals: dict[str, Any] = {}
    for p in config.principals.values():
        entry: dict[str, Any] = {
            "operations": sorted(o.value for o in p.operations),
            "profiles": sorted(p.profiles), "cas": sorted(p.cas),
        }
        if p.token_sha256 is not None:
            entry["token_sha256"] = p.token_sha256
        if p.certificate is not None:
            entry["certificate"] = {"profile": p.certificate.profile,
                                    "sha256": p.certificate.sha256}
        principals[p.name] = entry
    admins = {a.name: {"public_key": a.public_key_pem} for a in config.administrators.values()}
    return ("# The CA API's principals and the dual-control administrators "
            "(sscard ca principal / ca admin).\n"
            + tomli_w.dumps({"version": 1, "principals": principals,
                             "administrators": admins}))


def load_access(path: Path, profiles: Mapping[str, Profile] | None = None) -> AccessConfig:
    """The access file; a missing file is an empty configuration (nobody may do anything)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return AccessConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_access(text, Path(path).name, profiles)


def save_access(path: Path, config: AccessConfig) -> None:
    """Write atomically (a reader never sees half a file), mode 0600."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_private_file(Path(path), dump_access(config))


# -- in-process callers -----------------------------------------------------------------------


class AuthorizedAuthority:
    """A CA seen through one principal's permissions: what an in-process caller (the embedded
    RA) holds instead of the CA itself, so the same ``decide`` applies whether the RA reaches
    the CA over HTTP or in one process. Refusals raise ``NotPermitted`` (a ``CAError``)."""

    #: what such a caller may read without a permission (public in any case)
    _READ = frozenset({"name", "certificate", "chain", "close"})

    def __init__(self, authority: Any, principal: Principal) -> None:
        self._authority = authority
        self.principal = principal

    def _check(self, operation: ApiOperation, profile: str | None) -> None:
        known: Profile | str | None = profile
        if profile is not None:
            known = self._authority.profiles.get(profile, profile)
        decision = decide(self.principal, operation, self._authority.name, known)
        if not decision.allowed:
            from ca.errors import NotPermitted

            raise NotPermitted(f"missing permission '{decision.permission}': {decision.reason}")

    def issue_from_csr(self, csr: Any, profile: str, extra: Mapping[str, Any] | None = None,
                       *, request_id: str | None = None) -> Any:
        self._check(ApiOperation.ISSUE, profile)
        return self._authority.issue_from_csr(csr, profile, extra, request_id=request_id)

    def issue_for_public_key(self, public_key: Any, subject: Any, profile: str,
                             extra: Mapping[str, Any] | None = None, *,
                             request_id: str | None = None) -> Any:
        self._check(ApiOperation.ISSUE, profile)
        return self._authority.issue_for_public_key(public_key, subject, profile, extra,
                                                    request_id=request_id)

    def issue_each(self, requests: Sequence[Any], profile: str) -> Any:
        """``CertificateAuthority.issue_each`` (the batch), as the HTTP API authorises it:
        issue on the profile, and attest-pop when an entry's possession is attested."""
        self._check(ApiOperation.ISSUE, profile)
        if any(getattr(r, "attested_key", None) is not None for r in requests):
            self._check(ApiOperation.ATTEST_POP, profile)
        return self._authority.issue_each(requests, profile)

    def revoke(self, serial: int, *args: Any, **kwargs: Any) -> Any:
        self._check(ApiOperation.REVOKE, None)
        profile = self._authority.certificate_profile(serial)
        if profile is not None:  # an unknown serial gets the CA's own error
            self._check(ApiOperation.REVOKE, profile)
        return self._authority.revoke(serial, *args, **kwargs)

    def status(self, serial: int) -> Any:
        self._check(ApiOperation.STATUS, None)
        return self._authority.status(serial)

    def __getattr__(self, name: str) -> Any:
        if name in self._READ:
            return getattr(self._authority, name)
        raise AttributeError(f"{name} is not available to principal {self.principal.name}")


def ra_view(authority: Any, home: Path) -> AuthorizedAuthority:
    """The CA as an RA in the same process may use it: through the principal ``ra`` of the
    CA's access file, or, when none is configured, the RA permission set (issue, revoke and
    status on ``RA_PROFILES`` at this CA)."""
    principal = load_access(access_path(home), authority.profiles).principals.get("ra")
    if principal is None:
        principal = Principal("ra", frozenset(ApiOperation), frozenset(RA_PROFILES),
                              frozenset({authority.name}))
    return AuthorizedAuthority(authority, principal)
