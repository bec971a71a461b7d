"""Immutable builders for certificates, CSRs and CRLs, signed by any key handle.

In the manner of pyca/cryptography's builders: each setter returns a new builder, setting a field
twice is an error, and ``sign()`` checks that what is required is there. The encoding is
asn1crypto's; the signature comes from a ``KeyHandle`` (software, PKCS#11 or a card).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import algos, core, crl, csr, x509

from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs)
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.keys.base import KeyHandle
from sscard.x509.errors import BuilderError

# RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050
_GENERALIZED_FROM = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)


def asn1_time(when: dt.datetime) -> x509.Time:
    if when.tzinfo is None:
        raise BuilderError("datetimes must be timezone-aware (UTC)")
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if when >= _GENERALIZED_FROM:
        return x509.Time(name="general_time", value=when)
    return x509.Time(name="utc_time", value=when)


@dataclass(frozen=True)
class _Ext:
    name: str
    value: Any
    critical: bool


def _ext_list(exts: tuple[_Ext, ...], ext_cls: type[core.Sequence]) -> list[Any]:
    return [ext_cls({"extn_id": e.name, "critical": e.critical, "extn_value": e.value})
            for e in exts]


def _add_ext(exts: tuple[_Ext, ...], name: str, value: Any, critical: bool) -> tuple[_Ext, ...]:
    if any(e.name == name for e in exts):
        raise BuilderError(f"extension {name} set twice")
    return (*exts, _Ext(name, value, critical))


def _sig_alg(key: KeyHandle, algorithm: SignatureAlgorithm | None) -> SignatureAlgorithm:
    alg = algorithm or key.default_signature_algorithm
    if alg.key_type is not key.algorithm.key_type:
        raise BuilderError(f"{alg.name} does not fit the signing key ({key.algorithm.value})")
    return alg


def _set_once(builder: Any, name: str, value: Any) -> Any:
    if getattr(builder, name) is not None:
        raise BuilderError(f"{name.lstrip('_').replace('_', ' ')} set twice")
    return dataclasses.replace(builder, **{name: value})


@dataclass(frozen=True)
class CertificateBuilder:
    _subject: x509.Name | None = None
    _issuer: x509.Name | None = None
    _public_key: PublicKey | None = None
    _serial: int | None = None
    _not_before: dt.datetime | None = None
    _not_after: dt.datetime | None = None
    _extensions: tuple[_Ext, ...] = field(default=())

    def subject(self, name: x509.Name) -> CertificateBuilder:
        return _set_once(self, "_subject", name)

    def issuer(self, name: x509.Name) -> CertificateBuilder:
        return _set_once(self, "_issuer", name)

    def public_key(self, key: PublicKey) -> CertificateBuilder:
        return _set_once(self, "_public_key", key)

    def serial_number(self, serial: int) -> CertificateBuilder:
        if serial <= 0 or serial.bit_length() > 159:
            raise BuilderError("serial number must be positive and at most 20 octets")
        return _set_once(self, "_serial", serial)

    def not_valid_before(self, when: dt.datetime) -> CertificateBuilder:
        return _set_once(self, "_not_before", when)

    def not_valid_after(self, when: dt.datetime) -> CertificateBuilder:
        return _set_once(self, "_not_after", when)

    def add_extension(self, name: str, value: Any, critical: bool = False) -> CertificateBuilder:
        return dataclasses.replace(
            self, _extensions=_add_ext(self._extensions, name, value, critical)
        )

    def tbs(self, algorithm: SignatureAlgorithm) -> x509.TbsCertificate:
        missing = [n for n in ("_subject", "_issuer", "_public_key", "_serial", "_not_before",
                               "_not_after") if getattr(self, n) is None]
        if missing:
            raise BuilderError("certificate needs " + ", ".join(m.lstrip("_") for m in missing))
        assert self._not_before and self._not_after and self._public_key
        if self._not_after <= self._not_before:
            raise BuilderError("notAfter must be later than notBefore")
        return x509.TbsCertificate(
            {
                "version": "v3",
                "serial_number": self._serial,
                "signature": algorithm.asn1_algorithm_identifier(),
                "issuer": self._issuer,
                "validity": {
                    "not_before": asn1_time(self._not_before),
                    "not_after": asn1_time(self._not_after),
                },
                "subject": self._subject,
                "subject_public_key_info": self._public_key.asn1(),
                "extensions": _ext_list(self._extensions, x509.Extension) or None,
            }
        )

    def sign(
        self, key: KeyHandle, algorithm: SignatureAlgorithm | None = None
    ) -> x509.Certificate:
        alg = _sig_alg(key, algorithm)
        tbs = self.tbs(alg)
        signature = key.sign(tbs.dump(), alg)
        return x509.Certificate(
            {
                "tbs_certificate": tbs,
                "signature_algorithm": alg.asn1_algorithm_identifier(),
                "signature_value": signature,
            }
        )


@dataclass(frozen=True)
class CsrBuilder:
    _subject: x509.Name | None = None
    _extensions: tuple[_Ext, ...] = field(default=())
    _attributes: tuple[tuple[str, Any], ...] = field(default=())

    def subject(self, name: x509.Name) -> CsrBuilder:
        return _set_once(self, "_subject", name)

    def add_extension(self, name: str, value: Any, critical: bool = False) -> CsrBuilder:
        return dataclasses.replace(
            self, _extensions=_add_ext(self._extensions, name, value, critical)
        )

    def add_attribute(self, name: str, values: list[Any]) -> CsrBuilder:
        if name == "extension_request":
            raise BuilderError("use add_extension for the extension request")
        return dataclasses.replace(self, _attributes=(*self._attributes, (name, values)))

    def sign(
        self,
        key: KeyHandle,
        algorithm: SignatureAlgorithm | None = None,
    ) -> csr.CertificationRequest:
        if self._subject is None:
            raise BuilderError("CSR needs a subject")
        alg = _sig_alg(key, algorithm)
        attrs = [{"type": n, "values": v} for n, v in self._attributes]
        if self._extensions:
            attrs.append(
                {"type": "extension_request",
                 "values": [_ext_list(self._extensions, x509.Extension)]}
            )
        info = csr.CertificationRequestInfo(
            {
                "version": "v1",
                "subject": self._subject,
                "subject_pk_info": key.public_key().asn1(),
                "attributes": attrs,
            }
        )
        signature = key.sign(info.dump(), alg)
        return csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": alg.asn1_algorithm_identifier(),
                "signature": signature,
            }
        )


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revocation_date: dt.datetime
    reason: str | None = None  # RFC 5280 CRLReason name, e.g. "key_compromise"
    invalidity_date: dt.datetime | None = None

    def asn1(self) -> crl.RevokedCertificate:
        exts = []
        if self.reason is not None and self.reason != "unspecified":
            exts.append({"extn_id": "crl_reason", "critical": False,
                         "extn_value": crl.CRLReason(self.reason)})
        if self.invalidity_date is not None:
            exts.append({"extn_id": "invalidity_date", "critical": False,
                         "extn_value": core.GeneralizedTime(
                             self.invalidity_date.astimezone(dt.UTC).replace(microsecond=0))})
        return crl.RevokedCertificate(
            {
                "user_certificate": self.serial,
                "revocation_date": asn1_time(self.revocation_date),
                "crl_entry_extensions": exts or None,
            }
        )


@dataclass(frozen=True)
class CrlBuilder:
    _issuer: x509.Name | None = None
    _this_update: dt.datetime | None = None
    _next_update: dt.datetime | None = None
    _revoked: tuple[RevokedEntry, ...] = field(default=())
    _extensions: tuple[_Ext, ...] = field(default=())

    def issuer(self, name: x509.Name) -> CrlBuilder:
        return _set_once(self, "_issuer", name)

    def this_update(self, when: dt.datetime) -> CrlBuilder:
        return _set_once(self, "_this_update", when)

    def next_update(self, when: dt.datetime) -> CrlBuilder:
        return _set_once(self, "_next_update", when)

    def crl_number(self, number: int) -> CrlBuilder:
        return self.add_extension("crl_number", number)

    def delta_crl_indicator(self, base_crl_number: int) -> CrlBuilder:
        return self.add_extension("delta_crl_indicator", base_crl_number, critical=True)

    def authority_key_identifier(self, key_id: bytes) -> CrlBuilder:
        return self.add_extension("authority_key_identifier", {"key_identifier": key_id})

    def add_revoked(
        self,
        serial: int,
        revocation_date: dt.datetime,
        reason: str | None = None,
        invalidity_date: dt.datetime | None = None,
    ) -> CrlBuilder:
        entry = RevokedEntry(serial, revocation_date, reason, invalidity_date)
        return dataclasses.replace(self, _revoked=(*self._revoked, entry))

    def add_extension(self, name: str, value: Any, critical: bool = False) -> CrlBuilder:
        return dataclasses.replace(
            self, _extensions=_add_ext(self._extensions, name, value, critical)
        )

    def tbs(self, algorithm: SignatureAlgorithm) -> crl.TbsCertList:
        if self._issuer is None or self._this_update is None:
            raise BuilderError("CRL needs an issuer and thisUpdate")
        if self._next_update is not None and self._next_update <= self._this_update:
            raise BuilderError("nextUpdate must be later than thisUpdate")
        return crl.TbsCertList(
            {
                "version": "v2",
                "signature": algorithm.asn1_algorithm_identifier(),
                "issuer": self._issuer,
                "this_update": asn1_time(self._this_update),
                "next_update": asn1_time(self._next_update) if self._next_update else None,
                "revoked_certificates": [e.asn1() for e in self._revoked] or None,
                "crl_extensions": _ext_list(self._extensions, crl.TBSCertListExtension) or None,
            }
        )

    def sign(
        self, key: KeyHandle, algorithm: SignatureAlgorithm | None = None
    ) -> crl.CertificateList:
        alg = _sig_alg(key, algorithm)
        tbs = self.tbs(alg)
        signature = key.sign(tbs.dump(), alg)
        return crl.CertificateList(
            {
                "tbs_cert_list": tbs,
                "signature_algorithm": alg.asn1_algorithm_identifier(),
                "signature": signature,
            }
        )


def signed_digest_algorithm(alg: SignatureAlgorithm) -> algos.SignedDigestAlgorithm:
    return algos.SignedDigestAlgorithm(alg.asn1_algorithm_identifier())
