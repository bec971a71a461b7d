"""The OpenID Connect provider end to end: a relying party built with Authlib's client logs a
cardholder in (the emulated card signs the login token in process), verifies the ID token with
the provider's JWKS, and every bad input of issue 15 that concerns the provider is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc.errors import JoseError

from sscard.audit import AuditLog
from sscard.idp.provider import pairwise_sub
from sscard.idp.store import ACR_CARD_PIN
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import RelyingParty, Rig, add_client, serve


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


def _rp(rig: Rig, **kw: str) -> RelyingParty:
    c = add_client(rig, **kw)
    return RelyingParty(rig.url, c.client_id, c.secret, c.redirect_uri)


def _login(rig: Rig, rp: RelyingParty, browser: requests.Session | None = None) -> str:
    answer = rig.login(browser or rig.browser(), rp.authorize_url())
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(rp.redirect_uri + "?"), location
    return location


class _Es256Metadata(OpenIDProviderMetadata):
    def validate_id_token_signing_alg_values_supported(self) -> None:
        # OIDC Discovery asks for RS256; the provider signs with ES256 only, by design (the
        # issue: ES256, SM2 opt-in): every other member is checked as the standard says
        assert self["id_token_signing_alg_values_supported"] == ["ES256"]


def test_discovery_is_valid_openid_provider_metadata(rig: Rig) -> None:
    meta = requests.get(rig.url + "/.well-known/openid-configuration").json()
    _Es256Metadata(meta).validate()
    assert meta["issuer"] == rig.url
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["subject_types_supported"] == ["pairwise"]
    keys = requests.get(meta["jwks_uri"]).json()["keys"]
    assert keys and all(k["kty"] == "EC" and k["crv"] == "P-256" and "d" not in k
                        for k in keys)


def test_full_code_flow_gives_the_rp_the_cardholder(rig: Rig) -> None:
    rp = _rp(rig)
    redirect = _login(rig, rp)
    assert parse_qs(urlsplit(redirect).query)["iss"] == [rig.url]  # RFC 9207 (mix-up)
    tokens = rp.fetch(redirect)
    claims = rp.verify(tokens["id_token"])
    assert claims["name"] == "张三"
    assert claims["sscard:ssn"] == HOLDER_SSN
    # the card number is not in the certificate and the validator reads only the token
    assert "sscard:card_number" not in claims
    assert claims["acr"] == ACR_CARD_PIN and claims["amr"] == ["hwk", "pin"]
    assert claims["sub"] == pairwise_sub(rig.provider.sub_secret, "rp.example", HOLDER_SSN)
    assert HOLDER_SSN not in claims["sub"]


def test_sub_is_pairwise_per_sector_and_stable(rig: Rig) -> None:
    one = _rp(rig, redirect="https://one.example/cb")
    two = _rp(rig, redirect="https://two.example/cb")
    browser = rig.browser()  # one provider session, two business systems
    sub_one = one.verify(one.fetch(_login(rig, one, browser))["id_token"])["sub"]
    sub_two = two.verify(two.fetch(_login(rig, two, browser))["id_token"])["sub"]
    again = _rp(rig, redirect="https://one.example/other")
    sub_again = again.verify(again.fetch(_login(rig, again, browser))["id_token"])["sub"]
    assert sub_one != sub_two
    assert sub_one == sub_again


def test_unregistered_client_is_refused_without_redirect(rig: Rig) -> None:
    rp = _rp(rig)
    url = rp.authorize_url().replace(rp.client_id, "nobody")
    answer = rig.browser().get(url, allow_redirects=False)
    assert answer.status_code in (400, 401)
    assert "Location" not in answer.headers
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["code"] == "invalid_client"


def test_unregistered_redirect_uri_is_refused_without_redirect(rig: Rig) -> None:
    rp = _rp(rig)
    url = rp.authorize_url().replace("rp.example%2Fcallback", "evil.example%2Fcallback")
    assert "evil.example" in url
    answer = rig.browser().get(url, allow_redirects=False)
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert answer.json()["code"] == "invalid_request"


def test_authorisation_without_pkce_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    url = rp.authorize_url()
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()
             if k not in ("code_challenge", "code_challenge_method")}
    answer = rig.browser().get(parts._replace(query="").geturl(), params=query,
                               allow_redirects=False)
    # the redirect URI is registered, so the error goes back to the RP
    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["Location"]
    assert "PKCE" in parse_qs(urlsplit(answer.headers["Location"]).query)[
        "error_description"][0]


def test_plain_pkce_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    url = rp.authorize_url()
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(code_challenge=rp.verifier, code_challenge_method="plain")
    answer = rig.browser().get(parts._replace(query="").geturl(), params=query,
                               allow_redirects=False)
    assert answer.status_code == 302 and "error=invalid_request" in answer.headers["Location"]


def test_wrong_pkce_verifier_is_refused_and_burns_the_code(rig: Rig) -> None:
    rp = _rp(rig)
    redirect = _login(rig, rp)
    with pytest.raises(OAuthError) as exc:
        rp.fetch(redirect, verifier="x" * 50)
    assert exc.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as again:
        rp.fetch(redirect)  # the right verifier, too late
    assert again.value.error == "invalid_grant"


def test_missing_pkce_verifier_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    with pytest.raises(OAuthError) as exc:
        rp.fetch(_login(rig, rp), verifier=None)
    assert exc.value.error == "invalid_request"


def test_code_used_twice_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    redirect = _login(rig, rp)
    assert rp.verify(rp.fetch(redirect)["id_token"])["sscard:ssn"] == HOLDER_SSN
    with pytest.raises(OAuthError) as exc:
        rp.fetch(redirect)
    assert exc.value.error == "invalid_grant"


def test_code_of_another_client_is_refused(rig: Rig) -> None:
    rp, other = _rp(rig), _rp(rig)
    redirect = _login(rig, rp)
    with pytest.raises(OAuthError) as exc:
        other.fetch(redirect.replace(f"state={rp.state}", f"state={other.state}"),
                    verifier=rp.verifier)
    assert exc.value.error in ("invalid_grant", "invalid_request")


def test_wrong_client_secret_is_refused(rig: Rig) -> None:
    c = add_client(rig)
    rp = RelyingParty(rig.url, c.client_id, "not-the-secret", c.redirect_uri)
    with pytest.raises(OAuthError) as exc:
        rp.fetch(_login(rig, rp))
    assert exc.value.error == "invalid_client"


def _tamper(id_token: str) -> str:
    header, payload, signature = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sscard:ssn"] = "350102199001011234"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_id_token_is_refused_at_the_rp(rig: Rig) -> None:
    rp = _rp(rig)
    id_token = rp.fetch(_login(rig, rp))["id_token"]
    with pytest.raises(JoseError):
        rp.verify(_tamper(id_token))


def test_id_token_for_another_rp_is_refused_at_the_rp(rig: Rig) -> None:
    rp, other = _rp(rig), _rp(rig)
    id_token = rp.fetch(_login(rig, rp))["id_token"]
    other.nonce = rp.nonce  # only aud differs
    with pytest.raises(JoseError):
        other.verify(id_token)  # aud is rp's client id


def test_login_token_for_another_origin_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    answer = rig.login(rig.browser(), rp.authorize_url(), origin="https://evil.example")
    assert answer.status_code == 401
    assert answer.json()["code"] == "ORIGIN_MISMATCH"


def test_login_token_replayed_in_another_session_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    victim = rig.browser()
    victim.get(rp.authorize_url())
    nonce = victim.post(rig.url + "/login/nonce").json()["nonce"]
    token = rig.card.token(rig.provider.config.origin, nonce)
    assert victim.post(rig.url + "/login/token", json=token).status_code == 200
    # the same token again, and in a session that asked for another nonce
    assert victim.post(rig.url + "/login/token", json=token).json()["code"] == "NONCE_UNKNOWN"
    attacker = rig.browser()
    attacker.post(rig.url + "/login/nonce")
    refused = attacker.post(rig.url + "/login/token", json=token)
    assert refused.status_code == 401 and refused.json()["code"] == "SIGNATURE_INVALID"


def test_consent_needs_the_form_token(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    _login(rig, rp, browser)  # a session at the provider
    url = rp.authorize_url()
    answer = browser.post(url, data={"decision": "allow"}, allow_redirects=False)
    assert answer.status_code == 403, answer.headers.get("Location")
    assert answer.json()["code"] == "csrf"


def test_consent_denied_returns_access_denied(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    _login(rig, rp, browser)
    page = browser.get(rp.authorize_url())
    assert "授权确认" in page.text and "就业登记系统" in page.text
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    answer = browser.post(page.url, data={"csrf": csrf, "decision": "deny"},
                          allow_redirects=False)
    assert answer.status_code == 302 and "error=access_denied" in answer.headers["Location"]


def test_nonce_of_an_earlier_authorisation_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    _login(rig, rp, browser)
    first = rp.nonce
    again = rp.authorize_url().replace(f"nonce={rp.nonce}", f"nonce={first}")
    assert f"nonce={first}" in again
    answer = browser.get(again, allow_redirects=False)
    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["Location"]


def _logins(rig: Rig, outcome: str) -> float:
    for line in requests.get(rig.url + "/metrics").text.splitlines():
        if line.startswith(f'sscard_idp_logins_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_ops_endpoints(rig: Rig) -> None:
    assert requests.get(rig.url + "/health").status_code == 200
    assert requests.get(rig.url + "/ready").status_code == 200
    rp = _rp(rig)
    ok, mismatched = _logins(rig, "success"), _logins(rig, "ORIGIN_MISMATCH")
    _login(rig, rp)
    rig.login(rig.browser(), rp.authorize_url(), origin="https://evil.example")
    assert _logins(rig, "success") == ok + 1
    assert _logins(rig, "ORIGIN_MISMATCH") == mismatched + 1
    assert 'service="idp"' in requests.get(rig.url + "/metrics").text
    missing = requests.get(rig.url + "/nothing")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")


def _audited(rig: Rig, action: str) -> list[tuple[str, dict[str, object]]]:
    log = rig.provider.audit
    assert isinstance(log, AuditLog)
    return [(r.record.outcome, dict(r.record.details)) for r in log.records(actions=[action])]


def test_logins_refusals_and_code_exchanges_are_audited(rig: Rig) -> None:
    rp = _rp(rig)
    before = len(_audited(rig, "idp.login"))
    rp.fetch(_login(rig, rp))
    refused = rig.login(rig.browser(), rp.authorize_url(), origin="https://evil.example")
    assert refused.status_code == 401
    logins = _audited(rig, "idp.login")[before:]
    outcomes = [(o, d.get("ssn"), d.get("reason")) for o, d in logins if o != "attempt"]
    assert outcomes == [("success", HOLDER_SSN, None), ("denied", None, "ORIGIN_MISMATCH")]
    assert [o for o, _ in _audited(rig, "idp.authorize")].count("success") >= 1
    assert "success" in [o for o, _ in _audited(rig, "idp.code.exchange")]


def test_expired_code_is_refused(rig: Rig) -> None:
    rp = _rp(rig)
    redirect = _login(rig, rp)
    real = rig.store.clock
    rig.store.clock = lambda: real() + timedelta(seconds=61)
    try:
        with pytest.raises(OAuthError) as exc:
            rp.fetch(redirect)
    finally:
        rig.store.clock = real
    assert exc.value.error == "invalid_grant"


def test_code_with_another_redirect_uri_is_refused(rig: Rig) -> None:
    client, secret = rig.store.add_client("two uris", ["https://rp.example/a",
                                                       "https://rp.example/b"])
    rp = RelyingParty(rig.url, client.client_id, secret, "https://rp.example/a")
    redirect = _login(rig, rp)
    rp.session.redirect_uri = "https://rp.example/b"  # registered, but not the code's
    with pytest.raises(OAuthError) as exc:
        rp.fetch(redirect)
    assert exc.value.error == "invalid_grant"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/authorize?",
                                    "/logout", ""])
def test_login_page_only_returns_to_an_authorisation_request(rig: Rig, target: str) -> None:
    answer = rig.browser().get(rig.url + "/login", params={"next": target})
    assert answer.status_code == 400 and answer.json()["code"] == "bad_next"


def test_login_token_without_a_nonce_or_with_junk_is_refused(rig: Rig) -> None:
    browser = rig.browser()
    token = rig.card.token(rig.provider.config.origin, "made-up")
    answer = browser.post(rig.url + "/login/token", json=token)
    assert answer.status_code == 400 and answer.json()["code"] == "NONCE_UNKNOWN"
    browser.post(rig.url + "/login/nonce")
    junk = browser.post(rig.url + "/login/token", data=b"not json",
                        headers={"Content-Type": "application/json"})
    assert junk.status_code == 400 and junk.json()["code"] == "MALFORMED"


def test_provider_session_expires(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    _login(rig, rp, browser)
    real = rig.store.clock
    later = timedelta(seconds=rig.provider.config.session_seconds + 1)
    rig.store.clock = lambda: real() + later
    try:
        answer = browser.get(rp.authorize_url(), allow_redirects=False)
    finally:
        rig.store.clock = real
    assert answer.status_code == 302 and "/login?" in answer.headers["Location"]


def test_pages_cannot_be_framed_and_leak_no_referrer(rig: Rig) -> None:
    rp = _rp(rig)
    browser = rig.browser()
    _login(rig, rp, browser)
    consent = browser.get(rp.authorize_url())
    assert "授权确认" in consent.text
    assert consent.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in consent.headers["Content-Security-Policy"]
    assert consent.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in consent.headers["Cache-Control"]


def test_login_page_loads_the_card_library_and_asks_no_pin(rig: Rig) -> None:
    rp = _rp(rig)
    start = rig.browser().get(rp.authorize_url())
    assert start.url.startswith(rig.url + "/login?")
    assert "使用社会保障卡登录" in start.text
    assert '<script src="/static/sscard-login.js">' in start.text
    assert "password" not in start.text.lower() and "<input" not in start.text
    assert '"http://127.0.0.1:24727"' in start.text  # the agent's URL, from the config


def test_prompt_none_shows_no_page(rig: Rig) -> None:
    rp = _rp(rig)
    silent = rig.browser().get(rp.authorize_url() + "&prompt=none", allow_redirects=False)
    assert silent.status_code == 302 and "error=login_required" in silent.headers["Location"]
    browser = rig.browser()
    _login(rig, rp, browser)
    again = browser.get(rp.authorize_url() + "&prompt=none", allow_redirects=False)
    assert again.status_code == 302
    query = parse_qs(urlsplit(again.headers["Location"]).query)
    assert query["error"] == ["consent_required"] and query["state"] == [rp.state]
