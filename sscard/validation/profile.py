"""What RFC 5280 §4 asks of each certificate in a path (and of a CRL, §5), beyond §6.

pyhanko-certvalidator runs the §6 algorithm; it does not look at how the certificates are made.
A certificate that breaks a MUST of the profile is refused here: a malformed inside is not a
matter of taste for a verifier that takes certificates from callers. Each check returns the
problems it found, as sentences that name the certificate and the rule.

Positions: the trust anchor (checked only in the constrained-anchor trust mode), a CA in the
path, the leaf. Where PKITS (2011, RFC 3280 era) and the strict reading part ways, PKITS wins for
intermediates (4.6.4: a non-critical basicConstraints in an intermediate is valid) and the strict
rule is kept for trust anchors.
"""

from __future__ import annotations

import enum
from collections import Counter

from asn1crypto import crl, keys, x509

from sscard.crypto import oids
from sscard.validation.building import self_issued
from sscard.validation.names import name_text, valid_dns_name
from sscard.validation.result import ReasonCode

_QUALIFIERS = frozenset({"1.3.6.1.5.5.7.2.1", "1.3.6.1.5.5.7.2.2"})  # CPS pointer, user notice
_ANY_EKU = "2.5.29.37.0"

# Every extension the validator acts on; a critical one outside this set refuses the
# certificate (pyhanko's list, which it applies below the anchor).
KNOWN_EXTENSIONS = frozenset({
    "authority_information_access", "authority_key_identifier", "basic_constraints",
    "crl_distribution_points", "extended_key_usage", "freshest_crl", "key_identifier",
    "key_usage", "ocsp_no_check", "certificate_policies", "policy_mappings",
    "policy_constraints", "inhibit_any_policy", "name_constraints", "subject_alt_name",
})


class Position(enum.Enum):
    ANCHOR = "trust anchor"
    CA = "CA certificate"
    LEAF = "end-entity certificate"


class Weakness(Exception):
    """A key or algorithm below the policy (WEAK_ALGORITHM rather than INVALID)."""


def describe(cert: x509.Certificate, position: Position) -> str:
    return f"{position.value} {name_text(cert.subject)!r}"


def _extensions(cert: x509.Certificate) -> list[x509.Extension]:
    return list(cert["tbs_certificate"]["extensions"] or ())


def certificate_problems(
    cert: x509.Certificate, position: Position, *, critical_name_constraints: bool = True
) -> list[tuple[ReasonCode, str]]:
    """RFC 5280 §4.1-§4.2 MUSTs that ``cert`` breaks in ``position``, each with its code.

    A trust anchor is not held to the rules about how it was issued (serial number,
    authorityKeyIdentifier): real roots break them (Starfield G2 has serial 0, cross-signed
    roots lack AKI) and its issuer is not part of the path. ``critical_name_constraints``
    False follows the web PKI, where a non-critical nameConstraints is allowed (BR 7.1.2.5.2).
    policyConstraints and basicConstraints may be non-critical in an intermediate: PKITS
    (4.6.4, and many runs of 4.8-4.12) has such CA certificates in valid paths."""
    problems: list[tuple[ReasonCode, str]] = []

    def problem(text: str, code: ReasonCode = ReasonCode.INVALID) -> None:
        problems.append((code, text))

    exts = _extensions(cert)
    ids = [e["extn_id"].native for e in exts]
    critical = {e["extn_id"].native: bool(e["critical"].native) for e in exts}
    dupes = sorted(name for name, n in Counter(ids).items() if n > 1)
    if dupes:
        problem(f"extension(s) {', '.join(dupes)} appear more than once (§4.2)")
    if exts and cert["tbs_certificate"]["version"].native != "v3":
        problem("extensions in a certificate that is not version 3 (§4.1.2.1)")

    serial = cert["tbs_certificate"]["serial_number"]
    if position is not Position.ANCHOR:
        if serial.native <= 0:
            problem(f"serial number {serial.native} is not positive (§4.1.2.2)")
        if len(serial.contents) > 20:
            problem(f"serial number of {len(serial.contents)} octets, more than 20 (§4.1.2.2)")

    is_ca = cert.ca
    if (position is not Position.LEAF or is_ca) and not len(cert.subject.chosen):
        problem("a CA certificate with an empty subject (§4.1.2.6)")
    if position is not Position.LEAF and cert.key_identifier_value is None:
        problem("a CA certificate without subjectKeyIdentifier (§4.2.1.2)")
    if critical.get("key_identifier"):
        problem("a critical subjectKeyIdentifier (§4.2.1.2)")

    aki = cert.authority_key_identifier_value
    if aki is not None and critical.get("authority_key_identifier"):
        problem("a critical authorityKeyIdentifier (§4.2.1.1)")
    if position is not Position.ANCHOR and not self_issued(cert) and (
        aki is None or aki["key_identifier"].native is None
    ):
        problem("no authorityKeyIdentifier keyIdentifier in a certificate that is not "
                "self-issued (§4.2.1.1)")
    if critical.get("authority_information_access"):
        problem("a critical authorityInfoAccess (§4.2.2.1)")

    bc = cert.basic_constraints_value
    if position is Position.ANCHOR:
        if bc is None or not bc["ca"].native:
            problem("no basicConstraints cA in a trust anchor (§4.2.1.9)", ReasonCode.NOT_A_CA)
        elif not critical.get("basic_constraints"):
            problem("a non-critical basicConstraints in a trust anchor (§4.2.1.9)")
    ku = cert.key_usage_value
    if ku is not None:
        usages = set(ku.native)
        if "key_cert_sign" in usages and not is_ca:
            problem("keyUsage keyCertSign without basicConstraints cA (§4.2.1.9)",
                    ReasonCode.INVALID if position is Position.LEAF else ReasonCode.NOT_A_CA)
        if position is not Position.LEAF and "key_cert_sign" not in usages:
            problem("a CA whose keyUsage lacks keyCertSign (§4.2.1.3)", ReasonCode.KEY_USAGE)

    if cert.name_constraints_value is not None:
        if not is_ca:
            problem("nameConstraints in a certificate that is not a CA (§4.2.1.10)")
        elif critical_name_constraints and not critical.get("name_constraints"):
            problem("a non-critical nameConstraints (§4.2.1.10)")
    if (position is Position.ANCHOR and cert.policy_constraints_value is not None
            and not critical.get("policy_constraints")):
        problem("a non-critical policyConstraints in a trust anchor (§4.2.1.11)")

    eku = cert.extended_key_usage_value
    if eku is not None and not len(eku):
        problem("an empty extendedKeyUsage (§4.2.1.12)")

    for text in [*_san_problems(cert, critical), *_policy_problems(cert, critical)]:
        problem(text)
    if position is Position.ANCHOR:
        unknown = {n for n, c in critical.items() if c and n not in KNOWN_EXTENSIONS}
        if unknown:
            problem(f"unsupported critical extension(s) {', '.join(sorted(unknown))}",
                    ReasonCode.UNSUPPORTED_CRITICAL_EXTENSION)
    return problems


def _san_problems(cert: x509.Certificate, critical: dict[str, bool]) -> list[str]:
    san = cert.subject_alt_name_value
    problems: list[str] = []
    if san is None:
        if not len(cert.subject.chosen):
            problems.append("an empty subject and no subjectAltName (§4.1.2.6)")
        return problems
    if not len(cert.subject.chosen) and not critical.get("subject_alt_name"):
        problems.append("an empty subject with a non-critical subjectAltName (§4.2.1.6)")
    if not len(san):
        problems.append("an empty subjectAltName (§4.2.1.6)")
    for general_name in san:
        if general_name.name == "dns_name":
            value = general_name.chosen.native
            if not valid_dns_name(value):
                problems.append(f"subjectAltName dNSName {value!r} is not a host name (§4.2.1.6)")
        elif general_name.name == "ip_address":
            if len(general_name.chosen.contents) not in (4, 16):
                problems.append("a subjectAltName iPAddress that is not 4 or 16 octets")
        elif general_name.name in ("rfc822_name", "uniform_resource_identifier"):
            if not general_name.chosen.native:
                problems.append(f"an empty subjectAltName {general_name.name} (§4.2.1.6)")
    return problems


def _policy_problems(cert: x509.Certificate, critical: dict[str, bool]) -> list[str]:
    policies = cert.certificate_policies_value
    if policies is None or not critical.get("certificate_policies"):
        return []
    problems = []
    for info in policies:
        for qualifier in info["policy_qualifiers"] or ():
            oid = qualifier["policy_qualifier_id"].dotted
            if oid not in _QUALIFIERS:
                problems.append(f"a critical certificatePolicies with the unknown policy "
                                f"qualifier {oid} (§4.2.1.4)")
    return problems


# Named curves the validator accepts for keys, by asn1crypto's name (SM2 by its OID).
_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1", oids.SM2_CURVE, "sm2p256v1"})


def key_weakness(public_key: keys.PublicKeyInfo, *, allow_legacy: bool) -> str | None:
    """Why the key is below the algorithm policy (None when it is acceptable). Raises
    :class:`ValueError` for a key algorithm the validator does not know at all."""
    algorithm = public_key["algorithm"]["algorithm"].dotted
    name = public_key["algorithm"]["algorithm"].native
    if name == "rsa" or algorithm == "1.2.840.113549.1.1.10":
        bits = public_key["public_key"].parsed["modulus"].native.bit_length()
        floor = 1024 if allow_legacy else 2048
        return f"a {bits}-bit RSA key (at least {floor} needed)" if bits < floor else None
    if name == "ec":
        params = public_key["algorithm"]["parameters"]
        if params.name != "named":
            return "an EC key with explicit curve parameters (a named curve is needed)"
        curve = params.chosen.native
        if curve in _CURVES or params.chosen.dotted == oids.SM2_CURVE:
            return None
        return f"an EC key on the curve {curve} (not an accepted curve)"
    if name == "dsa":
        params = public_key["algorithm"]["parameters"]
        bits = params["p"].native.bit_length() if params.native is not None else None
        if not allow_legacy:
            size = f"{bits}-bit " if bits else ""
            return f"a {size}DSA key (DSA is accepted only with legacy algorithms allowed)"
        if bits is None:
            return None  # inherited from the issuer (RFC 3279 §2.3.2)
        return f"a {bits}-bit DSA key (at least 1024 needed)" if bits < 1024 else None
    if name in ("ed25519", "ed448") or algorithm.startswith(oids.SM2_CURVE):
        return None
    raise ValueError(f"unknown public key algorithm {algorithm}")


def crl_problems(certificate_list: crl.CertificateList) -> list[str]:
    """RFC 5280 §5.2.3: a CRL carries a CRL number, non-critical."""
    exts = list(certificate_list["tbs_cert_list"]["crl_extensions"] or ())
    numbers = [e for e in exts if e["extn_id"].native == "crl_number"]
    if not numbers:
        return ["no cRLNumber extension (§5.2.3)"]
    if numbers[0]["critical"].native:
        return ["a critical cRLNumber extension (§5.2.3)"]
    return []
