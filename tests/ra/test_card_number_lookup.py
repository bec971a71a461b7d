"""The RA's card-number lookup (GET /api/v1/card-numbers/<serial>): the registry behind the
identity provider's verified card-number claim. Only a caller signing with a certificate the
RA's configuration names gets an answer: a station's certificate, a bearer token and an
unconfigured RA are refused; a certificate on no active card gives 404, never a guess; every
lookup is audited."""

from __future__ import annotations

import secrets
from typing import Any

from ra.web import WebConfig, create_app
from sscard import httpsig
from tests.cms.pki import make_ca, make_leaf
from tests.ra.enroll import new_enrollment
from tests.ra.rig import RaRig

PATH = "/api/v1/card-numbers/"


def lookup(app: Any, signer: Any, serial: str) -> Any:
    path = PATH + serial
    return app.get(path, headers=httpsig.sign_request(signer.key, signer.cert, "GET", path,
                                                      "", b""))


def issued_card(rig: RaRig) -> dict[str, Any]:
    pending, _key = new_enrollment(rig)
    card = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")["card"]
    rig.ra.confirm_personalised(rig.client, pending["request_id"])
    return dict(card)


def test_only_the_named_certificate_may_look_up(rig: RaRig) -> None:
    idp = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    station = make_leaf("CN=station-5,O=人社厅,C=CN", make_ca("CN=Station CA"))
    rig.ra.add_signing_client(None, "idp", idp.cert.dump())
    rig.ra.add_signing_client(None, "station-5", station.cert.dump())
    card = issued_card(rig)
    serial = card["sign_serial"]
    unconfigured = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    assert lookup(unconfigured.test_client(), idp, serial).status_code == 403  # none by default
    named = WebConfig(secrets.token_bytes(32), secure_cookies=False,
                      card_number_readers=frozenset({
                          httpsig.decode_certificate(idp.cert.dump()).identity.hex()}))
    app = create_app(rig.ra, named).test_client()
    refused = lookup(app, station, serial)  # an enrolled station: not a card-number reader
    assert refused.status_code == 403 and "may not look card numbers up" in refused.json["detail"]
    token = rig.ra.add_api_client(None, "kiosk-1")
    bearer = app.get(PATH + serial, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 403
    answer = lookup(app, idp, serial)
    assert answer.status_code == 200 and answer.json == {"card_number": card["card_number"]}
    # the encryption certificate's serial, or one the RA never saw: no card number
    assert lookup(app, idp, card["enc_serial"]).status_code == 404
    assert lookup(app, idp, "7f" + "00" * 15).status_code == 404
    assert lookup(app, idp, "not-a-serial").status_code == 400
    records = [s.record for s in rig.ra.audit.records() if s.record.action == "ra.card.lookup"]
    assert any(r.details.get("reason") == "not a card-number reader" for r in records), records
    assert any(r.actor == "client:idp" and r.object.lower() == serial.lower()
               and r.outcome == "success" for r in records)


def test_a_revoked_card_gives_no_card_number(rig: RaRig) -> None:
    idp = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    rig.ra.add_signing_client(None, "idp-2", idp.cert.dump())
    card = issued_card(rig)
    app = create_app(rig.ra, WebConfig(
        secrets.token_bytes(32), secure_cookies=False, card_number_readers=frozenset({
            httpsig.decode_certificate(idp.cert.dump()).identity.hex()}))).test_client()
    assert lookup(app, idp, card["sign_serial"]).status_code == 200
    revocation = rig.ra.submit_revocation(rig.actor("operator"),
                                          card_number=card["card_number"])
    rig.ra.approve(rig.actor("officer1"), revocation["request_id"], "lost")
    assert rig.ra.approve(rig.actor("officer2"), revocation["request_id"])["state"] == "done"
    assert lookup(app, idp, card["sign_serial"]).status_code == 404
