"""A throw-away PKI for the CMS and gateway tests: root -> issuing CA -> leaves (signers,
envelope recipients, a TSA), CRLs with chosen revocation times, built with sscard.x509."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import crl, x509

from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CrlBuilder
from tests.validation.chain import Issued, issue_cert

NOW = datetime.now(UTC).replace(microsecond=0)


def make_ca(subject: str, issuer: Issued | None = None, algorithm: str = "sm2",
            extra: Sequence[tuple[str, Any, bool]] = ()) -> Issued:
    key = SoftwareKey.generate(algorithm)
    exts = [("basic_constraints", {"ca": True}, True),
            ("key_usage", {"key_cert_sign", "crl_sign", "digital_signature"}, True), *extra]
    cert = issue_cert(subject, key, issuer, exts, NOW - timedelta(days=3650),
                 NOW + timedelta(days=3650))
    return Issued(cert, key)


def make_leaf(subject: str, issuer: Issued, algorithm: str = "sm2", *,
              key_usage: Sequence[str] = ("digital_signature", "non_repudiation"),
              eku: Sequence[str] | None = None, critical_eku: bool = False,
              ssn: str | None = None, not_before: datetime | None = None,
              not_after: datetime | None = None,
              extra: Sequence[tuple[str, Any, bool]] = (),
              serial: int | None = None) -> Issued:
    key = SoftwareKey.generate(algorithm)
    exts: list[tuple[str, Any, bool]] = [("key_usage", set(key_usage), True)]
    if eku is not None:
        exts.append(("extended_key_usage", list(eku), critical_eku))
    if ssn is not None:
        exts.append(("social_insurance_number", ssn, False))
    exts.extend(extra)
    cert = issue_cert(subject, key, issuer, exts, not_before or NOW - timedelta(days=30),
                      not_after or NOW + timedelta(days=365), serial)
    return Issued(cert, key)


def make_crl(issuer: Issued, revoked: Sequence[tuple[x509.Certificate, datetime]] = (),
             number: int = 1) -> crl.CertificateList:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    builder = (
        CrlBuilder()
        .issuer(issuer.cert.subject)
        .this_update(start)
        .next_update(start + timedelta(days=7))
        .crl_number(number)
        .authority_key_identifier(issuer.ski)
    )
    for cert, when in revoked:
        builder = builder.add_revoked(cert.serial_number, when, "key_compromise")
    return builder.sign(issuer.key)


@dataclass(frozen=True)
class Pki:
    """Root and issuing CA of one algorithm family, and a signer with an SSN."""

    root: Issued
    ca: Issued
    signer: Issued

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.ca.cert]


def make_pki(algorithm: str = "sm2", leaf_algorithm: str | None = None) -> Pki:
    root = make_ca("CN=Test Root " + algorithm + ",O=人社厅,C=CN", algorithm=algorithm)
    ca = make_ca("CN=Test Issuing CA " + algorithm + ",O=人社厅,C=CN", root, algorithm)
    signer = make_leaf("CN=张三,serialNumber=350102199001011234,O=人社厅,C=CN", ca,
                       leaf_algorithm or algorithm, ssn="350102199001011234")
    return Pki(root, ca, signer)
