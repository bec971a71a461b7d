"""A small throw-away hierarchy for the protocol tests, built with sscard.x509.builder.

Root -> issuing CA -> (OCSP responder with id-pkix-ocsp-nocheck, TSA with critical EKU
timeStamping, leaves). Imported by test_ocsp*.py, test_tsa*.py and test_service*.py; it holds
no tests itself.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import core, x509

from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass
class Pki:
    algorithm: str
    root_key: SoftwareKey
    root_cert: x509.Certificate
    ca_key: SoftwareKey
    ca_cert: x509.Certificate
    ocsp_key: SoftwareKey
    ocsp_cert: x509.Certificate
    tsa_key: SoftwareKey
    tsa_cert: x509.Certificate
    leaves: dict[str, tuple[SoftwareKey, x509.Certificate]] = field(default_factory=dict)

    def chain_pem(self) -> bytes:
        """Issuing CA first, root last (as ``sscard ca certs`` writes it)."""
        return pem(self.ca_cert) + pem(self.root_cert)

    def write(self, directory: Path) -> dict[str, Path]:
        paths = {
            "root": directory / "root.pem",
            "ca": directory / "ca.pem",
            "chain": directory / "chain.pem",
            "ocsp": directory / "ocsp.pem",
            "tsa": directory / "tsa.pem",
        }
        paths["root"].write_bytes(pem(self.root_cert))
        paths["ca"].write_bytes(pem(self.ca_cert))
        paths["chain"].write_bytes(self.chain_pem())
        paths["ocsp"].write_bytes(pem(self.ocsp_cert))
        paths["tsa"].write_bytes(pem(self.tsa_cert))
        return paths


def pem(cert: x509.Certificate) -> bytes:
    return der_to_pem(cert.dump(), "CERTIFICATE")


def _cert(
    subject: str,
    key: SoftwareKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: SoftwareKey,
    extensions: list[tuple[str, object, bool]],
    serial: int | None = None,
) -> x509.Certificate:
    name = parse_name(subject)
    builder = (
        CertificateBuilder()
        .subject(name)
        .issuer(issuer_cert.subject if issuer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(serial or secrets.randbits(64) | 1 << 63)
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension("key_identifier", key_identifier(key.public_key()))
        .add_extension(
            "authority_key_identifier",
            {"key_identifier": key_identifier(issuer_key.public_key())},
        )
    )
    for ext_name, value, critical in extensions:
        builder = builder.add_extension(ext_name, value, critical)
    return builder.sign(issuer_key)


_CA_EXTS: list[tuple[str, object, bool]] = [
    ("basic_constraints", {"ca": True}, True),
    ("key_usage", {"key_cert_sign", "crl_sign", "digital_signature"}, True),
]


def make_pki(algorithm: str = "ec-p256") -> Pki:
    root_key = SoftwareKey.generate(algorithm)
    root_cert = _cert(f"CN=Test Root {algorithm},O=社会保障,C=CN", root_key, None, root_key,
                      _CA_EXTS)
    ca_key = SoftwareKey.generate(algorithm)
    ca_cert = _cert(f"CN=Test Issuing CA {algorithm},O=社会保障,C=CN", ca_key, root_cert,
                    root_key, _CA_EXTS)
    ocsp_key = SoftwareKey.generate(algorithm)
    ocsp_cert = _cert(
        f"CN=Test OCSP Responder {algorithm},O=社会保障,C=CN", ocsp_key, ca_cert, ca_key,
        [
            ("key_usage", {"digital_signature"}, True),
            ("extended_key_usage", ["ocsp_signing"], False),
            ("ocsp_no_check", core.Null(), False),
        ],
    )
    tsa_key = SoftwareKey.generate(algorithm)
    tsa_cert = _cert(
        f"CN=Test TSA {algorithm},O=社会保障,C=CN", tsa_key, ca_cert, ca_key,
        [
            ("key_usage", {"digital_signature", "non_repudiation"}, True),
            ("extended_key_usage", ["time_stamping"], True),
        ],
    )
    return Pki(algorithm, root_key, root_cert, ca_key, ca_cert, ocsp_key, ocsp_cert, tsa_key,
               tsa_cert)


def issue_leaf(
    pki: Pki, cn: str, serial: int | None = None
) -> tuple[SoftwareKey, x509.Certificate]:
    key = SoftwareKey.generate(pki.algorithm)
    cert = _cert(
        f"CN={cn},O=社会保障,C=CN", key, pki.ca_cert, pki.ca_key,
        [("key_usage", {"digital_signature"}, True)],
        serial=serial,
    )
    pki.leaves[cn] = (key, cert)
    return key, cert
