"""Service identities at the KMC: the CA and the RA sign their requests (sscard.httpsig) with
the key of a certificate bound to their caller record, instead of holding an API key; each
signed request is accepted once, also by a second worker sharing the KMC database."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from keymgmt.client import KmcClient
from keymgmt.errors import KmcError
from keymgmt.service import KeyManagementCentre
from keymgmt.web import create_app
from sscard import httpsig
from sscard.audit import AuditLog
from sscard.crypto.sm2 import SM2PrivateKey
from tests.cms.pki import make_ca, make_leaf
from tests.http.test_contract import Served
from tests.kmc.kmc_helpers import new_kmc
from tests.replay_attacks import long_form


@pytest.fixture
def kmc(tmp_path: Path) -> Iterator[KeyManagementCentre]:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


def _escrow_body() -> tuple[str, bytes]:
    spki = SM2PrivateKey.generate().public_key().spki_der()
    return "/kmc/v1/escrow", json.dumps({"owner": "11010519491231002X", "recipient_public_key":
                                         base64.b64encode(spki).decode()}).encode()


def test_signed_escrow_once_across_workers(kmc: KeyManagementCentre) -> None:
    ra = make_leaf("CN=RA service,O=人社厅,C=CN", make_ca("CN=Service CA"))
    kmc.add_service_caller("ra-service", "ra", ra.cert.dump())
    first: FlaskClient = create_app(kmc).test_client()
    second: FlaskClient = create_app(kmc).test_client()  # another worker, same database
    path, body = _escrow_body()
    headers = {**httpsig.sign_request(ra.key, ra.cert, "POST", path, "", body),
               "Content-Type": "application/json"}
    assert first.post(path, data=body, headers=headers).status_code == 201
    again = second.post(path, data=body, headers=headers)
    assert again.status_code == 401 and again.json is not None
    assert again.json["code"] == "replayed_request"
    # the events name the service identity
    events = kmc.events(kmc.authenticate(kmc.add_caller("aud", "auditor")), "escrow.generate")
    assert [e["actor"] for e in events] == ["ra-service"]


def test_unbound_foreign_and_deactivated_certificates_are_refused(
        kmc: KeyManagementCentre) -> None:
    ca = make_ca("CN=Service CA")
    ra = make_leaf("CN=RA service,O=人社厅,C=CN", ca)
    stranger = make_leaf("CN=RA service,O=人社厅,C=CN", ca)  # same name, another certificate
    kmc.add_service_caller("ra-service", "ra", ra.cert.dump())
    client = create_app(kmc).test_client()
    path, body = _escrow_body()

    def call(who: object) -> dict[str, object]:
        headers = {**httpsig.sign_request(who.key, who.cert,  # type: ignore[attr-defined]
                                          "POST", path, "", body),
                   "Content-Type": "application/json"}
        answer = client.post(path, data=body, headers=headers)
        assert answer.status_code == 401 and answer.json is not None
        return dict(answer.json)

    assert "no active caller" in str(call(stranger)["detail"])
    kmc.deactivate_caller("ra-service")
    assert "no active caller" in str(call(ra)["detail"])
    with pytest.raises(KmcError, match="not DER"):
        kmc.add_service_caller("bad", "ra", long_form(ra.cert.dump()))


def test_kmc_client_signs_as_a_service(kmc: KeyManagementCentre) -> None:
    ra = make_leaf("CN=RA service,O=人社厅,C=CN", make_ca("CN=Service CA"))
    kmc.add_service_caller("ra-service", "ra", ra.cert.dump())
    card = SM2PrivateKey.generate()
    with Served(create_app(kmc)) as url:
        client = KmcClient(url, signer=httpsig.RequestSigner(ra.key, ra.cert))
        escrow = client.escrow("11010519491231002X", card.public_key().spki_der())
        assert escrow.key_id
        # a signed GET with a query string (the signature covers it)
        keys = client._call("GET", "/keys", params={"owner": "11010519491231002X"})
        assert [k["key_id"] for k in keys["keys"]] == [escrow.key_id]
    with pytest.raises(ValueError, match="one of them"):
        KmcClient("http://127.0.0.1:1", "key", signer=httpsig.RequestSigner(ra.key, ra.cert))


def test_cli_binds_a_service_certificate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sscard.cli import cli
    from sscard.x509.pem import der_to_pem

    ra = make_leaf("CN=RA service,O=人社厅,C=CN", make_ca("CN=Service CA"))
    (tmp_path / "ra.pem").write_bytes(der_to_pem(ra.cert.dump(), "CERTIFICATE"))
    home = tmp_path / "home"
    run = CliRunner().invoke(cli, ["--home", str(home), "kmc", "caller", "add", "ra-service",
                                   "--role", "ra", "--certificate", str(tmp_path / "ra.pem")])
    assert run.exit_code == 0, run.output
    assert "signs its requests" in run.output and "kmc_" not in run.output
    kmc = KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}",
                                   audit=AuditLog.at_home(home))
    try:
        identity = httpsig.decode_certificate(ra.cert.dump()).identity
        assert kmc.authenticate_certificate(identity).name == "ra-service"
    finally:
        kmc.close()
