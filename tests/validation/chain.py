"""A small throw-away PKI for tests: root -> issuing CA -> leaves, and their CRLs, built with
sscard.x509.builder and signed by software keys (SM2 by default)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import crl, x509

from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder, CrlBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: SoftwareKey

    @property
    def ski(self) -> bytes:
        """The subject key identifier written in the certificate."""
        value = self.cert.key_identifier
        assert value is not None
        return bytes(value)


def uri(value: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=value)


def issue_cert(
    subject: str,
    key: SoftwareKey,
    issuer: Issued | None,
    extensions: Sequence[tuple[str, Any, bool]],
    not_before: datetime,
    not_after: datetime,
    serial: int | None = None,
) -> x509.Certificate:
    name = parse_name(subject)
    signer_key = issuer.key if issuer else key
    aki = issuer.ski if issuer else key_identifier(key.public_key())
    builder = (
        CertificateBuilder()
        .subject(name)
        .issuer(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else secrets.randbits(64) | 1 << 63)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension("key_identifier", key_identifier(key.public_key()))
        .add_extension("authority_key_identifier", {"key_identifier": aki})
    )
    for ext_name, value, critical in extensions:
        builder = builder.add_extension(ext_name, value, critical)
    return builder.sign(signer_key)


def make_ca(
    subject: str,
    issuer: Issued | None = None,
    algorithm: str = "sm2",
    path_len: int | None = None,
    extra: Sequence[tuple[str, Any, bool]] = (),
) -> Issued:
    key = SoftwareKey.generate(algorithm)
    bc: dict[str, Any] = {"ca": True}
    if path_len is not None:
        bc["path_len_constraint"] = path_len
    exts = [
        ("basic_constraints", bc, True),
        ("key_usage", {"key_cert_sign", "crl_sign"}, True),
        *extra,
    ]
    cert = issue_cert(subject, key, issuer, exts, NOW - timedelta(days=30),
                      NOW + timedelta(days=3650))
    return Issued(cert, key)


def make_leaf(
    subject: str,
    issuer: Issued,
    algorithm: str = "sm2",
    key_usage: frozenset[str] = frozenset({"digital_signature", "non_repudiation"}),
    eku: Sequence[str] | None = None,
    dns_names: Sequence[str] = (),
    extra: Sequence[tuple[str, Any, bool]] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    key = SoftwareKey.generate(algorithm)
    exts: list[tuple[str, Any, bool]] = [("key_usage", set(key_usage), True)]
    if eku is not None:
        exts.append(("extended_key_usage", list(eku), False))
    if dns_names:
        san = [x509.GeneralName(name="dns_name", value=d) for d in dns_names]
        exts.append(("subject_alt_name", san, False))
    exts.extend(extra)
    cert = issue_cert(
        subject,
        key,
        issuer,
        exts,
        not_before or NOW - timedelta(days=1),
        not_after or NOW + timedelta(days=365),
    )
    return Issued(cert, key)


def make_crl(
    issuer: Issued,
    revoked: Sequence[tuple[x509.Certificate, str | None]] = (),
    number: int = 1,
    delta_of: int | None = None,
    freshest_url: str | None = None,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
) -> crl.CertificateList:
    start = this_update or NOW - timedelta(hours=1)
    builder = (
        CrlBuilder()
        .issuer(issuer.cert.subject)
        .this_update(start)
        .next_update(next_update or start + timedelta(days=7))
        .crl_number(number)
        .authority_key_identifier(issuer.ski)
    )
    if delta_of is not None:
        builder = builder.delta_crl_indicator(delta_of)
    if freshest_url is not None:
        builder = builder.add_extension(
            "freshest_crl", [{"distribution_point": {"full_name": [uri(freshest_url)]}}]
        )
    for cert, reason in revoked:
        builder = builder.add_revoked(cert.serial_number, NOW - timedelta(minutes=30), reason)
    return builder.sign(issuer.key)


def tampered(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with one bit of its signature flipped."""
    der = bytearray(cert.dump())
    der[-5] ^= 0x01
    return x509.Certificate.load(bytes(der))
