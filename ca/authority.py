"""The CA's library API: what the CLI, the OCSP/TSA service, the KMC, the RA and the gateway call.

``CertificateAuthority.open(home)`` gives the data directory's default issuing CA; every method
is a plain function of the database and the CA's key handle. A certificate is returned only
after its row is committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import crl as asn1crl
from asn1crypto import csr as asn1csr
from asn1crypto import x509

from ca.records import CertificateStatus, IssuedCertificate, RevocationReason
from sscard.crypto.asymmetric import PublicKey
from sscard.keys.base import KeyHandle


@dataclass(frozen=True)
class IssueRequest:
    """One entry of a batch: a CSR, or a public key with its subject."""

    csr: asn1csr.CertificationRequest | bytes | None = None
    public_key: PublicKey | None = None
    subject: x509.Name | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Signer:
    """A key handle with the certificate that names it (OCSP responder, TSA)."""

    key: KeyHandle
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


class CertificateAuthority:
    """One issuing CA of a hierarchy, backed by its database."""

    @classmethod
    def init(
        cls,
        home: str | Path,
        config: str | Path | None = None,
        passphrase: bytes | None = None,
    ) -> CertificateAuthority:
        """Create the hierarchy the config describes (SM2 root + issuing CA when None)."""
        raise NotImplementedError

    @classmethod
    def open(
        cls,
        home: str | Path,
        passphrase: bytes | None = None,
        name: str | None = None,
        database_url: str | None = None,
    ) -> CertificateAuthority:
        """Open the issuing CA ``name`` (default: the first in the config) of ``home``."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def certificate(self) -> x509.Certificate:
        """This issuing CA's certificate."""
        raise NotImplementedError

    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate first, the root last."""
        raise NotImplementedError

    def issue_from_csr(
        self,
        csr: asn1csr.CertificationRequest | bytes,
        profile: str,
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedCertificate:
        """Issue from a PKCS#10 request after checking its signature (proof of possession)."""
        raise NotImplementedError

    def issue_for_public_key(
        self,
        public_key: PublicKey,
        subject: x509.Name | str,
        profile: str,
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedCertificate:
        """Issue for a key whose possession the caller has established (KMC encryption keys)."""
        raise NotImplementedError

    def issue_batch(
        self, requests: Iterable[IssueRequest], profile: str, chunk_size: int = 200
    ) -> list[IssuedCertificate]:
        """Issue many; each chunk is one transaction, committed before its certificates return."""
        raise NotImplementedError

    def revoke(
        self,
        serial: int,
        reason: RevocationReason | str = RevocationReason.unspecified,
        invalidity_date: datetime | None = None,
    ) -> CertificateStatus:
        raise NotImplementedError

    def status(self, serial: int) -> CertificateStatus:
        """good, revoked (time, reason, invalidity date) or unknown: what OCSP answers."""
        raise NotImplementedError

    def build_crl(self, delta: bool = False) -> asn1crl.CertificateList:
        """Sign and record the next full or delta CRL (CRL number strictly increasing)."""
        raise NotImplementedError

    def ocsp_signer(self) -> Signer:
        """The delegated OCSP responder key and certificate, created on first use."""
        raise NotImplementedError

    def tsa_signer(self) -> Signer:
        """The time-stamping key and certificate (critical EKU timeStamping), made on first use."""
        raise NotImplementedError

    def list_certificates(self, limit: int = 100) -> Sequence[CertificateStatus]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
