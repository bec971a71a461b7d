"""sscard.fetch against a real listener on 127.0.0.1: allow-list, no redirects, size, time and
request budgets."""

from __future__ import annotations

import time

import pytest

from sscard.fetch import AllowList, FetchFailed, FetchPolicy, FetchRefused
from tests.fetch.listener import Route, listener


def test_fetches_an_allowed_url() -> None:
    with listener() as ls:
        ls.routes["/crl/root.crl"] = Route(b"crl bytes", content_type="application/pkix-crl")
        f = FetchPolicy(AllowList([ls.url("/crl/")])).fetcher()
        got = f.get(ls.url("/crl/root.crl"))
        assert got.content == b"crl bytes"
        assert got.content_type == "application/pkix-crl"
        assert f.post(ls.url("/crl/root.crl"), b"x", "application/ocsp-request").status == 200
        assert ls.seen == [("GET", "/crl/root.crl"), ("POST", "/crl/root.crl")]


@pytest.mark.parametrize("path", ["/other", "/crlx", "/crl/../admin", "/crl/%2e%2e/admin",
                                  "/crl%2fx"])
def test_refuses_urls_outside_the_allow_list_without_contacting_them(path: str) -> None:
    with listener() as ls:
        f = FetchPolicy(AllowList([ls.url("/crl")])).fetcher()
        with pytest.raises(FetchRefused):
            f.get(ls.url(path))
        assert ls.seen == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x",
                                 "http://user:pw@127.0.0.1/", "http:///x", "http://a b/",
                                 "gopher://127.0.0.1:70/", "http://127.0.0.1:99999/", ""])
def test_refuses_unusable_urls(url: str) -> None:
    f = FetchPolicy(AllowList(["http://127.0.0.1/"])).fetcher()
    with pytest.raises(FetchRefused):
        f.get(url)


def test_other_port_or_scheme_is_another_origin() -> None:
    allow = AllowList(["http://ca.example/"])
    assert allow.allows("http://ca.example/crl/a.crl")
    assert allow.allows("http://CA.example:80/a")
    assert not allow.allows("https://ca.example/a")
    assert not allow.allows("http://ca.example:8080/a")
    assert not allow.allows("http://ca.example.evil/a")
    assert AllowList.origins_of(["http://ca.example/certs/root.crt"]).allows(
        "http://ca.example/crl/x.crl")
    v6 = AllowList.origins_of(["http://[::1]:8080/certs/root.crt", "ldap://ca.example/x"])
    assert v6.allows("http://[::1]:8080/crl/x.crl") and not v6.allows("http://[::2]:8080/")
    assert not allow.allows("http://ca.example/crl%5c..%5cadmin")


def test_does_not_follow_redirects_even_a_loop() -> None:
    with listener() as ls:
        ls.routes["/a"] = Route(b"", 302, location=ls.url("/a"))
        f = FetchPolicy(AllowList([ls.url("/")])).fetcher()
        with pytest.raises(FetchRefused, match="redirect"):
            f.get(ls.url("/a"))
        assert ls.seen == [("GET", "/a")]


def test_size_cap_declared_and_streamed() -> None:
    with listener() as ls:
        ls.routes["/big"] = Route(b"x" * 5000)
        ls.routes["/trickle"] = Route(b"y" * 200, trickle_seconds=0.001)
        f = FetchPolicy(AllowList([ls.url("/")]), max_bytes=100).fetcher()
        with pytest.raises(FetchRefused, match="at most 100"):
            f.get(ls.url("/big"))
        with pytest.raises(FetchRefused, match="more than 100"):
            f.get(ls.url("/trickle"))


def test_slow_target_is_cut_off_by_the_time_budget() -> None:
    with listener() as ls:
        ls.routes["/slow"] = Route(b"z" * 100, trickle_seconds=0.2)
        f = FetchPolicy(AllowList([ls.url("/")]), timeout=0.5, total_seconds=1.0).fetcher()
        started = time.monotonic()
        with pytest.raises(FetchRefused, match="too slow"):
            f.get(ls.url("/slow"))
        assert time.monotonic() - started < 2.0
        with pytest.raises(FetchRefused, match="time budget"):
            f.get(ls.url("/slow"))


def test_request_budget() -> None:
    with listener() as ls:
        f = FetchPolicy(AllowList([ls.url("/")]), max_requests=2).fetcher()
        for _ in range(2):
            with pytest.raises(FetchFailed, match="404"):
                f.get(ls.url("/none"))
        with pytest.raises(FetchRefused, match="budget"):
            f.get(ls.url("/none"))
        assert len(ls.seen) == 2


def test_environment_proxy_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy (or .netrc credentials) from the environment must not see fetched URLs."""
    with listener() as ls:
        ls.routes["/x"] = Route(b"direct")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
        f = FetchPolicy(AllowList([ls.url("/")])).fetcher()
        assert f.get(ls.url("/x")).content == b"direct"


def test_validation_backend_fetches_through_the_policy() -> None:
    """The certvalidator backend: allowed DER answers come through; large PEM answers (which
    certvalidator would unarmor in quadratic time) are refused; others are never contacted."""
    import asyncio

    from sscard.fetch import ValidationFetcherBackend

    with listener() as ls:
        ls.routes["/ca/a.crl"] = Route(b"\x30\x00", content_type="application/pkix-crl")
        ls.routes["/ca/big.pem"] = Route(b"-----BEGIN X509 CRL-----\n" + b"A" * 300_000)
        backend = ValidationFetcherBackend(FetchPolicy(AllowList([ls.url("/ca/")])))
        fetcher = backend.get_fetchers().crl_fetcher

        async def get(url: str) -> object:
            return await fetcher._get(url, acceptable_content_types=("application/pkix-crl",))

        assert asyncio.run(get(ls.url("/ca/a.crl"))).content == b"\x30\x00"  # type: ignore
        with pytest.raises(FetchRefused, match="PEM"):
            asyncio.run(get(ls.url("/ca/big.pem")))
        with pytest.raises(FetchRefused, match="allow-list"):
            asyncio.run(get(ls.url("/elsewhere")))
        assert [p for _m, p in ls.seen] == ["/ca/a.crl", "/ca/big.pem"]


def test_one_budget_fetches_the_same_answer_once() -> None:
    # a batch of 20 signatures by one signer validates the same path 20 times under one
    # request's budget: the CRL (and an identical OCSP request) is fetched once, not 20 times
    with listener() as ls:
        ls.routes["/crl/root.crl"] = Route(b"crl bytes", content_type="application/pkix-crl")
        f = FetchPolicy(AllowList([ls.url("/crl/")]), max_requests=2).fetcher()
        for _ in range(20):
            assert f.get(ls.url("/crl/root.crl")).content == b"crl bytes"
            assert f.post(ls.url("/crl/root.crl"), b"same", "application/ocsp-request").status \
                == 200
        # a third distinct request is over the budget of 2
        with pytest.raises(FetchRefused, match="budget"):
            f.post(ls.url("/crl/root.crl"), b"other", "application/ocsp-request")
        assert ls.seen == [("GET", "/crl/root.crl"), ("POST", "/crl/root.crl")]
