"""The certificate claim (scope ``sscard:cert``): released only to a client an administrator
granted it, and only when asked for; a client that asks without the grant gets a login without
it (the scope is dropped before the code is made, so no ID token of that login can carry it).
The provider's trusted profiles are a list in its configuration."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sscard.cli import cli
from sscard.idp.store import CERT_SCOPE, StoreError
from sscard.idp.wsgi import IdpConfigError, load_settings
from sscard.x509.names import format_name
from tests.idp.provider_rig import RelyingParty, Rig, add_client, serve

CERT_CLAIMS = ("x5t#S256", "sscard:cert_profile", "sscard:cert_issuer")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    path: Path = tmp_path_factory.mktemp("idp-cert") / "idp.sqlite"
    yield from serve(f"sqlite:///{path}")


def _claims(rig: Rig, granted: frozenset[str], scope: str) -> dict[str, object]:
    c = add_client(rig, granted_scopes=granted)
    rp = RelyingParty(rig.url, c.client_id, c.secret, c.redirect_uri, scope=scope)
    answer = rig.login(rig.browser(), rp.authorize_url())
    assert answer.status_code == 302, answer.text
    tokens = rp.fetch(answer.headers["Location"])
    claims = rp.verify(tokens["id_token"])
    claims["_scope"] = tokens.get("scope", "")
    return claims


def test_a_granted_client_that_asks_gets_the_certificate(rig: Rig) -> None:
    claims = _claims(rig, frozenset({CERT_SCOPE}), "openid profile sscard:cert")
    der = rig.card.cert.dump()
    assert claims["x5t#S256"] == base64.urlsafe_b64encode(
        hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert claims["sscard:cert_profile"] == "cardholder-sign"  # by policy OID
    assert claims["sscard:cert_issuer"] == format_name(rig.card.cert.issuer)


def test_a_client_not_granted_the_scope_gets_no_certificate_claim(rig: Rig) -> None:
    """The forged ask: the client puts sscard:cert in its request; the login goes on, but
    neither the code nor the ID token carry the scope or its claims."""
    claims = _claims(rig, frozenset(), "openid profile sscard:cert")
    assert not set(CERT_CLAIMS) & set(claims), claims
    assert CERT_SCOPE not in str(claims["_scope"]).split()
    assert claims["sscard:ssn"]  # the login itself went through


def test_a_granted_client_that_does_not_ask_gets_none(rig: Rig) -> None:
    claims = _claims(rig, frozenset({CERT_SCOPE}), "openid profile")
    assert not set(CERT_CLAIMS) & set(claims), claims


def test_only_known_scopes_can_be_granted(rig: Rig) -> None:
    with pytest.raises(StoreError, match="can be granted"):
        rig.store.add_client("x", ["https://x.example/cb"], granted_scopes={"admin"})
    meta = rig.provider.discovery()
    assert CERT_SCOPE in meta["scopes_supported"] and "x5t#S256" in meta["claims_supported"]


def test_cli_grants_the_scope_and_lists_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'idp.sqlite'}"
    base = ["--home", str(tmp_path), "idp", "client"]
    added = CliRunner().invoke(cli, [*base, "add", "--name", "注册审核系统", "--redirect-uri",
                                     "https://ra.example/login/card/callback", "--grant-scope",
                                     CERT_SCOPE, "--secret-file", str(tmp_path / "s"),
                                     "--format", "json", "--db-url", db])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["granted_scopes"] == [CERT_SCOPE]
    plain = CliRunner().invoke(cli, [*base, "add", "--name", "就业", "--redirect-uri",
                                     "https://rp.example/cb", "--secret-file",
                                     str(tmp_path / "t"), "--db-url", db])
    assert plain.exit_code == 0, plain.output
    listed = json.loads(CliRunner().invoke(cli, [*base, "list", "--format", "json",
                                                 "--db-url", db]).stdout)
    assert [c["granted_scopes"] for c in listed] == [[CERT_SCOPE], []]
    bad = CliRunner().invoke(cli, [*base, "add", "--name", "x", "--redirect-uri",
                                   "https://x.example/cb", "--grant-scope", "admin",
                                   "--secret-file", str(tmp_path / "u"), "--db-url", db])
    assert bad.exit_code != 0 and not (tmp_path / "u").exists()


def test_a_profile_bound_to_other_cas_is_refused(rig: Rig) -> None:
    """The staff profile from the staff CA only: a certificate of a profile bound to CAs that
    did not issue it logs nobody in (the cardholder CA cannot mint a staff login)."""
    from tests.cms.pki import make_ca

    bound = rig.provider.config.profile_issuers
    try:
        rig.provider.config.profile_issuers = {"cardholder-sign": (make_ca("CN=Staff CA").cert
                                                                   .subject,)}
        c = add_client(rig, granted_scopes=frozenset({CERT_SCOPE}))
        rp = RelyingParty(rig.url, c.client_id, c.secret, c.redirect_uri)
        refused = rig.login(rig.browser(), rp.authorize_url())
        assert refused.status_code == 401 and refused.json()["code"] == "WRONG_CERTIFICATE"
        rig.provider.config.profile_issuers = {"cardholder-sign": (rig.card.cert.issuer,)}
        assert rig.login(rig.browser(), rp.authorize_url()).status_code == 302
    finally:
        rig.provider.config.profile_issuers = bound


def test_the_trusted_profiles_are_a_list_in_the_configuration(tmp_path: Path) -> None:
    from asn1crypto import pem

    from tests.cms.pki import make_ca

    staff = make_ca("CN=Staff CA,C=CN")
    (tmp_path / "staff-ca.pem").write_bytes(pem.armor("CERTIFICATE", staff.cert.dump()))
    (tmp_path / "root.pem").write_text("x")
    base = 'issuer = "https://idp.example"\ntrust_anchors = ["root.pem"]\n'
    config = tmp_path / "idp.toml"
    config.write_text(base)
    assert dict(load_settings(config).provider.login_profiles) == {
        "cardholder-sign": "1.2.156.10260.4.2.1.1"}
    config.write_text(base + '[login_profiles]\ncardholder-sign = "1.2.156.10260.4.2.1.1"\n'
                      'ra-officer = "1.2.156.10260.4.2.2.1"\n')
    assert set(load_settings(config).provider.login_profiles) == {"cardholder-sign",
                                                                  "ra-officer"}
    config.write_text(base + '[login_profiles]\nra-officer = { policy = "1.2.156.10260.4.2.2.1",'
                      ' issuers = ["staff-ca.pem"] }\n')
    settings = load_settings(config).provider
    assert settings.login_profiles == {"ra-officer": "1.2.156.10260.4.2.2.1"}
    assert settings.profile_issuers == {"ra-officer": (staff.cert.subject,)}
    for bad in ('ra-officer = "not an oid"', 'ra-officer = { policy = "1.2.3", issuers = [] }',
                'ra-officer = { policy = "1.2.3", cas = ["staff-ca.pem"] }'):
        config.write_text(base + "[login_profiles]\n" + bad + "\n")
        with pytest.raises(IdpConfigError, match="login_profiles"):
            load_settings(config)
    config.write_text(base + '[login_profiles]\nra-officer = { policy = "1.2.3", '
                      'issuers = ["root.pem"] }\n')
    with pytest.raises(IdpConfigError, match="ra-officer"):
        load_settings(config)
