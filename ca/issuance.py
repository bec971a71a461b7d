"""From a request to a signed certificate: check it against its profile, then build and sign.

Pure functions of (issuer, profile, request, serial, time): no database here. ``check_csr`` and
``check_public_key`` refuse, with the reason, whatever the profile forbids; ``sign_certificate``
turns an approved request into a certificate signed by the issuer's key handle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import algos, core, x509
from asn1crypto import csr as asn1csr

from ca.csr_reader import CsrParts, read_csr
from ca.errors import RequestRefused
from ca.profile import SUBJECT_ATTRIBUTES, Profile, bad_characters
from ca.request_encoding import Subject, spki_and_key_id, subject_from_name, subject_from_text
from sscard import der
from sscard.asn1.register import SocialInsuranceNumber
from sscard.crypto.algorithms import KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.keys.base import KeyHandle
from sscard.x509.builder import CertificateBuilder
from sscard.x509.errors import X509Error
from sscard.x509.extensions import key_identifier
from sscard.x509.parse import load_csr
from sscard.x509.verify import verify_csr_parts

SERIAL_BITS = 159  # RFC 5280 allows 20 octets; CA/B Forum asks for at least 64 random bits
BACKDATE = dt.timedelta(minutes=1)  # tolerate relying parties whose clocks run slightly slow
EXTRA_KEYS = frozenset({"social_insurance_number", "dns_names", "validity_days"})
_SIN_RE = re.compile(r"^[0-9A-Za-z]{6,32}$")


def random_serial() -> int:
    """A positive random serial of exactly 20 octets (top bit of 159 set, so never padded)."""
    return secrets.randbits(SERIAL_BITS - 1) | (1 << (SERIAL_BITS - 1))


@dataclass(frozen=True)
class Issuer:
    """What signing needs to know about the issuing CA."""

    certificate: x509.Certificate
    key: KeyHandle
    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None
    signature_algorithm: SignatureAlgorithm | None = None
    # extension DER fixed by (profile, usages) under this issuer, filled on first use
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def subject(self) -> x509.Name:
        return self.certificate.subject

    @property
    def key_id(self) -> bytes:
        ski = self.certificate.key_identifier
        return ski if ski else key_identifier(self.key.public_key())

    @property
    def subject_der(self) -> bytes:
        found = self.cache.get("subject_der")
        if found is None:
            found = self.cache["subject_der"] = bytes(self.subject.dump())
        return found

    @property
    def not_after(self) -> dt.datetime:
        found = self.cache.get("not_after")
        if found is None:
            found = self.cache["not_after"] = \
                self.certificate["tbs_certificate"]["validity"]["not_after"].native
        return found


@dataclass(frozen=True)
class Approved:
    """A request that passed its profile, with everything the certificate will carry."""

    profile: Profile
    public_key: PublicKey
    subject_info: Subject
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...]
    subject_alt_name: Any  # asn1crypto GeneralNames value, or None
    social_insurance_number: str | None
    path_length: int | None
    validity: dt.timedelta
    kind: str  # csr | public_key
    request_der: bytes
    spki_der: bytes
    key_id: bytes  # RFC 5280 §4.2.1.2 method (1), the subjectKeyIdentifier

    @property
    def subject(self) -> x509.Name:
        return self.subject_info.name

    @property
    def subject_der(self) -> bytes:
        return self.subject_info.der

    @property
    def subject_text(self) -> str:
        return self.subject_info.text


def _refuse(profile: Profile, why: str) -> RequestRefused:
    return RequestRefused(f"refused by profile {profile.name}: {why}")


_SHORT_NAMES = {v: k for k, v in SUBJECT_ATTRIBUTES.items()}
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _check_subject(profile: Profile, subject: Subject) -> None:
    """The profile's subject rules: attribute types, counts, lengths, characters, values."""
    rules = profile.subject_rules
    counts: dict[str, int] = {}
    for attr, value in subject.pairs:
        shown = _SHORT_NAMES.get(attr, attr)
        rule = rules.get(attr)
        if rule is None:
            allowed = ", ".join(_SHORT_NAMES.get(a, a) for a in rules)
            raise _refuse(profile, f"subject attribute {shown} is not allowed (allowed: "
                          f"{allowed})")
        counts[attr] = counts.get(attr, 0) + 1
        if counts[attr] > rule.max:
            raise _refuse(profile, f"subject has more than {rule.max} {shown} attribute(s)")
        why = bad_characters(value)
        if why is not None:
            raise _refuse(profile, f"subject {shown}: {why}")
        if not value:
            raise _refuse(profile, f"subject {shown} is empty")
        if len(value) > rule.max_length:
            raise _refuse(profile, f"subject {shown} is {len(value)} characters long "
                          f"(at most {rule.max_length})")
        if rule.values is not None and value not in rule.values:
            raise _refuse(profile, f"subject {shown} {value!r} is not one of the profile's "
                          f"values ({', '.join(sorted(rule.values))})")
        if rule.pattern is not None and not rule.pattern.fullmatch(value):
            raise _refuse(profile, f"subject {shown} {value!r} does not match the profile's "
                          f"pattern {rule.pattern.pattern}")
        fault = rule.problem(value)
        if fault is not None:
            raise _refuse(profile, f"subject {shown}: {fault}")
    for attr, rule in rules.items():
        if counts.get(attr, 0) < rule.min:
            raise _refuse(profile, f"subject lacks required attribute "
                          f"{_SHORT_NAMES.get(attr, attr)}")


def _check_san(profile: Profile, san: Any) -> None:
    """The profile's subjectAltName rule: entry kinds, count, DNS name syntax, wildcards."""
    rule = profile.san_rule
    entries = list(san)
    if not entries:
        raise _refuse(profile, "subjectAltName is empty")
    if len(entries) > rule.max:
        raise _refuse(profile, f"subjectAltName has {len(entries)} entries (at most {rule.max})")
    for entry in entries:
        kind = entry.name
        if kind not in rule.types:
            raise _refuse(profile, f"subjectAltName entries of type {kind} are not allowed")
        value = entry.native
        if kind == "dns_name":
            labels = str(value).split(".")
            if labels[0] == "*":
                if not rule.wildcard:
                    raise _refuse(profile, f"wildcard DNS name {value!r} is not allowed")
                labels = labels[1:]
                if len(labels) < 2:
                    raise _refuse(profile, f"wildcard {value!r} must sit below a domain")
            if len(str(value)) > 253 or not labels or not all(
                    _DNS_LABEL.match(label) for label in labels):
                raise _refuse(profile, f"{value!r} is not a valid DNS name")
        elif isinstance(value, str):
            why = bad_characters(value)
            if why is not None:
                raise _refuse(profile, f"subjectAltName {kind}: {why}")


def _requested_extensions(request: asn1csr.CertificationRequest) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for attr in request["certification_request_info"]["attributes"]:
        if attr["type"].native != "extension_request":
            continue
        for exts in attr["values"]:
            for ext in exts:
                name = ext["extn_id"].native
                if name in found:
                    raise RequestRefused(f"CSR requests extension {name} twice")
                found[name] = ext["extn_value"].parsed
    return found


def _approve(
    profile: Profile,
    public_key: PublicKey,
    subject: Subject,
    requested: Mapping[str, Any],
    extra: Mapping[str, Any],
    kind: str,
    request_der: bytes | None,
) -> Approved:
    if not EXTRA_KEYS.issuperset(extra):
        unknown = sorted(set(extra) - EXTRA_KEYS)
        raise _refuse(profile, f"unknown request field(s) {', '.join(unknown)}")
    if public_key.algorithm not in profile.key_algorithms:
        allowed = ", ".join(sorted(a.value for a in profile.key_algorithms))
        raise _refuse(profile, f"{public_key.algorithm.value} keys are not allowed "
                      f"(allowed: {allowed})")

    ku_allowed = profile.key_usage[public_key.algorithm.key_type]
    key_usage = ku_allowed
    eku = profile.extended_key_usage
    san = None
    path_length = profile.path_length
    for name, value in requested.items():
        if name == "basic_constraints":
            wants_ca = bool(value["ca"].native)
            if wants_ca and not profile.is_ca:
                raise _refuse(profile, "the request asks for a CA certificate (basicConstraints "
                              "CA=true) but this profile issues end-entity certificates")
            if not wants_ca and profile.is_ca:
                raise _refuse(profile, "the request asks for CA=false from a CA profile")
            asked_len = value["path_len_constraint"].native
            if wants_ca and asked_len is not None:
                if path_length is not None and asked_len > path_length:
                    raise _refuse(profile, f"requested path length {asked_len} exceeds "
                                  f"the profile's {path_length}")
                path_length = asked_len
            continue
        if name not in profile.allowed_request_extensions:
            raise _refuse(profile, f"the request asks for extension {name}, which this "
                          "profile does not accept in requests")
        if name == "key_usage":
            asked = frozenset(value.native)
            outside = sorted(asked - ku_allowed)
            if outside:
                raise _refuse(profile, f"key usage {', '.join(outside)} is outside the "
                              f"profile's ({', '.join(sorted(ku_allowed))}) for "
                              f"{public_key.algorithm.value} keys")
            if not asked:
                raise _refuse(profile, "the requested key usage is empty")
            key_usage = asked
        elif name == "extended_key_usage":
            asked_eku = [p.dotted for p in value]
            outside = sorted(set(asked_eku) - set(profile.extended_key_usage))
            if outside:
                raise _refuse(profile, f"extended key usage {', '.join(outside)} is outside "
                              "the profile's")
            eku = tuple(asked_eku)
        elif name == "subject_alt_name":
            san = value

    if extra.get("dns_names"):
        if "subject_alt_name" not in profile.allowed_request_extensions:
            raise _refuse(profile, "subject alternative names are not allowed")
        names = extra["dns_names"]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise _refuse(profile, "dns_names must be a list of host names")
        san = x509.GeneralNames([x509.GeneralName(name="dns_name", value=n) for n in names])
    if san is not None:
        _check_san(profile, san)
    _check_subject(profile, subject)

    sin = extra.get("social_insurance_number") or None
    if profile.social_insurance_number == "absent":
        if sin:
            raise _refuse(profile, "this profile carries no social insurance number")
    else:
        sin = sin or subject.attributes.get("serial_number")
        if sin is None and profile.social_insurance_number == "required":
            raise _refuse(profile, "a social insurance number is required (subject "
                          "serialNumber or the social_insurance_number field)")
        if sin is not None and not _SIN_RE.match(str(sin)):
            raise _refuse(profile, f"social insurance number {sin!r} must be 6-32 letters "
                          "or digits")
        # the profile's check of serialNumber holds for the number however it is given
        serial_rule = profile.subject_rules.get("serial_number")
        fault = serial_rule.problem(str(sin)) if serial_rule and sin is not None else None
        if fault is not None:
            raise _refuse(profile, f"social insurance number: {fault}")

    days = extra.get("validity_days", profile.validity_days)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days:
        raise _refuse(profile, "validity_days must be a positive integer")
    if days > profile.validity_days:
        raise _refuse(profile, f"validity of {days} days exceeds the profile's "
                      f"{profile.validity_days}")
    spki, key_id = spki_and_key_id(public_key)
    return Approved(
        profile=profile, public_key=public_key, subject_info=subject, key_usage=key_usage,
        extended_key_usage=eku, subject_alt_name=san,
        social_insurance_number=str(sin) if sin else None, path_length=path_length,
        validity=dt.timedelta(days=days), kind=kind,
        request_der=request_der if request_der is not None else spki,
        spki_der=spki, key_id=key_id,
    )


def check_csr(
    request: asn1csr.CertificationRequest | CsrParts | bytes,
    profile: Profile,
    extra: Mapping[str, Any] | None = None,
    *,
    attested_key: bytes | None = None,
) -> Approved:
    """Parse (PEM or DER; or take what ``ca.csr_reader`` read), check proof of possession,
    then check against the profile.

    ``attested_key``: the SHA-256 of the SubjectPublicKeyInfo whose possession an authorised
    RA has verified and vouches for in its signed request (CMP's ``raVerified``, RFC 4210
    5.2.8.4); the CSR's signature is then not verified again, but its key must be that one."""
    parts = read_csr(request) if isinstance(request, bytes) else request
    if isinstance(parts, CsrParts):
        return _check_read_csr(parts, profile, extra or {}, attested_key)
    assert not isinstance(request, CsrParts)
    try:
        parsed = load_csr(request) if isinstance(request, bytes) else request
    except X509Error as exc:
        raise RequestRefused(f"certificate request rejected: {exc}") from None
    public_key = (_attested_public_key(parsed, attested_key) if attested_key is not None
                  else proven_public_key(parsed))
    subject = subject_from_name(parsed["certification_request_info"]["subject"])
    return _approve(profile, public_key, subject, _requested_extensions(parsed), extra or {},
                    "csr", parsed.dump())


def _check_read_csr(parts: CsrParts, profile: Profile, extra: Mapping[str, Any],
                    attested_key: bytes | None) -> Approved:
    """``check_csr`` of a request ``ca.csr_reader`` read (the common shape, no attributes):
    the same checks on the parts it read, without asn1crypto's parse of the whole request."""
    if attested_key is not None:
        public_key = _attested_spki_key(parts.spki, attested_key)
    else:
        # the proof of possession over the octets the reader found, as the strict parse's
        public_key = _proven_key(parts.spki, parts.info, parts.signature,
                                 parts.signature_algorithm, parts.signature_algorithm.oid)
    return _approve(profile, public_key, parts.subject, {}, extra, "csr", parts.der)


def proven_public_key(request: asn1csr.CertificationRequest) -> PublicKey:
    """The CSR's public key, once its signature proves possession of the private key."""
    info = request["certification_request_info"]
    algorithm = request["signature_algorithm"]
    return _proven_key(info["subject_pk_info"].dump(), info.dump(), request["signature"].native,
                       algorithm, algorithm["algorithm"].dotted)


def _proven_key(spki: bytes, info: bytes, signature: bytes,
                algorithm: SignatureAlgorithm | object, algorithm_oid: str) -> PublicKey:
    try:
        return verify_csr_parts(spki, info, signature, algorithm)
    except CryptoError as exc:
        fallback = _sm2_pop_with_empty_id(spki, info, signature, algorithm_oid)
        if fallback is None:
            raise RequestRefused(f"certificate request rejected: {exc}") from None
        return fallback


def _attested_public_key(request: asn1csr.CertificationRequest, attested: bytes) -> PublicKey:
    """The CSR's public key, if it is the one whose SHA-256 the RA attested."""
    return _attested_spki_key(request["certification_request_info"]["subject_pk_info"].dump(),
                              attested)


def _attested_spki_key(spki: bytes, attested: bytes) -> PublicKey:
    if not hmac.compare_digest(hashlib.sha256(spki).digest(), attested):
        raise RequestRefused("certificate request rejected: its key is not the one whose "
                             "possession the caller attested")
    try:
        return PublicKey.from_spki(spki)
    except (CryptoError, ValueError) as exc:
        raise RequestRefused(f"certificate request rejected: {exc}") from None


def _sm2_pop_with_empty_id(spki: bytes, info: bytes, signature: bytes,
                           algorithm_oid: str) -> PublicKey | None:
    """OpenSSL 3.0's ``req`` signs SM2 CSRs with an empty ID unless given
    ``-sigopt distid:1234567812345678``. Such a signature still proves possession of the
    private key, so it is accepted here (the certificate is then signed as GM/T 0009 says)."""
    try:
        key = PublicKey.from_spki(spki)
        if key.algorithm is not KeyAlgorithm.SM2 or algorithm_oid != SignatureAlgorithm.SM2_SM3.oid:
            return None
        key.verify(signature, info, SignatureAlgorithm.SM2_SM3, uid=b"")
    except (CryptoError, ValueError):
        return None
    return key


def check_public_key(
    public_key: PublicKey,
    subject: x509.Name | str,
    profile: Profile,
    extra: Mapping[str, Any] | None = None,
) -> Approved:
    """For a key whose possession the (authenticated) caller vouches for, e.g. the KMC's."""
    try:
        name = subject_from_text(subject) if isinstance(subject, str) else \
            subject_from_name(subject)
    except X509Error as exc:
        raise RequestRefused(f"subject {subject!r}: {exc}") from None
    # the request record is the SPKI, which _approve encodes anyway
    return _approve(profile, public_key, name, {}, extra or {}, "public_key", None)


def _static_extension_ders(issuer: Issuer | None, approved: Approved) -> list[bytes | str]:
    """The extensions in certificate order: DER for those fixed by issuer and profile, or the
    name of a per-certificate one ("ski", "san", "sin") for the caller to fill in."""
    p = approved.profile
    bc: dict[str, Any] = {"ca": p.is_ca}
    if p.is_ca and approved.path_length is not None:
        bc["path_len_constraint"] = approved.path_length
    out: list[bytes | str] = [
        _ext_der("basic_constraints", bc, p.basic_constraints_critical),
        _ext_der("key_usage", set(approved.key_usage), p.key_usage_critical),
        "ski",
    ]
    if issuer is not None:
        out.append(_ext_der("authority_key_identifier", {"key_identifier": issuer.key_id}))
    else:  # self-signed root: AKI names its own key, as OpenSSL does
        out.append("aki-self")
    if approved.extended_key_usage:
        out.append(_ext_der("extended_key_usage", list(approved.extended_key_usage),
                            p.extended_key_usage_critical))
    if p.certificate_policies:
        out.append(_ext_der("certificate_policies",
                            [{"policy_identifier": oid} for oid in p.certificate_policies]))
    out.append("san")
    if issuer is not None and p.crl_distribution_point and issuer.crl_url:
        out.append(_ext_der("crl_distribution_points", [{
            "distribution_point": x509.DistributionPointName(
                name="full_name",
                value=[x509.GeneralName(name="uniform_resource_identifier",
                                        value=issuer.crl_url)]),
        }]))
    if issuer is not None and p.authority_info_access:
        access = []
        if issuer.ocsp_url:
            access.append({"access_method": "ocsp", "access_location": x509.GeneralName(
                name="uniform_resource_identifier", value=issuer.ocsp_url)})
        if issuer.ca_issuers_url:
            access.append({"access_method": "ca_issuers", "access_location": x509.GeneralName(
                name="uniform_resource_identifier", value=issuer.ca_issuers_url)})
        if access:
            out.append(_ext_der("authority_information_access", access))
    if p.ocsp_no_check:
        out.append(_ext_der("ocsp_no_check", core.Null()))
    out.append("sin")
    return out


def _ext_der(name: str, value: Any, critical: bool = False) -> bytes:
    return bytes(x509.Extension(
        {"extn_id": name, "critical": critical, "extn_value": value}).dump())


_SKI_OID = core.ObjectIdentifier("2.5.29.14").dump()
_AKI_OID = core.ObjectIdentifier("2.5.29.35").dump()
_SIN_OID = core.ObjectIdentifier("1.2.156.10260.4.1.2").dump()


def extensions_der(issuer: Issuer | None, approved: Approved, key_id: bytes) -> bytes:
    """The DER of the ``[3] Extensions`` field.

    The parts fixed by (issuer, profile, usages) are encoded once by asn1crypto and cached on
    the issuer; the per-certificate ones are a few bytes written by ``sscard.der``."""
    cache_key = (approved.profile.label, approved.key_usage, approved.extended_key_usage,
                 approved.path_length)
    cache = issuer.cache if issuer is not None else {}
    template = cache.get(cache_key)
    if template is None:
        template = _static_extension_ders(issuer, approved)
        cache[cache_key] = template
    parts = []
    for item in template:
        if isinstance(item, bytes):
            parts.append(item)
        elif item == "ski":
            parts.append(der.extension(_SKI_OID, der.octet_string(key_id)))
        elif item == "aki-self":
            parts.append(der.extension(_AKI_OID, der.sequence(der.tlv(0x80, key_id))))
        elif item == "san" and approved.subject_alt_name is not None:
            parts.append(_ext_der("subject_alt_name", approved.subject_alt_name))
        elif item == "sin" and approved.social_insurance_number:
            value = der.tlv(0x13, approved.social_insurance_number.encode("ascii"))
            parts.append(der.extension(_SIN_OID, value))
    return der.explicit(3, der.sequence(*parts))


def validity_of(issuer: Issuer | None, approved: Approved, now: dt.datetime) -> tuple[
        dt.datetime, dt.datetime]:
    not_before = now.astimezone(dt.UTC).replace(microsecond=0) - BACKDATE
    not_after = not_before + approved.validity
    if issuer is not None and not_after > issuer.not_after:
        not_after = issuer.not_after  # never outlive the issuer (RFC 5280 §6 would reject)
    return not_before, not_after


def validity_der(issuer: Issuer | None, approved: Approved, now: dt.datetime) -> bytes:
    """The Validity SEQUENCE. Under an issuer it is encoded once per second and validity: a
    batch issues its certificates within the same second or two."""
    if issuer is None:
        return der.sequence(*map(der.time, validity_of(None, approved, now)))
    second = now.replace(microsecond=0)
    key = ("validity", approved.validity)
    cached = issuer.cache.get(key)
    if cached is not None and cached[0] == second:
        return cached[1]
    encoded = der.sequence(*map(der.time, validity_of(issuer, approved, now)))
    issuer.cache[key] = (second, encoded)  # one tuple: a concurrent reader sees both or none
    return encoded


def tbs_der(
    issuer: Issuer | None,
    approved: Approved,
    serial: int,
    now: dt.datetime,
    algorithm: SignatureAlgorithm,
) -> bytes:
    """The TBSCertificate DER, assembled from cached and per-certificate parts (see sscard.der)."""
    issuer_name = issuer.subject_der if issuer is not None else approved.subject_der
    return der.sequence(
        b"\xa0\x03\x02\x01\x02",  # [0] version v3
        der.integer(serial),
        algorithm_der(algorithm),
        issuer_name,
        validity_der(issuer, approved, now),
        approved.subject_der,
        approved.spki_der,
        extensions_der(issuer, approved, approved.key_id),
    )


_ALG_DER: dict[SignatureAlgorithm, bytes] = {}


def algorithm_der(algorithm: SignatureAlgorithm) -> bytes:
    found = _ALG_DER.get(algorithm)
    if found is None:
        found = _ALG_DER[algorithm] = bytes(
            algos.SignedDigestAlgorithm(algorithm.asn1_algorithm_identifier()).dump())
    return found


def sign_certificate(
    issuer: Issuer | None,
    approved: Approved,
    serial: int,
    now: dt.datetime,
    self_key: KeyHandle | None = None,
) -> bytes:
    """Build and sign; returns the certificate DER. ``issuer`` None: self-signed by
    ``self_key`` (a root)."""
    key = issuer.key if issuer is not None else self_key
    assert key is not None
    alg = (issuer.signature_algorithm if issuer is not None else None) \
        or key.default_signature_algorithm
    tbs = tbs_der(issuer, approved, serial, now, alg)
    signature = key.sign(tbs, alg)
    return der.sequence(tbs, algorithm_der(alg), der.bit_string(signature))


def reference_certificate(
    issuer: Issuer | None,
    approved: Approved,
    serial: int,
    now: dt.datetime,
    self_key: KeyHandle | None = None,
) -> x509.TbsCertificate:
    """The same TBSCertificate through the project's CertificateBuilder (slow, but the
    yardstick the fast path is tested against)."""
    not_before, not_after = validity_of(issuer, approved, now)
    builder = (
        CertificateBuilder()
        .subject(approved.subject)
        .issuer(issuer.subject if issuer is not None else approved.subject)
        .public_key(approved.public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    key_id = approved.key_id
    for item in _static_extension_ders(issuer, approved):
        if isinstance(item, bytes):
            ext = x509.Extension.load(item)
            builder = builder.add_extension(ext["extn_id"].native, ext["extn_value"].parsed,
                                            bool(ext["critical"].native))
        elif item == "ski":
            builder = builder.add_extension("key_identifier", key_id)
        elif item == "aki-self":
            builder = builder.add_extension("authority_key_identifier",
                                            {"key_identifier": key_id})
        elif item == "san" and approved.subject_alt_name is not None:
            builder = builder.add_extension("subject_alt_name", approved.subject_alt_name)
        elif item == "sin" and approved.social_insurance_number:
            builder = builder.add_extension(
                "social_insurance_number",
                SocialInsuranceNumber(approved.social_insurance_number))
    key = issuer.key if issuer is not None else self_key
    assert key is not None
    alg = (issuer.signature_algorithm if issuer is not None else None) \
        or key.default_signature_algorithm
    return builder.tbs(alg)
