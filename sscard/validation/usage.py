"""Is a (validated) leaf certificate fit for what the caller wants to do with it?"""

from __future__ import annotations

import enum
import ipaddress

from asn1crypto import x509

from sscard.validation.result import Reason, ReasonCode

_ANY_EKU = "2.5.29.37.0"


class Purpose(enum.Enum):
    """What the leaf is going to be used for."""

    SERVER = "server"
    """TLS server: keyUsage digitalSignature or keyEncipherment, EKU serverAuth."""
    CLIENT = "client"
    """TLS client: keyUsage digitalSignature or keyAgreement, EKU clientAuth."""
    SIGN = "sign"
    """Document signing: keyUsage digitalSignature or nonRepudiation (EKU not checked)."""
    ANY = "any"
    """No usage check."""


# (acceptable key usages: any one will do, required EKU OID or None)
_REQUIREMENTS: dict[Purpose, tuple[frozenset[str], str | None]] = {
    Purpose.SERVER: (frozenset({"digital_signature", "key_encipherment"}), "1.3.6.1.5.5.7.3.1"),
    Purpose.CLIENT: (frozenset({"digital_signature", "key_agreement"}), "1.3.6.1.5.5.7.3.2"),
    Purpose.SIGN: (frozenset({"digital_signature", "non_repudiation"}), None),
    Purpose.ANY: (frozenset(), None),
}


def check_purpose(cert: x509.Certificate, purpose: Purpose) -> list[Reason]:
    """Reasons the certificate does not fit ``purpose`` (empty when it does).

    An absent keyUsage or extendedKeyUsage extension does not restrict (RFC 5280 §4.2.1.3 and
    §4.2.1.12); anyExtendedKeyUsage satisfies any EKU."""
    usages, eku = _REQUIREMENTS[purpose]
    reasons: list[Reason] = []
    ku = cert.key_usage_value
    if usages and ku is not None and not (set(ku.native) & usages):
        reasons.append(
            Reason(
                ReasonCode.WRONG_PURPOSE,
                f"key usage {', '.join(sorted(ku.native))} does not allow {purpose.value} use "
                f"(needs one of {', '.join(sorted(usages))})",
            )
        )
    ekus = cert.extended_key_usage_value
    if eku is not None and ekus is not None:
        present = {e.dotted for e in ekus}
        if eku not in present and _ANY_EKU not in present:
            reasons.append(
                Reason(
                    ReasonCode.WRONG_PURPOSE,
                    f"extended key usage {', '.join(sorted(str(e.native) for e in ekus))} "
                    f"does not include {eku} needed for {purpose.value} use",
                )
            )
    return reasons


def _dns_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 §6.4: exact match, or a wildcard as the whole left-most label."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return pattern == hostname


def check_hostname(cert: x509.Certificate, hostname: str) -> list[Reason]:
    """Reasons the certificate does not name ``hostname`` in its subjectAltName (empty when it
    does). The subject CN is not consulted (RFC 6125 §6.4.4 leaves it to legacy clients)."""
    wanted = hostname.strip().lower().rstrip(".")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(wanted)
    except ValueError:
        ip = None
    names: list[str] = []
    san = cert.subject_alt_name_value
    for general_name in san or ():
        if ip is None and general_name.name == "dns_name":
            names.append(general_name.native)
            if _dns_matches(general_name.native, wanted):
                return []
        elif ip is not None and general_name.name == "ip_address":
            names.append(general_name.native)
            try:
                if ipaddress.ip_address(general_name.native) == ip:
                    return []
            except ValueError:
                continue  # an address with a netmask belongs to name constraints, not here
    kind = "IP address" if ip is not None else "DNS name"
    listed = ", ".join(names) if names else "none"
    return [
        Reason(
            ReasonCode.HOSTNAME_MISMATCH,
            f"{hostname!r} is not among the certificate's subjectAltName {kind}s ({listed})",
        )
    ]
