"""The one request-signing scheme (sscard.httpsig): what it signs, how it decodes certificates,
and its replay memory in a database shared by processes."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard import httpsig
from tests.cms.pki import make_ca, make_leaf
from tests.replay_attacks import (
    certificate_variants,
    long_form,
    malleate_certificate,
    malleate_ecdsa,
)

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def ecdsa_caller() -> object:
    return make_leaf("CN=caller", make_ca("CN=EC CA", algorithm="ec-p256"), "ec-p256")


def test_canonical_covers_every_part() -> None:
    base = ("POST", "/v1/x", "a=1", "2026-12-06T12:00:00Z", "n" * 32, b"{}")
    texts = {httpsig.canonical(*base)}
    for i, other in enumerate(["GET", "/v1/y", "a=2", "2026-12-06T12:00:01Z", "m" * 32, b"[]"]):
        changed = list(base)
        changed[i] = other
        texts.add(httpsig.canonical(*changed))  # type: ignore[arg-type]
    assert len(texts) == 7


def test_every_encoding_of_a_certificate_has_one_identity(ecdsa_caller: object) -> None:
    cert = ecdsa_caller.cert  # type: ignore[attr-defined]
    plain = httpsig.decode_certificate(base64.b64encode(cert.dump()).decode())
    for name, value in certificate_variants(cert).items():
        if "long-form" in name:
            with pytest.raises(httpsig.SignatureError, match="not DER"):
                httpsig.decode_certificate(value)
            continue
        assert httpsig.decode_certificate(value).identity == plain.identity, name
    # the issuer's ECDSA signature rewritten: another valid DER certificate, the same identity
    rewritten = httpsig.decode_certificate(malleate_certificate(cert))
    assert rewritten.der != plain.der and rewritten.identity == plain.identity
    with pytest.raises(httpsig.SignatureError, match="not DER"):
        httpsig.decode_certificate(long_form(cert.dump()))
    with pytest.raises(httpsig.SignatureError, match="base64 DER or URL-escaped PEM"):
        httpsig.decode_certificate("not a certificate")
    with pytest.raises(httpsig.SignatureError, match="longer than"):
        httpsig.decode_certificate("A" * (httpsig.MAX_CERTIFICATE_HEADER + 1))


def _verifier(tmp_path: Path, clock: FakeClock) -> httpsig.RequestVerifier:
    store = httpsig.SqlReplayStore(f"sqlite:///{tmp_path / 'replay.db'}", clock)
    return httpsig.RequestVerifier(store, timedelta(minutes=5), clock)


def test_replay_refused_by_another_process_sharing_the_database(
        tmp_path: Path, ecdsa_caller: object) -> None:
    clock = FakeClock()
    key, cert = ecdsa_caller.key, ecdsa_caller.cert  # type: ignore[attr-defined]
    headers = httpsig.RequestSigner(key, cert, clock).headers("POST", "/p", "", b"{}")
    first, second = _verifier(tmp_path, clock), _verifier(tmp_path, clock)  # two "workers"
    assert first.verify(headers, "POST", "/p", "", b"{}").nonce == headers[httpsig.NONCE]
    sig = base64.b64decode(headers[httpsig.SIGNATURE])
    rewritten = {**headers, httpsig.SIGNATURE: base64.b64encode(malleate_ecdsa(sig)).decode()}
    for again in (headers, rewritten):
        with pytest.raises(httpsig.SignatureError) as exc:
            second.verify(again, "POST", "/p", "", b"{}")
        assert exc.value.code == "replayed_request"


def test_date_window_signature_and_headers(tmp_path: Path, ecdsa_caller: object) -> None:
    clock = FakeClock()
    verifier = _verifier(tmp_path, clock)
    key, cert = ecdsa_caller.key, ecdsa_caller.cert  # type: ignore[attr-defined]
    signer = httpsig.RequestSigner(key, cert, clock)
    old = signer.headers("POST", "/p", "", b"{}", now=NOW - timedelta(minutes=6))
    with pytest.raises(httpsig.SignatureError) as exc:
        verifier.verify(old, "POST", "/p", "", b"{}")
    assert exc.value.code == "request_expired"
    good = signer.headers("POST", "/p", "", b"{}")
    for method, path, query, body in [("GET", "/p", "", b"{}"), ("POST", "/q", "", b"{}"),
                                      ("POST", "/p", "x=1", b"{}"), ("POST", "/p", "", b"[]")]:
        with pytest.raises(httpsig.SignatureError, match="does not verify"):
            verifier.verify(good, method, path, query, body)
    partial = {k: v for k, v in good.items() if k != httpsig.NONCE}
    with pytest.raises(httpsig.SignatureError, match=f"missing: {httpsig.NONCE}"):
        verifier.verify(partial, "POST", "/p", "", b"{}")
    with pytest.raises(httpsig.SignatureError, match="16 to 64"):
        verifier.verify({**good, httpsig.NONCE: "short"}, "POST", "/p", "", b"{}")
    # a refused request consumed nothing: it is still accepted once
    verifier.verify(good, "POST", "/p", "", b"{}")


def test_expired_entries_are_purged(tmp_path: Path) -> None:
    clock = FakeClock()
    store = httpsig.SqlReplayStore(f"sqlite:///{tmp_path / 'r.db'}", clock)
    assert store.first_use(b"k" * 32, NOW + timedelta(minutes=5))
    assert not store.first_use(b"k" * 32, NOW + timedelta(minutes=5))
    assert store.purge() == 0
    clock.now = NOW + timedelta(minutes=6)
    assert store.purge() == 1


def test_insert_or_fail_on_postgresql(pg_url: str) -> None:
    """Two stores on one PostgreSQL database (two workers): a key is recorded once."""
    clock = FakeClock()
    first = httpsig.SqlReplayStore(pg_url, clock)
    second = httpsig.SqlReplayStore(pg_url, clock)
    key = secrets.token_bytes(32)
    assert first.first_use(key, NOW + timedelta(minutes=5))
    assert not second.first_use(key, NOW + timedelta(minutes=5))
    assert second.first_use(secrets.token_bytes(32), NOW + timedelta(minutes=5))
    first.engine.dispose()
    second.engine.dispose()


def test_purge_never_reopens_a_window(tmp_path: Path, ecdsa_caller: object) -> None:
    """At the last second its date is acceptable, a request is still remembered, even after a
    purge by a host whose clock runs ahead."""
    clock = FakeClock()
    key, cert = ecdsa_caller.key, ecdsa_caller.cert  # type: ignore[attr-defined]
    headers = httpsig.RequestSigner(key, cert, clock).headers("POST", "/p", "", b"{}")
    verifier = _verifier(tmp_path, clock)
    verifier.verify(headers, "POST", "/p", "", b"{}")
    ahead = FakeClock()
    ahead.now = NOW + timedelta(minutes=6)  # another host, a minute ahead
    assert httpsig.SqlReplayStore(f"sqlite:///{tmp_path / 'replay.db'}", ahead).purge() == 0
    clock.now = NOW + timedelta(minutes=5)
    with pytest.raises(httpsig.SignatureError) as exc:
        verifier.verify(headers, "POST", "/p", "", b"{}")
    assert exc.value.code == "replayed_request"


_FIELD = st.text(alphabet="0123456789", min_size=1, max_size=3)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(
    st.tuples(*[st.integers(0, 9999)] + [st.integers(0, 99)] * 5).map(
        lambda f: "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*f)),
    st.tuples(*[_FIELD] * 6).map(lambda f: "{}-{}-{}T{}:{}:{}Z".format(*f)),
    st.text(alphabet="0123456789-:TZ +٣", max_size=24),
))
def test_the_date_is_read_as_strptime_reads_it(text: str) -> None:
    """The signers' form is read without strptime: it must accept exactly the dates
    strptime accepts (no 13th month, no 24th hour, no 30 February), as the same instant."""
    try:
        expected: datetime | str = datetime.strptime(
            text, httpsig.DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        expected = "refused"
    try:
        got: datetime | str = httpsig.parse_date(text)
    except ValueError:
        got = "refused"
    assert got == expected
