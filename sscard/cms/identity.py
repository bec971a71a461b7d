"""Who a certificate names: subject, common name and the social insurance number."""

from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto import x509

from sscard import asn1 as _asn1  # noqa: F401  (registers social_insurance_number)
from sscard.x509.names import format_name, name_attribute


@dataclass(frozen=True)
class SignerIdentity:
    subject: str
    common_name: str | None
    social_insurance_number: str | None
    """From the 1.2.156.10260.4.1.2 extension, else the subject's serialNumber."""
    issuer: str
    serial_number: int
    certificate: x509.Certificate = field(repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "common_name": self.common_name,
            "social_insurance_number": self.social_insurance_number,
            "issuer": self.issuer,
            "serial_number": format(self.serial_number, "x"),
        }


def social_insurance_number(cert: x509.Certificate) -> str | None:
    for ext in cert["tbs_certificate"]["extensions"] or ():
        if ext["extn_id"].native == "social_insurance_number":
            return str(ext["extn_value"].parsed.native)
    return name_attribute(cert.subject, "serial_number")


def identify(cert: x509.Certificate) -> SignerIdentity:
    return SignerIdentity(
        subject=format_name(cert.subject),
        common_name=name_attribute(cert.subject, "common_name"),
        social_insurance_number=social_insurance_number(cert),
        issuer=format_name(cert.issuer),
        serial_number=cert.serial_number,
        certificate=cert,
    )
