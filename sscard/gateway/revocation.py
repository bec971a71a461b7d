"""Revocation information for the gateway and the rules for fetching it.

The gateway fetches only under its :class:`~sscard.fetch.FetchPolicy` (allow-listed URLs, no
redirects, bounded time and size) and only for certificates that already chain to a configured
trust anchor: input from anyone else makes it contact nobody (issue 12, finding 5).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from asn1crypto import crl, ocsp, x509

from sscard.cms.verify import Verifier
from sscard.fetch import AllowList, FetchError, FetchPolicy
from sscard.validation import Purpose, ValidationResult
from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_crl

log = logging.getLogger(__name__)


def urls_named_by(certs: Iterable[x509.Certificate]) -> list[str]:
    """The CRL, OCSP and caIssuers URLs that certificates name."""
    urls: list[str] = []
    for cert in certs:
        urls.extend(cert.ocsp_urls)
        for dp in (*cert.crl_distribution_points, *cert.delta_crl_distribution_points):
            if dp.url:
                urls.append(dp.url)
        for access in cert.authority_information_access_value or ():
            location = access["access_location"]
            if access["access_method"].native == "ca_issuers" and (
                    location.name == "uniform_resource_identifier"):
                urls.append(location.native)
    return urls


def default_fetch_policy(cas: Sequence[x509.Certificate], crl_urls: Sequence[str],
                         allow: Sequence[str] | None) -> FetchPolicy:
    """``allow`` (URL prefixes) if configured, else the origins of the URLs that the
    configured CA certificates and CRL URLs name: the CA's own publication points."""
    if allow is not None:
        return FetchPolicy(AllowList(allow))
    return FetchPolicy(AllowList.origins_of([*urls_named_by(cas), *crl_urls]))


class CrlFetcher:
    """The configured CRL URLs, fetched under ``policy`` and kept ``refresh_seconds``."""

    def __init__(self, urls: Sequence[str], policy: FetchPolicy | None = None,
                 refresh_seconds: float = 60.0) -> None:
        self.urls = list(urls)
        self.policy = policy or FetchPolicy(AllowList(self.urls))
        self.refresh_seconds = refresh_seconds
        self._crls: list[crl.CertificateList] = []
        self._until = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[list[crl.CertificateList], list[ocsp.OCSPResponse]]:
        with self._lock:
            if time.monotonic() >= self._until:
                fresh = []
                fetcher = self.policy.fetcher()
                for url in self.urls:
                    try:
                        fresh.append(load_crl(fetcher.get(url, accept=(
                            "application/pkix-crl",)).content))
                    except (FetchError, X509ParseError) as exc:
                        # a CRL we cannot get leaves revocation unknown: the validator says so
                        log.warning("CRL %s unavailable: %s", url, exc)
                self._crls = fresh
                self._until = time.monotonic() + self.refresh_seconds
            return list(self._crls), []


class AnchoredVerifier(Verifier):
    """A verifier that fetches revocation information only for certificates that chain to a
    configured anchor with what is at hand: the path is checked offline first, and a
    certificate that fails it is answered without contacting anybody."""

    def validate(
        self,
        leaf: x509.Certificate,
        extra: Sequence[x509.Certificate],
        at: datetime | None,
        with_revocation: bool,
        purpose: Purpose | None = None,
        use_cache: bool = True,
    ) -> ValidationResult:
        if with_revocation and self.config.revocation_fetch is not None:
            offline = super().validate(leaf, extra, at, False, purpose, use_cache)
            if not offline.valid:
                return offline
        return super().validate(leaf, extra, at, with_revocation, purpose, use_cache)
