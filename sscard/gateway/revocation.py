"""Revocation information for the gateway: configured CRL files plus CRLs fetched from URLs,
kept for a while so that verifications do not each download a CRL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import requests
from asn1crypto import crl, ocsp

from sscard.x509.errors import X509ParseError
from sscard.x509.parse import load_crl

log = logging.getLogger(__name__)


class CrlFetcher:
    def __init__(self, urls: Sequence[str], refresh_seconds: float = 60.0,
                 timeout: float = 10.0) -> None:
        self.urls = list(urls)
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self._crls: list[crl.CertificateList] = []
        self._until = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[list[crl.CertificateList], list[ocsp.OCSPResponse]]:
        with self._lock:
            if time.monotonic() >= self._until:
                fresh = []
                for url in self.urls:
                    try:
                        answer = requests.get(url, timeout=self.timeout)
                        answer.raise_for_status()
                        fresh.append(load_crl(answer.content))
                    except (requests.RequestException, X509ParseError) as exc:
                        # a CRL we cannot get leaves revocation unknown: the validator says so
                        log.warning("CRL %s unavailable: %s", url, exc)
                self._crls = fresh
                self._until = time.monotonic() + self.refresh_seconds
            return list(self._crls), []
