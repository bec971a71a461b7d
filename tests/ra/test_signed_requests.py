"""Stations and services at the RA's enrollment API: requests signed (sscard.httpsig) with a
certificate bound to the API client, each accepted once by every worker."""

from __future__ import annotations

import secrets

import pytest

from ra.web import WebConfig, create_app
from reader_tools.issuance_client import IssuanceError, RestBackend
from sscard import httpsig
from tests.cms.pki import make_ca, make_leaf
from tests.http.test_contract import Served
from tests.ra.rig import RaRig


def test_signed_client_once_across_workers(rig: RaRig) -> None:
    station = make_leaf("CN=station-7,O=人社厅,C=CN", make_ca("CN=Station CA"))
    rig.ra.add_signing_client(None, "station-7", station.cert.dump())
    config = WebConfig(secrets.token_bytes(32), secure_cookies=False)
    first = create_app(rig.ra, config).test_client()
    second = create_app(rig.ra, config).test_client()  # another worker, same database
    headers = httpsig.sign_request(station.key, station.cert, "GET", "/api/v1/whoami", "", b"")
    answer = first.get("/api/v1/whoami", headers=headers)
    assert answer.status_code == 200 and answer.json == {"client": "station-7"}
    again = second.get("/api/v1/whoami", headers=headers)
    assert again.status_code == 401 and again.json is not None
    assert again.json["code"] == "replayed_request"
    stranger = make_leaf("CN=station-7,O=人社厅,C=CN", make_ca("CN=Station CA"))
    refused = first.get("/api/v1/whoami", headers=httpsig.sign_request(
        stranger.key, stranger.cert, "GET", "/api/v1/whoami", "", b""))
    assert refused.status_code == 401 and refused.json is not None
    assert "no active API client" in refused.json["detail"]


def test_rest_backend_signs(rig: RaRig, app: object) -> None:
    station = make_leaf("CN=station-8,O=人社厅,C=CN", make_ca("CN=Station CA"))
    rig.ra.add_signing_client(None, "station-8", station.cert.dump())
    with Served(app) as url:  # type: ignore[arg-type]
        backend = RestBackend(url, signer=httpsig.RequestSigner(station.key, station.cert))
        assert backend.check() == "station-8"
        with pytest.raises(IssuanceError, match=r"404 not_found"):
            backend.status("no-such-request")
    with pytest.raises(ValueError, match="one of them"):
        RestBackend("http://127.0.0.1:1")


def test_cli_add_client_with_certificate(tmp_path: object) -> None:
    from pathlib import Path

    from ra.service import RegistrationAuthority
    from sscard.audit import AuditLog
    from sscard.x509.pem import der_to_pem
    from tests.ra.test_cli import audit_url, default_url, sscard

    base = Path(str(tmp_path))
    home = base / "home"
    station = make_leaf("CN=station-9,O=人社厅,C=CN", make_ca("CN=Station CA"))
    (base / "station.pem").write_bytes(der_to_pem(station.cert.dump(), "CERTIFICATE"))
    neither = sscard(home, "add-client", "station-9")
    assert neither.returncode == 2 and "--certificate" in neither.stderr
    added = sscard(home, "add-client", "station-9", "--certificate", str(base / "station.pem"))
    assert added.returncode == 0, added.stderr
    assert "signs its requests" in added.stdout and "ra_" not in added.stdout
    ra = RegistrationAuthority.open(default_url(home), AuditLog.open(audit_url(home)))
    try:
        identity = httpsig.decode_certificate(station.cert.dump()).identity
        assert ra.authenticate_signed_client(identity).name == "station-9"
    finally:
        ra.close()
