"""sscard.fetch for pyhanko-certvalidator: its fetchers, routed through a :class:`Fetcher`.

Kept apart from :mod:`sscard.fetch` (which names it as ``sscard.fetch.ValidationFetcherBackend``)
so that a command that fetches nothing need not load pyhanko-certvalidator and requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers
from pyhanko_certvalidator.fetchers.requests_fetchers.cert_fetch_client import (
    RequestsCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.requests_fetchers.crl_client import RequestsCRLFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.ocsp_client import RequestsOCSPFetcher

from sscard.fetch import Fetched, Fetcher, FetchPolicy, FetchRefused, budgeted_fetcher

#: certvalidator unarmors PEM answers with asn1crypto (quadratic): only small ones reach it
_MAX_PEM_ANSWER = 256 * 1024


class _Answer:
    """What certvalidator's requests-based fetchers read of a ``requests.Response``."""

    def __init__(self, fetched: Fetched) -> None:
        if len(fetched.content) > _MAX_PEM_ANSWER and b"-----BEGIN " in fetched.content:
            raise FetchRefused(f"{fetched.url!r:.200} answered {len(fetched.content)} bytes of "
                               f"PEM; PEM answers over {_MAX_PEM_ANSWER} bytes are not read "
                               "(serve DER)")
        self.status_code = fetched.status
        self.content = fetched.content
        self.headers = ({"Content-Type": fetched.content_type}
                        if fetched.content_type is not None else {})


class _PolicedMixin:
    """Routes certvalidator's ``_get``/``_post`` (its requests fetchers' one network seam)
    through a :class:`Fetcher`."""

    fetcher: Fetcher

    def _get(self, url: str, *, acceptable_content_types: Iterable[str]
             ) -> Awaitable[_Answer]:
        return asyncio.to_thread(
            lambda: _Answer(self.fetcher.get(url, accept=acceptable_content_types)))

    def _post(self, url: str, data: bytes, *, content_type: str,
              acceptable_content_types: Iterable[str]) -> Awaitable[_Answer]:
        return asyncio.to_thread(lambda: _Answer(self.fetcher.post(
            url, data, content_type, accept=acceptable_content_types)))


class _OcspFetcher(_PolicedMixin, RequestsOCSPFetcher):  # type: ignore[misc]
    async def fetch(self, cert: Any, authority: Any) -> Any:
        """One OCSP request per certificate and budget: a batch of signatures by one signer
        asks about the signer's and the CA's certificates once, not once per signature."""
        from pyhanko_certvalidator.util import issuer_serial

        tag = (issuer_serial(cert), authority.hashable)
        kept = self.fetcher.ocsp_answers.get(tag)
        if kept is None:
            kept = await super().fetch(cert, authority)
            self.fetcher.ocsp_answers[tag] = kept
        return kept


class _CrlFetcher(_PolicedMixin, RequestsCRLFetcher):  # type: ignore[misc]
    pass


class _CertFetcher(_PolicedMixin, RequestsCertificateFetcher):  # type: ignore[misc]
    pass


class ValidationFetcherBackend(FetcherBackend):
    """A certvalidator fetcher backend that fetches only under ``policy``: the budget of the
    enclosing :func:`request_budget`, else one fresh :class:`Fetcher` per validation."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def get_fetchers(self) -> Fetchers:
        fetcher = budgeted_fetcher(self.policy)
        made: list[Any] = []
        for cls in (_OcspFetcher, _CrlFetcher, _CertFetcher):
            f = cls(per_request_timeout=self.policy.timeout)
            f.fetcher = fetcher
            made.append(f)
        return Fetchers(ocsp_fetcher=made[0], crl_fetcher=made[1], cert_fetcher=made[2])

    async def close(self) -> None:
        return None
