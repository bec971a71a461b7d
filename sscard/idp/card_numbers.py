"""The verified card-number claim: the card number is not in the card's certificate, so the
provider asks the issuer's registry, the RA, which knows the card each signing certificate was
personalised onto (``GET /api/v1/card-numbers/<serial>?issuer=<issuer name, DER in hex>``,
requests signed with the provider's service identity, the one caller the RA's configuration lets
ask).

Why the RA and not the certificate: the cardholder profile (DESIGN.md) has no card-number
attribute or extension, and no OID for one is registered on the department's arc; certificates
already on cards would carry none anyway. Why not the card: what the agent reads from the
card's files is not signed, so a page could claim any number. The RA's answer is about a
certificate the provider has just validated (path to the cardholder CA, revocation, profile)
and is for the issuer and serial of that certificate, so it is the number of the card the key
is on. The issuer is asked about and part of the cache's key because a serial alone names no
certificate (RFC 5280 4.1.2.2): another CA the provider trusts may give the same serial to
another holder, and the RA refuses a certificate not of its CA.

A card number that cannot be established (the RA knows no active card with that certificate,
the RA does not answer, the answer is malformed) gives no claim, never a guessed one. Answers,
found or not, are cached for ``cache_seconds``: a certificate stays on one card, and a card
that stops being active has its certificates revoked, which the validation sees first.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import requests
from asn1crypto import x509

from sscard.httpsig import RequestSigner

logger = logging.getLogger(__name__)

#: the RA's card numbers: 1-9 letters and digits (ra.service's rule)
CARD_NUMBER = re.compile(r"[0-9A-Za-z]{1,9}")
MAX_CACHED = 10_000


class RaCardNumbers:
    """``cards(certificate) -> card number | None`` from the RA at ``ra_url``."""

    def __init__(self, ra_url: str, signer: RequestSigner, *, cache_seconds: float = 300,
                 timeout: float = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.ra_url = ra_url.rstrip("/")
        self.signer = signer
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.clock = clock
        #: (issuer name DER, serial) -> (until, card number or None)
        self._cache: OrderedDict[tuple[bytes, int], tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._http = requests.Session()

    def __call__(self, certificate: x509.Certificate) -> str | None:
        key = (certificate.issuer.dump(), certificate.serial_number)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        found, cacheable = self._ask(key[0], format(key[1], "x"))
        if cacheable:
            with self._lock:
                self._cache[key] = (now + self.cache_seconds, found)
                self._cache.move_to_end(key)
                while len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
        return found

    def _ask(self, issuer: bytes, serial: str) -> tuple[str | None, bool]:
        """(card number or None, whether the answer is the RA's word and may be cached)."""
        path = f"/api/v1/card-numbers/{serial}"
        query = "issuer=" + issuer.hex()
        try:
            answer = self._http.get(f"{self.ra_url}{path}?{query}",
                                    headers=self.signer.headers("GET", path, query),
                                    timeout=self.timeout)
        except requests.RequestException as exc:
            logger.warning("card number of certificate %s: the RA did not answer (%s): no "
                           "card-number claim", serial, type(exc).__name__)
            return None, False
        if answer.status_code == 404:
            return None, True
        number = None
        if answer.status_code == 200:
            try:
                number = answer.json().get("card_number")
            except (ValueError, AttributeError):
                number = None
        if not isinstance(number, str) or not CARD_NUMBER.fullmatch(number):
            logger.warning("card number of certificate %s: the RA answered %d without a card "
                           "number: no card-number claim", serial, answer.status_code)
            return None, False
        return number, True
