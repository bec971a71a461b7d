"""Fetching URLs that come from certificates, CRLs and configuration, safely.

A certificate names URLs (caIssuers, CRL distribution points, OCSP responders) chosen by whoever
made it; following them blindly lets anyone who can send us a certificate make our services
call any host (server-side request forgery), wait on slow hosts and download without end. So
every fetch goes through a :class:`Fetcher` that:

- fetches only URLs under a configured allow-list of prefixes (``http://ca.example/crl/``),
  over http or https, without credentials in the URL, proxies from the environment or .netrc;
- never follows a redirect (the target would escape the allow-list);
- bounds each request's time and size, and the whole budget: a number of requests and a total
  time per ``Fetcher`` (make one per incoming request or validation).

Refusals raise :class:`FetchRefused`, network and HTTP failures :class:`FetchFailed`; both are
:class:`FetchError`, a ``ValueError`` so that libraries that treat a bad answer as "unavailable"
(pyhanko-certvalidator's fetchers) do the same with a refusal.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import requests

    from sscard.fetch_pyhanko import ValidationFetcherBackend

__all__ = [
    "AllowList",
    "FetchError",
    "FetchFailed",
    "FetchPolicy",
    "FetchRefused",
    "Fetched",
    "Fetcher",
    "ValidationFetcherBackend",
    "budgeted_fetcher",
    "request_budget",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(ValueError):
    """A URL could not be fetched; the message names the URL and why."""


class FetchRefused(FetchError):
    """The fetch was not attempted or was cut off by policy: not on the allow-list, a
    redirect, too large, too slow, or the request budget is spent."""


class FetchFailed(FetchError):
    """The server could not be reached or did not answer 2xx."""


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Origin:
    """The parts of an absolute http(s) URL that the allow-list compares; FetchRefused for
    anything else (other schemes, user info, dot segments that could climb out of a prefix)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise FetchRefused(f"not a usable URL: {url!r:.100}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise FetchRefused(f"URL with spaces, control characters or backslashes: {url!r:.100}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused(f"malformed URL: {url!r:.100}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FetchRefused(f"only http and https URLs are fetched, not {url!r:.100}")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused(f"URL with user information: {url!r:.100}")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchRefused(f"URL without a host: {url!r:.100}")
    path = parts.path or "/"
    segments = unquote(path).split("/")
    if any(s in (".", "..") for s in segments) or "%2f" in path.lower() or (
            "%5c" in path.lower()):
        raise FetchRefused(f"URL with dot segments or encoded slashes: {url!r:.100}")
    return _Origin(scheme, host, port or _DEFAULT_PORTS[scheme], posixpath.normpath(path))


class AllowList:
    """URL prefixes: a URL is allowed when it has the same scheme, host and port as an entry
    and its path is the entry's path or below it (``http://ca/crl`` allows ``/crl/x.crl``,
    not ``/crlx``)."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        self.prefixes = tuple(dict.fromkeys(prefixes))
        self._origins = [_parse(p) for p in self.prefixes]

    def allows(self, url: str) -> bool:
        try:
            target = _parse(url)
        except FetchRefused:
            return False
        for entry in self._origins:
            if (entry.scheme, entry.host, entry.port) != (target.scheme, target.host,
                                                           target.port):
                continue
            base = entry.path.rstrip("/")
            if not base or target.path == base or target.path.startswith(base + "/"):
                return True
        return False

    @classmethod
    def origins_of(cls, urls: Iterable[str]) -> AllowList:
        """An allow-list of the origins (scheme, host, port) of ``urls``, any path: e.g. the
        URLs a configured CA names in its own certificates."""
        prefixes = []
        for url in urls:
            try:
                o = _parse(url)
            except FetchRefused:
                continue
            host = f"[{o.host}]" if ":" in o.host else o.host
            prefixes.append(f"{o.scheme}://{host}:{o.port}/")
        return cls(prefixes)


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched and how much: the allow-list and the bounds."""

    allow: AllowList
    timeout: float = 3.0
    """Seconds to connect, and between bytes received."""
    max_bytes: int = 4 * 1024 * 1024
    """Largest answer body accepted."""
    max_requests: int = 8
    """Requests per Fetcher (per incoming request or validation)."""
    total_seconds: float = 8.0
    """Wall-clock time all requests of one Fetcher may take together."""

    def fetcher(self, session: requests.Session | None = None) -> Fetcher:
        return Fetcher(self, session)


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    content_type: str | None
    content: bytes


class Fetcher:
    """One budget of fetches under a :class:`FetchPolicy`; thread-safe (certvalidator
    fetches from worker threads). A successful answer is kept for the budget's life (one
    incoming request or validation) and the same request is answered from it, uncounted: a
    batch of signatures by one signer fetches its CRLs once, not once per signature."""

    def __init__(self, policy: FetchPolicy, session: requests.Session | None = None) -> None:
        import requests  # here: a command that fetches nothing does not load it (start-up)

        self.policy = policy
        self.session = session or requests.Session()
        # the environment's proxies and .netrc credentials must not apply to fetched URLs
        self.session.trust_env = False
        self.requests_made = 0
        self._deadline = time.monotonic() + policy.total_seconds
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, bytes | None, tuple[tuple[str, str], ...]],
                            Fetched] = {}
        #: OCSP answers by certificate (their requests differ by nonce, so _answers misses them)
        self.ocsp_answers: dict[Any, Any] = {}

    def get(self, url: str, *, accept: Iterable[str] = ()) -> Fetched:
        return self._send("GET", url, None, {"Accept": ",".join(accept)} if accept else {})

    def post(self, url: str, data: bytes, content_type: str, *,
             accept: Iterable[str] = ()) -> Fetched:
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = ",".join(accept)
        return self._send("POST", url, data, headers)

    def _admit(self, url: str) -> float:
        if not self.policy.allow.allows(url):
            _parse(url)  # a more precise refusal for a URL that is not even usable
            raise FetchRefused(f"{url!r:.200} is not on the fetch allow-list")
        with self._lock:
            if self.requests_made >= self.policy.max_requests:
                raise FetchRefused(f"fetch budget spent ({self.policy.max_requests} "
                                   f"requests); not fetching {url!r:.200}")
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise FetchRefused(f"fetch time budget spent ({self.policy.total_seconds:g} "
                                   f"s); not fetching {url!r:.200}")
            self.requests_made += 1
        return remaining

    def _send(self, method: str, url: str, data: bytes | None,
              headers: Mapping[str, str]) -> Fetched:
        key = (method, url, data, tuple(sorted(headers.items())))
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and self.policy.allow.allows(url):
            return kept
        fetched = self._fetch(method, url, data, headers)
        with self._lock:
            self._answers[key] = fetched
        return fetched

    def _fetch(self, method: str, url: str, data: bytes | None,
               headers: Mapping[str, str]) -> Fetched:
        import requests

        remaining = self._admit(url)
        timeout = min(self.policy.timeout, remaining)
        # compressed answers could expand past the size cap before it is checked
        headers = {"Accept-Encoding": "identity", **headers}
        limit = self.policy.max_bytes
        try:
            with self.session.request(method, url, data=data, headers=dict(headers),
                                      timeout=(timeout, timeout), allow_redirects=False,
                                      stream=True) as answer:
                if 300 <= answer.status_code < 400:
                    raise FetchRefused(
                        f"{url!r:.200} answered {answer.status_code} (redirect to "
                        f"{answer.headers.get('Location', '?')!r:.200}); redirects are not "
                        "followed")
                if not 200 <= answer.status_code < 300:
                    raise FetchFailed(f"{url!r:.200} answered HTTP {answer.status_code}")
                declared = answer.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchRefused(f"{url!r:.200} announces {declared} bytes; at most "
                                       f"{limit} are fetched")
                body = bytearray()
                # read1: whatever one socket read brings, so that a trickle meets the deadline
                # check (iter_content would wait until a whole chunk had arrived)
                while chunk := answer.raw.read1(64 * 1024, decode_content=True):
                    body += chunk
                    if len(body) > limit:
                        raise FetchRefused(f"{url!r:.200} sent more than {limit} bytes")
                    if time.monotonic() > self._deadline:
                        raise FetchRefused(f"{url!r:.200} is too slow (fetch time budget "
                                           f"{self.policy.total_seconds:g} s)")
                return Fetched(url, answer.status_code, answer.headers.get("Content-Type"),
                               bytes(body))
        except requests.RequestException as exc:
            raise FetchFailed(f"{url!r:.200} could not be fetched: "
                              f"{type(exc).__name__}") from None


_BUDGET: ContextVar[Fetcher | None] = ContextVar("sscard_fetch_budget", default=None)


@contextlib.contextmanager
def request_budget(policy: FetchPolicy) -> Iterator[Fetcher]:
    """One budget for everything fetched under ``policy`` inside the block (e.g. one incoming
    request, however many validations it makes); outside a block each validation has its own."""
    token = _BUDGET.set(policy.fetcher())
    try:
        yield _BUDGET.get()  # type: ignore[misc]
    finally:
        _BUDGET.reset(token)


def budgeted_fetcher(policy: FetchPolicy) -> Fetcher:
    """The fetcher of the enclosing :func:`request_budget` when it is for ``policy``, else a
    new one (one budget per validation)."""
    current = _BUDGET.get()
    return current if current is not None and current.policy is policy else policy.fetcher()


def __getattr__(name: str) -> Any:
    # pyhanko-certvalidator's side lives in sscard.fetch_pyhanko, loaded when first asked for:
    # importing pyhanko and requests costs more than a whole command's start-up budget
    if name == "ValidationFetcherBackend":
        from sscard.fetch_pyhanko import ValidationFetcherBackend

        return ValidationFetcherBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
