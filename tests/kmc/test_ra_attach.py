"""The RA binds the encryption certificate to the key it escrowed with its OWN KMC caller (issue 11
item 1): no CA credential on the RA host. The permission is bound to the record: the RA's caller
may attach only to keys it escrowed, only a certificate of the escrowed public key, only once
(a retry of the same binding changes nothing), and a serial names one key only."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from keymgmt.errors import Conflict, KmcError, PermissionDenied
from keymgmt.service import KeyManagementCentre, Principal
from keymgmt.web import API_PREFIX, create_app
from sscard import httpsig
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import SM2PrivateKey
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.names import parse_name
from tests.cms.pki import make_ca, make_leaf
from tests.kmc.kmc_helpers import new_kmc

SSN = "11010519491231002X"


@pytest.fixture
def kmc(tmp_path: Path) -> Iterator[KeyManagementCentre]:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


class Issuer:
    """A CA key that certifies whatever public key it is given (the CA's part, here)."""

    def __init__(self) -> None:
        self.key = SoftwareKey.generate("sm2")
        self.name = parse_name("CN=测试社保CA,C=CN")

    def certify(self, spki: bytes, serial: int | None = None) -> bytes:
        now = dt.datetime.now(dt.UTC)
        return bytes(CertificateBuilder().subject(parse_name(f"CN=张三,serialNumber={SSN},C=CN"))
                     .issuer(self.name).public_key(PublicKey.from_spki(spki))
                     .serial_number(serial or secrets.randbits(64)).not_valid_before(now)
                     .not_valid_after(now + dt.timedelta(days=365)).sign(self.key).dump())


def _card() -> bytes:
    return SM2PrivateKey.generate().public_key().spki_der()


def _events(kmc: KeyManagementCentre, prefix: str) -> list[dict[str, object]]:
    auditor = kmc.authenticate(kmc.add_caller(f"aud-{secrets.token_hex(3)}", "auditor"))
    return kmc.events(auditor, prefix)


def _bound(kmc: KeyManagementCentre, key_id: str) -> object:
    auditor = kmc.authenticate(kmc.add_caller(f"aud-{secrets.token_hex(3)}", "auditor"))
    return next(k for k in kmc.find_keys(auditor, owner=SSN)
                if k["key_id"] == key_id)["certificate_serial"]


def _callers(kmc: KeyManagementCentre) -> tuple[Principal, Principal]:
    return (kmc.authenticate(kmc.add_caller("ra", "ra")),
            kmc.authenticate(kmc.add_caller("ra-other-province", "ra")))


def test_the_ra_binds_the_certificate_of_a_key_it_escrowed(kmc: KeyManagementCentre) -> None:
    ra, _ = _callers(kmc)
    escrow = kmc.escrow(ra, SSN, _card())
    cert = Issuer().certify(escrow.public_key_spki)
    serial = kmc.attach_certificate(ra, escrow.key_id, cert)
    assert _bound(kmc, escrow.key_id) == serial
    assert [e["actor"] for e in _events(kmc, "escrow.certificate")] == ["ra"]


def test_the_ra_may_not_bind_to_another_callers_key(kmc: KeyManagementCentre) -> None:
    ra, other = _callers(kmc)
    theirs = kmc.escrow(other, SSN, _card())
    cert = Issuer().certify(theirs.public_key_spki)  # even the right certificate
    with pytest.raises(PermissionDenied, match="only to keys it escrowed"):
        kmc.attach_certificate(ra, theirs.key_id, cert)
    assert _bound(kmc, theirs.key_id) is None
    refused = _events(kmc, "escrow.certificate")
    assert [(e["actor"], e["action"]) for e in refused] == [("ra", "escrow.certificate.refused")]
    # the CA's key, too, is another caller's
    ca = kmc.authenticate(kmc.add_caller("ca", "ca"))
    cas = kmc.escrow(ca, SSN, _card())
    with pytest.raises(PermissionDenied):
        kmc.attach_certificate(ra, cas.key_id, Issuer().certify(cas.public_key_spki))
    # and other roles have no such permission at all
    officer = kmc.authenticate(kmc.add_caller("o1", "officer"))
    mine = kmc.escrow(ra, SSN, _card())
    with pytest.raises(PermissionDenied, match="needs ca or ra"):
        kmc.attach_certificate(officer, mine.key_id, Issuer().certify(mine.public_key_spki))
    assert _bound(kmc, mine.key_id) is None


def test_a_certificate_of_another_key_is_refused(kmc: KeyManagementCentre) -> None:
    ra, _ = _callers(kmc)
    escrow = kmc.escrow(ra, SSN, _card())
    with pytest.raises(KmcError, match="not the escrowed key"):
        kmc.attach_certificate(ra, escrow.key_id, Issuer().certify(_card()))
    with pytest.raises(KmcError, match="certificate"):
        kmc.attach_certificate(ra, escrow.key_id, b"\x30\x03\x02\x01\x01")
    assert _bound(kmc, escrow.key_id) is None


def test_a_replayed_or_second_binding_changes_nothing(kmc: KeyManagementCentre) -> None:
    ra, _ = _callers(kmc)
    issuer = Issuer()
    escrow = kmc.escrow(ra, SSN, _card())
    cert = issuer.certify(escrow.public_key_spki)
    serial = kmc.attach_certificate(ra, escrow.key_id, cert)
    # the same call again (a retry after a lost answer): accepted, nothing recorded twice
    assert kmc.attach_certificate(ra, escrow.key_id, cert) == serial
    # another certificate for the same key: refused, the first stays
    with pytest.raises(Conflict, match="already has certificate"):
        kmc.attach_certificate(ra, escrow.key_id, issuer.certify(escrow.public_key_spki))
    # the certificate replayed against another of the RA's keys: not that key's certificate
    second = kmc.escrow(ra, SSN, _card())
    with pytest.raises(KmcError, match="not the escrowed key"):
        kmc.attach_certificate(ra, second.key_id, cert)
    # a certificate made to carry a serial already bound (to hijack recovery by serial)
    with pytest.raises(Conflict, match="already bound"):
        kmc.attach_certificate(ra, second.key_id,
                               issuer.certify(second.public_key_spki, int(str(serial), 16)))
    assert _bound(kmc, escrow.key_id) == serial and _bound(kmc, second.key_id) is None
    assert [e["action"] for e in _events(kmc, "escrow.certificate")
            if e["action"] == "escrow.certificate"] == ["escrow.certificate"]


def test_over_http_the_binding_is_closed_and_a_signed_attach_counts_once(
        kmc: KeyManagementCentre) -> None:
    service = make_leaf("CN=RA service,C=CN", make_ca("CN=Service CA"))
    kmc.add_service_caller("ra-service", "ra", service.cert.dump())
    other = kmc.authenticate(kmc.add_caller("ra-2", "ra"))
    app = create_app(kmc)
    first, second = app.test_client(), create_app(kmc).test_client()  # two workers
    issuer = Issuer()

    def signed(path: str, body: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        return raw, {**httpsig.sign_request(service.key, service.cert, "POST", path, "", raw),
                     "Content-Type": "application/json"}

    raw, headers = signed(API_PREFIX + "/escrow", {
        "owner": SSN, "recipient_public_key": base64.b64encode(_card()).decode()})
    escrowed = first.post(API_PREFIX + "/escrow", data=raw, headers=headers)
    assert escrowed.status_code == 201, escrowed.json
    key_id, spki = escrowed.json["key_id"], base64.b64decode(escrowed.json["public_key"])
    path = f"{API_PREFIX}/keys/{key_id}/certificate"
    raw, headers = signed(path, {"certificate": base64.b64encode(issuer.certify(spki)).decode()})
    assert first.post(path, data=raw, headers=headers).status_code == 200
    replay = second.post(path, data=raw, headers=headers)
    assert (replay.status_code, replay.json["code"]) == (401, "replayed_request")
    # another RA caller's key: 403 problem+json, and nothing bound
    theirs = kmc.escrow(other, SSN, _card())
    path = f"{API_PREFIX}/keys/{theirs.key_id}/certificate"
    raw, headers = signed(path, {"certificate": base64.b64encode(
        issuer.certify(theirs.public_key_spki)).decode()})
    refused = first.post(path, data=raw, headers=headers)
    assert refused.status_code == 403
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert "only to keys it escrowed" in refused.json["detail"]
    assert _bound(kmc, theirs.key_id) is None
