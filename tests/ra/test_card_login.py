"""Officers log in to the RA with the card through the OpenID Connect provider (issue 15 item
5): the real provider (tests.idp.provider_rig: served on a free port, the emulated card signing
in process, the real TokenValidator), the RA's web app with Authlib's Flask client, and the
attacks first: a token for another client, from another issuer, a cardholder who is no
officer, a disabled officer, a revoked certificate, a replayed or stolen code, a client not
granted sscard:cert, CSRF on the callback (state), an open redirect after log-in."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from asn1crypto import x509
from flask import Flask
from flask.testing import FlaskClient

from ra.cardlogin import CALLBACK, CardLogin, CardLoginConfig
from ra.errors import AuthenticationFailed
from ra.models import Role
from ra.web import WebConfig, create_app
from sscard.idp.store import CERT_SCOPE
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from tests.gateway.card import HOLDER_SSN
from tests.idp.provider_rig import RelyingParty, Rig, add_client, serve
from tests.ra.rig import PASSWORD, RaRig, make_rig, person_of

RA = "http://localhost"  # where Flask's test client is
PROFILES = frozenset({"cardholder-sign", "ra-officer"})


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from serve(f"sqlite:///{tmp_path_factory.mktemp('idp') / 'idp.sqlite'}")


@pytest.fixture(scope="module")
def other_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Another provider (its own issuer and keys): what an attacker could run."""
    yield from serve(f"sqlite:///{tmp_path_factory.mktemp('other') / 'idp.sqlite'}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[RaRig]:
    r = make_rig(tmp_path / "ra")
    yield r
    r.close()


@dataclass
class World:
    rig: RaRig
    idp: Rig
    app: Flask
    browser: requests.Session
    """The officer's browser at the provider (its session cookie there)."""

    def register_officer(self, username: str = "cardofficer") -> None:
        """An officer account for the card's holder, with the card's certificate."""
        self.rig.ra.add_officer(None, username, "持卡审核员", PASSWORD, {Role.OFFICER},
                                person_id=HOLDER_SSN)
        self.rig.ra.set_officer_certificate(None, username, self.idp.card.cert.dump())

    def to_provider(self, ra: FlaskClient, path: str = "/login/card") -> str:
        start = ra.get(path)
        assert start.status_code == 302, start.get_data(as_text=True)
        assert start.location.startswith(self.idp.url + "/authorize?"), start.location
        return start.location

    def callback_url(self, ra: FlaskClient) -> str:
        """The provider's redirect back to the RA after the card login and consent."""
        back = self.idp.login(self.browser, self.to_provider(ra))
        assert back.status_code == 302, back.text
        location = back.headers["Location"]
        assert location.startswith(RA + CALLBACK + "?"), location
        return location.removeprefix(RA)

    def log_in(self, ra: FlaskClient) -> tuple[int, str]:
        answer = ra.get(self.callback_url(ra))
        return answer.status_code, answer.headers.get("Location", "")


def make_world(rig: RaRig, idp: Rig, granted: frozenset[str] = frozenset({CERT_SCOPE})
               ) -> World:
    client = add_client(idp, "注册审核系统", RA + CALLBACK, RA + "/login", granted)
    config = CardLoginConfig(idp.url, client.client_id, client.secret, RA, PROFILES)
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False,
                                       card_login=config))
    return World(rig, idp, app, idp.browser())


@pytest.fixture
def world(rig: RaRig, idp: Rig) -> World:
    return make_world(rig, idp)


def _logged_in_as(ra: FlaskClient) -> str | None:
    with ra.session_transaction() as s:
        return s.get("user")


def _login_outcomes(rig: RaRig, outcome: str) -> list[str]:
    """The details of the log-in records with ``outcome`` (denied: the reason is in them)."""
    return [str(r.record.details) for r in rig.audit.records(1, actions=["ra.login"])
            if r.record.outcome == outcome]


# -- attacks first ---------------------------------------------------------------------------


def test_a_cardholder_who_is_not_an_officer_is_refused(world: World) -> None:
    ra = world.app.test_client()
    status, _ = world.log_in(ra)
    assert status == 401 and _logged_in_as(ra) is None
    assert "no officer registered this certificate" in _login_outcomes(world.rig, "denied")[-1]


def test_a_disabled_officer_is_refused(world: World) -> None:
    world.register_officer()
    world.rig.ra.disable_officer(world.rig.actor("admin"), "cardofficer")
    ra = world.app.test_client()
    status, _ = world.log_in(ra)
    assert status == 401 and _logged_in_as(ra) is None


def _officer_certificate(rig: RaRig, person: str) -> bytes:
    """An ra-officer certificate from the RA's own CA (a staff card's, say)."""
    from sscard.keys.software import SoftwareKey

    csr = CsrBuilder().subject(parse_name(
        f"CN=审核员,serialNumber={person},O=人社厅,C=CN")).sign(SoftwareKey.generate("sm2"))
    return bytes(rig.ca.issue_from_csr(csr.dump(), "ra-officer").der)


def _x5t(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def test_an_officer_whose_certificate_is_revoked_is_refused(rig: RaRig) -> None:
    """The RA asks its own CA again about a certificate that CA issued (the provider checked
    OCSP at the log-in; the RA does not take a revoked officer's word from anyone)."""
    person = person_of(300)
    rig.ra.add_officer(None, "staffcard", "员工卡", PASSWORD, {Role.OFFICER}, person_id=person)
    der = _officer_certificate(rig, person)
    rig.ra.set_officer_certificate(None, "staffcard", der)
    actor = rig.ra.authenticate_card(_x5t(der), "ra-officer", person, PROFILES, "192.0.2.1")
    assert actor.name == "staffcard" and actor.roles == frozenset({Role.OFFICER})
    rig.ca.revoke(x509.Certificate.load(der).serial_number, "keyCompromise")
    with pytest.raises(AuthenticationFailed):
        rig.ra.authenticate_card(_x5t(der), "ra-officer", person, PROFILES, "192.0.2.1")
    assert "certificate is revoked" in _login_outcomes(rig, "denied")[-1]


def test_a_profile_the_ra_does_not_take_or_another_person_is_refused(rig: RaRig) -> None:
    """Identity from the certificate's profile and fingerprint: the right fingerprint under a
    profile officers do not log in with, or naming another person, is refused."""
    person = person_of(301)
    rig.ra.add_officer(None, "profiled", "员工卡", PASSWORD, {Role.OFFICER}, person_id=person)
    der = _officer_certificate(rig, person)
    rig.ra.set_officer_certificate(None, "profiled", der)
    x5t = _x5t(der)
    other = ("B" if x5t[0] == "A" else "A") + x5t[1:]  # always another fingerprint
    for fingerprint, profile, ssn in ((x5t, "business-system", person),
                                      (x5t, "ra-officer", person_of(302)),
                                      (other, "ra-officer", person)):
        with pytest.raises(AuthenticationFailed):
            rig.ra.authenticate_card(fingerprint, profile, ssn, PROFILES, "192.0.2.2")


def test_card_failures_lock_the_source_out(rig: RaRig) -> None:
    for _ in range(rig.ra.config.max_failed_per_source):
        with pytest.raises(AuthenticationFailed):
            rig.ra.authenticate_card("nobody", "ra-officer", "x", PROFILES, "192.0.2.3")
    person = person_of(303)
    rig.ra.add_officer(None, "locked", "员工卡", PASSWORD, {Role.OFFICER}, person_id=person)
    der = _officer_certificate(rig, person)
    rig.ra.set_officer_certificate(None, "locked", der)
    with pytest.raises(AuthenticationFailed):  # even the right card, from that source
        rig.ra.authenticate_card(_x5t(der), "ra-officer", person, PROFILES, "192.0.2.3")
    assert rig.ra.authenticate_card(_x5t(der), "ra-officer", person, PROFILES,
                                    "192.0.2.4").name == "locked"


def test_a_client_not_granted_the_certificate_scope_logs_nobody_in(rig: RaRig,
                                                                   idp: Rig) -> None:
    """The RA asks for sscard:cert; registered without the grant, its ID tokens carry no
    x5t#S256 and the log-in is refused (never a fall-back to the name or the sub)."""
    world = make_world(rig, idp, granted=frozenset())
    world.register_officer()
    ra = world.app.test_client()
    status, _ = world.log_in(ra)
    assert status == 401 and _logged_in_as(ra) is None
    assert "x5t#S256" in _login_outcomes(rig, "denied")[-1]


def test_an_id_token_for_another_client_is_refused(world: World, idp: Rig) -> None:
    """A business system's ID token for the same officer (aud: that system) is no RA login."""
    other = add_client(idp, "就业登记系统", granted_scopes=frozenset({CERT_SCOPE}))
    rp = RelyingParty(idp.url, other.client_id, other.secret, other.redirect_uri,
                      scope="openid profile sscard:cert")
    answer = idp.login(idp.browser(), rp.authorize_url())
    id_token = rp.fetch(answer.headers["Location"])["id_token"]
    card: CardLogin = world.app.extensions["ra_card_login"]
    with world.app.test_request_context():
        with pytest.raises(AuthenticationFailed, match=r"aud|azp"):
            card.verify_id_token(id_token, rp.nonce)


def test_an_id_token_from_another_issuer_is_refused(world: World, other_idp: Rig) -> None:
    other = add_client(other_idp, granted_scopes=frozenset({CERT_SCOPE}))
    rp = RelyingParty(other_idp.url, other.client_id, other.secret, other.redirect_uri,
                      scope="openid profile sscard:cert")
    answer = other_idp.login(other_idp.browser(), rp.authorize_url())
    id_token = rp.fetch(answer.headers["Location"])["id_token"]
    card: CardLogin = world.app.extensions["ra_card_login"]
    with world.app.test_request_context(), pytest.raises(AuthenticationFailed):
        card.verify_id_token(id_token, rp.nonce)


def test_csrf_on_the_callback_is_refused(world: World) -> None:
    """The attacker's own code and state, planted in the victim's browser (login CSRF): the
    victim's session never started that login, so the state is unknown to it."""
    world.register_officer()
    attacker = world.app.test_client()
    planted = world.callback_url(attacker)
    victim = world.app.test_client()
    victim.get("/login")
    answer = victim.get(planted)
    assert answer.status_code == 401 and _logged_in_as(victim) is None
    no_state = re.sub(r"state=[^&]*&?", "", planted)
    assert victim.get(no_state).status_code == 401


def test_a_replayed_or_stolen_code_is_refused(world: World) -> None:
    world.register_officer()
    first = world.app.test_client()
    used = world.callback_url(first)
    assert first.get(used).status_code == 302 and _logged_in_as(first) == "cardofficer"
    code = parse_qs(urlsplit(used).query)["code"][0]
    for stolen in (code, parse_qs(urlsplit(world.callback_url(world.app.test_client()))
                                  .query)["code"][0]):
        # the thief starts a login of their own (their state, their PKCE verifier) and swaps
        # the code in: a used code is refused, an unused one fails PKCE (and is burnt)
        thief = world.app.test_client()
        state = parse_qs(urlsplit(world.to_provider(thief)).query)["state"][0]
        answer = thief.get(f"{CALLBACK}?code={stolen}&state={state}&iss={world.idp.url}")
        assert answer.status_code == 401 and _logged_in_as(thief) is None


def test_no_open_redirect_after_log_in(world: World) -> None:
    world.register_officer()
    ra = world.app.test_client()
    start = world.to_provider(ra, "/login/card?next=https://evil.example/")
    assert "evil" not in start
    back = world.idp.login(world.browser, start).headers["Location"].removeprefix(RA)
    answer = ra.get(back + "&next=https://evil.example/&redirect_uri=https://evil.example/")
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


# -- the log-in itself -----------------------------------------------------------------------


def test_the_officer_logs_in_with_the_card_and_out_through_the_provider(world: World) -> None:
    world.register_officer()
    ra = world.app.test_client()
    page = ra.get("/login").get_data(as_text=True)
    assert 'id="card-login"' in page and "使用本人社保卡登录" in page
    assert 'id="certificate-login"' not in page  # the offline form is off unless set
    assert ra.get("/login/certificate").status_code == 404
    status, location = world.log_in(ra)
    assert (status, location) == (302, "/") and _logged_in_as(ra) == "cardofficer"
    assert ra.get("/batches").status_code == 200  # the officer's role, from the database
    assert ra.get("/admin/officers").status_code == 403
    assert "cardofficer" in _login_outcomes(world.rig, "success")[-1]
    # RP-initiated logout: the RA session ends, then the provider's
    with ra.session_transaction() as s:
        csrf = s["csrf"]
    out = ra.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 302 and out.location.startswith(world.idp.url + "/logout?")
    query = parse_qs(urlsplit(out.location).query)
    assert query["post_logout_redirect_uri"] == [RA + "/login"] and query["id_token_hint"]
    assert ra.get("/batches").status_code == 302  # the RA's session is gone
    bye = world.browser.get(out.location, allow_redirects=False)
    assert bye.status_code == 302 and bye.headers["Location"].startswith(RA + "/login")
    # the provider's session is gone too: a new login asks for the card again
    again = world.browser.get(world.to_provider(world.app.test_client()),
                              allow_redirects=False)
    assert again.status_code == 302 and "/login?" in again.headers["Location"]


def test_card_login_is_off_unless_configured(rig: RaRig) -> None:
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    ra = app.test_client()
    page = ra.get("/login").get_data(as_text=True)
    assert 'id="card-login"' not in page and 'id="certificate-login"' not in page
    assert ra.get("/login/card").status_code == 404
    assert ra.get(CALLBACK + "?code=x&state=y").status_code == 404
    assert ra.get("/login/certificate").status_code == 404


def test_the_card_login_file_is_checked_before_serving(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ra.cardlogin import CardLoginConfigError, load_config
    from sscard.cli import cli

    secret = tmp_path / "ra-idp.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    good = ('issuer = "https://idp.example"\nclient_id = "ra"\n'
            'client_secret_file = "ra-idp.secret"\nra_url = "https://ra.example"\n')
    config = tmp_path / "card-login.toml"
    config.write_text(good)
    loaded = load_config(config)
    assert loaded.client_secret == "s3cret" and loaded.profiles == PROFILES
    assert loaded.redirect_uri == "https://ra.example" + CALLBACK
    for bad, why in ((good.replace("https://idp.example", "https://idp.example/"), "issuer"),
                     (good + 'profiles = "ra-officer"\n', "profiles"),
                     (good + "password = 1\n", "unknown"),
                     (good.replace('client_id = "ra"\n', ""), "client_id")):
        config.write_text(bad)
        with pytest.raises(CardLoginConfigError, match=why):
            load_config(config)
    secret.chmod(0o644)  # a secret others can read is refused, as every secret file is
    config.write_text(good)
    with pytest.raises(CardLoginConfigError, match="secret"):
        load_config(config)
    secret.chmod(0o600)
    config.write_text(good.replace("https://idp.example", "ftp://idp"))
    (tmp_path / "kmc.key").write_text("k\n")
    res = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "ra", "serve",
                                   "--kmc-ra-key-file", str(tmp_path / "kmc.key"),
                                   "--card-login", str(config)])
    assert res.exit_code != 0 and "issuer" in res.output


def test_logout_when_the_provider_cannot_be_reached_still_ends_the_ra_session(
        rig: RaRig) -> None:
    from tests.pg import free_port

    config = CardLoginConfig(f"http://127.0.0.1:{free_port()}", "ra", "secret", RA, PROFILES)
    app = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False,
                                       card_login=config))
    ra = app.test_client()
    page = ra.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    assert ra.post("/login", data={"csrf_token": csrf[1], "username": "officer1",
                                   "password": PASSWORD}).status_code == 302
    with ra.session_transaction() as s:
        s["id_token"] = "a.b.c"  # as if logged in with the card
        token = s["csrf"]
    out = ra.post("/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.location.endswith("/login")
    assert ra.get("/batches").status_code == 302
