"""The RA's card-number lookup (GET /api/v1/card-numbers/<serial>?issuer=<issuer name, DER in
hex>): the registry behind the identity provider's verified card-number claim. Only a caller
signing with a certificate the RA's configuration names gets an answer: a station's
certificate, a bearer token and an unconfigured RA are refused; a certificate on no active card
gives 404, never a guess, and so does one of another CA that carries the serial of a card's
certificate (a certificate is its issuer and serial, RFC 5280 4.1.2.2); every lookup is
audited."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from asn1crypto import x509

from ra.web import WebConfig, create_app
from sscard import httpsig
from tests.cms.pki import make_ca, make_leaf
from tests.ra.enroll import new_enrollment
from tests.ra.rig import RaRig

PATH = "/api/v1/card-numbers/"


def lookup(app: Any, signer: Any, serial: str, issuer: x509.Name) -> Any:
    return lookup_query(app, signer, serial, "issuer=" + issuer.dump().hex())


def lookup_query(app: Any, signer: Any, serial: str, query: str) -> Any:
    path = PATH + serial
    return app.get(f"{path}?{query}", headers=httpsig.sign_request(
        signer.key, signer.cert, "GET", path, query, b""))


def issued_card(rig: RaRig) -> tuple[dict[str, Any], x509.Certificate]:
    """An active card, and its signing certificate."""
    pending, _key = new_enrollment(rig)
    done = rig.ra.approve(rig.actor("officer1"), pending["request_id"], "ok")
    rig.ra.confirm_personalised(rig.client, pending["request_id"])
    return dict(done["card"]), x509.Certificate.load(base64.b64decode(done["sign_cert"]))


def reader_app(rig: RaRig, reader: Any) -> Any:
    """The RA's web app, with ``reader``'s certificate its one card-number reader."""
    return create_app(rig.ra, WebConfig(
        secrets.token_bytes(32), secure_cookies=False, card_number_readers=frozenset({
            httpsig.decode_certificate(reader.cert.dump()).identity.hex()}))).test_client()


def test_only_the_named_certificate_may_look_up(rig: RaRig) -> None:
    idp = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    station = make_leaf("CN=station-5,O=人社厅,C=CN", make_ca("CN=Station CA"))
    rig.ra.add_signing_client(None, "idp", idp.cert.dump())
    rig.ra.add_signing_client(None, "station-5", station.cert.dump())
    card, cert = issued_card(rig)
    serial, issuer = card["sign_serial"], cert.issuer
    unconfigured = create_app(rig.ra, WebConfig(secrets.token_bytes(32), secure_cookies=False))
    assert lookup(unconfigured.test_client(), idp, serial, issuer).status_code == 403
    app = reader_app(rig, idp)
    refused = lookup(app, station, serial, issuer)  # an enrolled station: no card-number reader
    assert refused.status_code == 403 and "may not look card numbers up" in refused.json["detail"]
    token = rig.ra.add_api_client(None, "kiosk-1")
    bearer = app.get(PATH + serial, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 403
    answer = lookup(app, idp, serial, issuer)
    assert answer.status_code == 200 and answer.json == {"card_number": card["card_number"]}
    # the encryption certificate's serial, or one the RA never saw: no card number
    assert lookup(app, idp, card["enc_serial"], issuer).status_code == 404
    assert lookup(app, idp, "7f" + "00" * 15, issuer).status_code == 404
    assert lookup(app, idp, "not-a-serial", issuer).status_code == 400
    records = [s.record for s in rig.ra.audit.records() if s.record.action == "ra.card.lookup"]
    assert any(r.details.get("reason") == "not a card-number reader" for r in records), records
    assert any(r.actor == "client:idp" and r.object.lower() == serial.lower()
               and r.outcome == "success" for r in records)


def test_a_revoked_card_gives_no_card_number(rig: RaRig) -> None:
    idp = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    rig.ra.add_signing_client(None, "idp-2", idp.cert.dump())
    card, cert = issued_card(rig)
    app = reader_app(rig, idp)
    assert lookup(app, idp, card["sign_serial"], cert.issuer).status_code == 200
    revocation = rig.ra.submit_revocation(rig.actor("operator"),
                                          card_number=card["card_number"])
    rig.ra.approve(rig.actor("officer1"), revocation["request_id"], "lost")
    assert rig.ra.approve(rig.actor("officer2"), revocation["request_id"])["state"] == "done"
    assert lookup(app, idp, card["sign_serial"], cert.issuer).status_code == 404


def test_another_cas_certificate_with_a_cards_serial_gets_no_card_number(rig: RaRig) -> None:
    idp = make_leaf("CN=idp,O=人社厅,C=CN", make_ca("CN=Service CA"))
    rig.ra.add_signing_client(None, "idp-3", idp.cert.dump())
    app = reader_app(rig, idp)
    card, cert = issued_card(rig)
    # another CA, even one named like a CA of the hierarchy, issues a certificate that
    # carries the serial of the card's signing certificate: a different certificate
    for name in ("CN=Other CA", "CN=测试社保CA2,O=某省人力资源和社会保障厅,C=CN"):
        forged = make_leaf("CN=张三,C=CN", make_ca(name), serial=cert.serial_number).cert
        assert forged.serial_number == cert.serial_number and forged.issuer != cert.issuer
        answer = lookup(app, idp, card["sign_serial"], forged.issuer)
        assert answer.status_code == 404
        assert "not issued by this RA's CA" in answer.json["detail"]
        assert "card_number" not in answer.json and card["card_number"] not in answer.text
    # the issuer is part of the question: without it, or not a DER name, the RA refuses
    no_issuer = lookup_query(app, idp, card["sign_serial"], "")
    assert no_issuer.status_code == 400 and "issuer" in no_issuer.json["detail"]
    for bad in ("issuer=zz", "issuer=" + b"not a name".hex(), "issuer="):
        answer = lookup_query(app, idp, card["sign_serial"], bad)
        assert answer.status_code == 400 and "issuer" in answer.json["detail"], bad
    # the card's own certificate, issuer and serial: its number
    assert lookup(app, idp, card["sign_serial"], cert.issuer).status_code == 200
    refusals = [s.record for s in rig.ra.audit.records()
                if s.record.action == "ra.card.lookup" and s.record.actor == "client:idp-3"
                and s.record.outcome == "denied"]
    assert any("not issued by this RA's CA" in r.details.get("reason", "") for r in refusals)
