"""Issue 12 finding 1: who may do what at the CA API.

The pure decision (``ca.authorization.decide``), the access file, and the authorisation matrix:
every kind of credential against every operation and every profile (sub-CA included) through
the real Flask app over a real CA and audit log, with zero unauthorised successes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1x509

from ca.authority import CertificateAuthority
from ca.authorization import (
    RA_PROFILES,
    AccessConfig,
    ApiOperation,
    CertificateIdentity,
    Principal,
    certificate_fingerprint,
    decide,
    dump_access,
    hash_token,
    is_ca_level,
    parse_access,
)
from ca.errors import ConfigError
from ca.profile import load_profiles
from ca.service import ServiceConfig, create_app
from sscard import httpsig
from sscard.audit import AuditLog
from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem

PROFILES = load_profiles()
SSN = "350102199001011238"
EC_CONFIG = """\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=Authz Test Root,C=CN"
algorithm = "ec-p256"

[[issuing]]
name = "issuing"
subject = "CN=Authz Test Issuing CA,C=CN"
algorithm = "ec-p256"
path_length = 0
"""

RA = Principal("ra", frozenset(ApiOperation), frozenset(RA_PROFILES), frozenset({"issuing"}))


# -- the pure decision ----------------------------------------------------------------------


def test_nothing_is_allowed_by_default() -> None:
    nobody = Principal("nobody")
    for op in ApiOperation:
        for profile in (None, *PROFILES.values()):
            decision = decide(nobody, op, "issuing", profile)
            assert not decision.allowed
    assert not decide(None, ApiOperation.STATUS, "issuing").allowed


def test_ca_level_profiles_are_refused_for_every_principal() -> None:
    everything = Principal("root-of-all", frozenset(ApiOperation), frozenset(PROFILES),
                           frozenset({"issuing", "root"}))
    ca_level = {name for name, p in PROFILES.items() if is_ca_level(p)}
    assert ca_level == {"sub-ca", "ocsp-signer", "tsa", "service"}
    for name in ca_level:
        for op in (ApiOperation.ISSUE, ApiOperation.REVOKE):
            decision = decide(everything, op, "issuing", PROFILES[name])
            assert not decision.allowed
            assert "CA-level" in decision.reason and "dual control" in decision.reason
            assert decision.permission == f"{op.value} profile={name} ca=issuing"
    # a CA-level profile written under another name (a home override) is still CA-level
    assert is_ca_level(PROFILES["sub-ca"].__class__(**{**PROFILES["sub-ca"].__dict__,
                                                       "name": "innocent"}))


def test_the_ra_may_issue_only_cardholder_and_business_system() -> None:
    for name, profile in PROFILES.items():
        decision = decide(RA, ApiOperation.ISSUE, "issuing", profile)
        assert decision.allowed == (name in RA_PROFILES), (name, decision)
    assert not decide(RA, ApiOperation.ISSUE, "root", PROFILES["cardholder-sign"]).allowed
    assert not decide(RA, ApiOperation.ISSUE, "issuing", "no-such-profile").allowed
    assert not decide(RA, ApiOperation.ISSUE, "issuing", None).allowed


def test_denials_name_the_missing_permission() -> None:
    status_only = Principal("monitor", frozenset({ApiOperation.STATUS}), frozenset(),
                            frozenset({"issuing"}))
    decision = decide(status_only, ApiOperation.REVOKE, "issuing", PROFILES["cardholder-sign"])
    assert decision.permission == "revoke profile=cardholder-sign ca=issuing"
    assert "lacks the permission 'revoke'" in decision.reason
    assert decide(status_only, ApiOperation.STATUS, "issuing").allowed


def test_an_officer_principal_is_refused_even_if_configured() -> None:
    officer = Principal("officer", frozenset(ApiOperation), frozenset(RA_PROFILES),
                        frozenset({"issuing"}),
                        certificate=CertificateIdentity("ra-officer", "0" * 64))
    decision = decide(officer, ApiOperation.ISSUE, "issuing", PROFILES["cardholder-sign"])
    assert not decision.allowed and "only through the RA" in decision.reason


# -- the access file ------------------------------------------------------------------------


def test_access_file_round_trips_and_validates() -> None:
    config = AccessConfig().with_principal(Principal(
        "ra", frozenset(ApiOperation), frozenset(RA_PROFILES), frozenset({"issuing"}),
        token_sha256=hash_token("t" * 40)))
    again = parse_access(dump_access(config), profiles=PROFILES)
    assert again.principals == config.principals
    assert again.by_token("t" * 40) == config.principals["ra"]
    assert again.by_token("u" * 40) is None


@pytest.mark.parametrize(("text", "message"), [
    ('[principals.x]\noperations = ["issue"]\n', "exactly one credential"),
    (f'[principals.x]\noperations = ["fly"]\ntoken_sha256 = "{"a" * 64}"\n', "'fly'"),
    ('[principals.x]\ntoken_sha256 = "abc"\n', "64 lower-case hex"),
    (f'[principals.x]\ntoken_sha256 = "{"a" * 64}"\nprofiles = ["nope"]\n',
     "unknown profile(s) nope"),
    (f'[principals.x]\ncertificate = {{ profile = "ra-officer", sha256 = "{"a" * 64}" }}\n',
     "officers act only through the RA"),
    (f'[principals.x]\ntoken_sha256 = "{"a" * 64}"\n[principals.y]\n'
     f'token_sha256 = "{"a" * 64}"\n', "one credential is given to two principals"),
    (f'[principals.x]\ntoken_sha256 = "{"a" * 64}"\ncolour = 1\n', "unknown key(s) colour"),
    ('[administrators.a]\npublic_key = "nope"\n', "not a PEM public key"),
    ("surprise = 1\n", "unknown key(s) surprise"),
    (f'[principals.x]\ntoken_sha256 = "{"a" * 64}"\nprofiles = ["sub-ca", "tsa"]\n',
     "sub-ca, tsa CA-level"),
    ("[principals\n", "not valid TOML"),
])
def test_bad_access_files_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_access(text, "access.toml", PROFILES)
    assert message in str(err.value)


# -- the matrix -----------------------------------------------------------------------------


@dataclass
class Credential:
    name: str
    headers: Any  # (method, path, body) -> headers
    #: what a correct implementation allows: None = nothing
    principal: Principal | None


def _signed(key: KeyHandle, cert: asn1x509.Certificate) -> Any:
    def headers(method: str, path: str, body: bytes) -> dict[str, str]:
        return httpsig.sign_request(key, cert, method, path, "", body)
    return headers


def _bearer(token: str) -> Any:
    return lambda method, path, body: {"Authorization": f"Bearer {token}"}


def _subject(profile: str, cn: str = "matrix") -> str:
    if profile.startswith("cardholder"):
        return f"CN=张三,serialNumber={SSN},C=CN"
    if profile == "service":
        return f"CN={cn},C=CN"
    return f"CN={cn},O=部门,C=CN"


def _issue(ca: CertificateAuthority, profile: str, cn: str = "matrix"
           ) -> tuple[SoftwareKey, asn1x509.Certificate]:
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name(_subject(profile, cn))).sign(key)
    return key, ca.issue_from_csr(csr.dump(), profile).certificate


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertificateAuthority]:
    base = tmp_path_factory.mktemp("authz")
    (base / "ca.toml").write_text(EC_CONFIG, encoding="utf-8")
    authority = CertificateAuthority.init(base / "home", base / "ca.toml",
                                          audit=AuditLog.at_home(base / "home"))
    yield authority
    authority.close()


def _credentials(ca: CertificateAuthority) -> tuple[list[Credential], AccessConfig]:
    """Every kind of credential, and the access file that configures some of them."""
    def token_principal(name: str, ops: set[ApiOperation], profiles: set[str],
                        cas: set[str] | None = None) -> tuple[str, Principal]:
        token = f"token-{name}-0123456789abcdef"
        return token, Principal(name, frozenset(ops), frozenset(profiles),
                                frozenset(cas or {"issuing"}), token_sha256=hash_token(token))

    tokens = [
        token_principal("ra-token", set(ApiOperation), set(RA_PROFILES)),
        token_principal("status-only", {ApiOperation.STATUS}, set()),
        token_principal("issue-business", {ApiOperation.ISSUE}, {"business-system"}),
        token_principal("revoke-only", {ApiOperation.REVOKE}, set(RA_PROFILES)),
        token_principal("no-permissions", set(), set()),
        # misconfigured on purpose: every profile, CA-level ones included
        token_principal("everything", set(ApiOperation), set(PROFILES)),
        token_principal("other-ca", set(ApiOperation), set(RA_PROFILES), {"root"}),
    ]
    ra_key, ra_cert = _issue(ca, "service", "ra-service")
    rogue_key, rogue_cert = _issue(ca, "service", "unregistered-service")
    officer_key, officer_cert = _issue(ca, "ra-officer", "officer")
    system_key, system_cert = _issue(ca, "business-system", "employment")
    holder_key, holder_cert = _issue(ca, "cardholder-sign")
    ocsp = ca.ocsp_signer()
    tsa = ca.tsa_signer()
    ra_principal = Principal("ra", frozenset(ApiOperation), frozenset(RA_PROFILES),
                             frozenset({"issuing"}), certificate=CertificateIdentity(
                                 "service", certificate_fingerprint(ra_cert.dump())))
    # an officer wrongly configured as a principal is still refused (officers act via the RA)
    officer_principal = Principal("officer", frozenset(ApiOperation), frozenset(RA_PROFILES),
                                  frozenset({"issuing"}), certificate=CertificateIdentity(
                                      "ra-officer", certificate_fingerprint(officer_cert.dump())))
    # a business system configured under the service profile it does not carry: refused
    system_principal = Principal("employment", frozenset(ApiOperation), frozenset(RA_PROFILES),
                                 frozenset({"issuing"}), certificate=CertificateIdentity(
                                     "service", certificate_fingerprint(system_cert.dump())))
    principals = {p.name: p for _, p in tokens}
    for p in (ra_principal, officer_principal, system_principal):
        principals[p.name] = p
    access = AccessConfig(principals)
    credentials = [Credential(p.name, _bearer(t), p) for t, p in tokens]
    credentials += [
        Credential("ra-service-cert", _signed(ra_key, ra_cert), ra_principal),
        Credential("unregistered-service-cert", _signed(rogue_key, rogue_cert), None),
        Credential("officer-cert", _signed(officer_key, officer_cert), None),
        Credential("business-system-cert", _signed(system_key, system_cert), None),
        Credential("cardholder-cert", _signed(holder_key, holder_cert), None),
        Credential("ocsp-signer-cert", _signed(ocsp.key, ocsp.certificate), None),
        Credential("tsa-cert", _signed(tsa.key, tsa.certificate), None),
        Credential("unknown-token", _bearer("not-a-token-0123456789"), None),
        Credential("anonymous", lambda m, p, b: {}, None),
    ]
    return credentials, access


def _expected(principal: Principal | None, op: ApiOperation, profile: str | None) -> bool:
    """The oracle, written apart from ``decide``: the RA-style rules of the issue."""
    if principal is None or op not in principal.operations or "issuing" not in principal.cas:
        return False
    if profile is None:
        return True
    return profile in principal.profiles and profile not in {
        "sub-ca", "ocsp-signer", "tsa", "service"}


def test_authorisation_matrix_has_zero_unauthorised_successes(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    credentials, access = _credentials(ca)
    audit = AuditLog.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    client = create_app(ServiceConfig(authority=ca, access=access, audit_log=audit)
                        ).test_client()
    unauthorised: list[str] = []
    missed: list[str] = []
    refusals = 0
    successes = 0

    def check(cell: str, expected: bool, reply: Any, ok: int) -> None:
        nonlocal refusals, successes
        if reply.status_code == ok:
            successes += 1
            if not expected:
                unauthorised.append(f"{cell}: {reply.status_code}")
        else:
            assert reply.status_code in (401, 403), (cell, reply.status_code, reply.json)
            refusals += 1
            if expected:
                missed.append(f"{cell}: {reply.status_code} {reply.json}")
            if reply.status_code == 403:
                assert reply.json.get("permission") or "certificate" in reply.json["detail"]

    for cred in credentials:
        for profile in sorted(PROFILES):
            # issue
            key = SoftwareKey.generate("ec-p256")
            csr = der_to_pem(CsrBuilder().subject(parse_name(_subject(profile, "victim")))
                             .sign(key).dump(), "CERTIFICATE REQUEST").decode()
            body = json.dumps({"profile": profile, "csr": csr}).encode()
            path = "/api/v1/certificates"
            reply = client.post(path, data=body, headers=cred.headers("POST", path, body))
            check(f"{cred.name} issue {profile}",
                  _expected(cred.principal, ApiOperation.ISSUE, profile), reply, 201)
            # revoke a certificate of this profile
            _, victim = _issue(ca, profile, "victim")
            body = json.dumps({"reason": "superseded"}).encode()
            path = f"/api/v1/certificates/{victim.serial_number:X}/revoke"
            reply = client.post(path, data=body, headers=cred.headers("POST", path, body))
            check(f"{cred.name} revoke {profile}",
                  _expected(cred.principal, ApiOperation.REVOKE, profile), reply, 200)
            if reply.status_code != 200:
                assert ca.status(victim.serial_number).status.value == "good"
        path = f"/api/v1/certificates/{ca.certificate.serial_number:X}"
        reply = client.get(path, headers=cred.headers("GET", path, b""))
        check(f"{cred.name} status", _expected(cred.principal, ApiOperation.STATUS, None),
              reply, 200)

    assert unauthorised == []
    assert missed == []
    assert successes >= 3 * 4  # the RA token and the RA service certificate did their work
    # every refusal is in the audit log, with the permission when a principal was known
    recorded = [r.record for r in audit.records(1) if r.record.action == "ca.api.refused"]
    assert len(recorded) == refusals
    assert any(r.details.get("permission") == "issue profile=sub-ca ca=issuing"
               and r.actor == "everything" for r in recorded)


def test_an_in_process_caller_is_held_to_its_principal(ca: CertificateAuthority) -> None:
    """The embedded RA gets the CA through its principal: the same rules as over HTTP."""
    from ca.authorization import AuthorizedAuthority
    from ca.errors import NotPermitted

    ra = AuthorizedAuthority(ca, RA)
    key = SoftwareKey.generate("ec-p256")
    holder = CsrBuilder().subject(parse_name(_subject("cardholder-sign"))).sign(key).dump()
    assert ra.issue_from_csr(holder, "cardholder-sign").profile == "cardholder-sign"
    sub = CsrBuilder().subject(parse_name("CN=rogue sub-CA,C=CN")).sign(key).dump()
    before = len(ca.list_certificates(10_000))
    for profile in ("sub-ca", "ocsp-signer", "tsa", "service", "tls-server", "ra-officer"):
        with pytest.raises(NotPermitted, match=f"issue profile={profile} ca=issuing"):
            ra.issue_from_csr(sub, profile)
        with pytest.raises(NotPermitted):
            ra.issue_for_public_key(key.public_key(), "CN=x,C=CN", profile)
    assert len(ca.list_certificates(10_000)) == before
    signer = ca.ocsp_signer().certificate
    with pytest.raises(NotPermitted, match="revoke profile=ocsp-signer"):
        ra.revoke(signer.serial_number, "keyCompromise")
    assert ca.status(signer.serial_number).status.value == "good"
    assert [c.dump() for c in ra.chain()] == [c.dump() for c in ca.chain()]
    with pytest.raises(AttributeError, match="not available to principal ra"):
        ra.build_crl_der  # noqa: B018


def test_the_embedded_ra_takes_its_principal_from_the_access_file(
        ca: CertificateAuthority) -> None:
    from ca.authorization import access_path, ra_view, save_access
    from ca.errors import NotPermitted

    key = SoftwareKey.generate("ec-p256")
    holder = CsrBuilder().subject(parse_name(_subject("cardholder-sign"))).sign(key).dump()
    assert ra_view(ca, ca.home).principal.profiles == frozenset(RA_PROFILES)  # the default
    narrow = Principal("ra", frozenset({ApiOperation.ISSUE}), frozenset({"business-system"}),
                       frozenset({"issuing"}), token_sha256=hash_token("r" * 40))
    save_access(access_path(ca.home), AccessConfig({"ra": narrow}))
    try:
        with pytest.raises(NotPermitted, match="issue profile=cardholder-sign"):
            ra_view(ca, ca.home).issue_from_csr(holder, "cardholder-sign")
    finally:
        access_path(ca.home).unlink()
