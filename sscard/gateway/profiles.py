"""Which kind of certificate this is, by the profile the CA issued it under (certificate policy,
basic constraints, key usage, EKU): a name in the subject says nothing, since the RA or a CSR
may put any name there.

Each check returns the reasons the certificate does not fit (empty when it does), so that the
gateway can refuse or report them.
"""

from __future__ import annotations

from collections.abc import Collection

from asn1crypto import x509

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
_ENCRYPTING_USAGES = frozenset({"key_encipherment", "key_agreement", "data_encipherment"})


def policies_of(cert: x509.Certificate) -> set[str]:
    value = cert.certificate_policies_value
    return {p["policy_identifier"].dotted for p in value} if value is not None else set()


def _is_ca(cert: x509.Certificate) -> bool:
    bc = cert.basic_constraints_value
    ku = cert.key_usage_value
    return bool(bc is not None and bc["ca"].native) or bool(
        ku is not None and {"key_cert_sign", "crl_sign"} & set(ku.native))


def _policy_problem(cert: x509.Certificate, wanted: Collection[str], profile: str) -> list[str]:
    if policies_of(cert) & set(wanted):
        return []
    have = ", ".join(sorted(policies_of(cert))) or "none"
    return [f"not a {profile} certificate (its policies: {have}; needs one of "
            f"{', '.join(sorted(wanted))})"]


def business_system_problems(cert: x509.Certificate, policies: Collection[str]) -> list[str]:
    """A business system's certificate: the business-system policy, an explicit clientAuth
    EKU (no EKU is not "any use" here), not a CA."""
    problems = _policy_problem(cert, policies, "business-system")
    ekus = cert.extended_key_usage_value
    if ekus is None or CLIENT_AUTH not in {e.dotted for e in ekus}:
        problems.append("a business-system certificate must name clientAuth in its extended "
                        "key usage")
    if _is_ca(cert):
        problems.append("a CA certificate is not a business-system certificate")
    return problems


def cardholder_problems(cert: x509.Certificate, policies: Collection[str]) -> list[str]:
    """A cardholder's signing certificate: the cardholder policy, not a CA."""
    problems = _policy_problem(cert, policies, "cardholder")
    if _is_ca(cert):
        problems.append("a CA certificate does not authenticate a cardholder")
    return problems


def recipient_problems(cert: x509.Certificate, policies: Collection[str]) -> list[str]:
    """An encryption certificate: not a CA, a key usage that allows key transport or
    agreement, and an encryption profile's policy."""
    if _is_ca(cert):
        return ["a CA certificate is not an encryption certificate"]
    ku = cert.key_usage_value
    if ku is None or not set(ku.native) & _ENCRYPTING_USAGES:
        usages = ", ".join(sorted(ku.native)) if ku is not None else "none stated"
        return [f"its key usage ({usages}) does not allow encryption"]
    return _policy_problem(cert, policies, "encryption")
