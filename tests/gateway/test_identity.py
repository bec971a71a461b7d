"""Issue 12 finding 2 (gateway side): who a caller is comes from its certificate's
business-system profile and its fingerprint registered for a system, never from the CN; only
cardholder certificates authenticate cardholders; envelopes only for encryption certificates."""

from __future__ import annotations

import pytest

from sscard.gateway.client import GatewayClient, GatewayClientError
from sscard.gateway.config import BUSINESS_SYSTEM_POLICY, CARDHOLDER_SIGN_POLICY
from tests.cms.pki import Issued, make_leaf
from tests.gateway.conftest import CLIENT_EKU, Rig, cardholder_encryption, policies

DOC = b"hr document"


def _as(rig: Rig, issued: Issued) -> GatewayClient:
    return GatewayClient(rig.url, key=issued.key, certificate=issued.cert)


def test_a_cardholder_certificate_named_like_a_system_cannot_act_as_it(rig: Rig) -> None:
    # the RA passed the CSR's subject through: a cardholder certificate with CN=employment
    holder = make_leaf("CN=employment,serialNumber=350102199001019999,C=CN", rig.pki.ca,
                       ssn="350102199001019999", extra=policies(CARDHOLDER_SIGN_POLICY))
    with pytest.raises(GatewayClientError) as exc:
        _as(rig, holder).sign(DOC, "hr-sign")
    assert exc.value.status == 401 and exc.value.code == "UNAUTHENTICATED"
    assert "business-system" in exc.value.message


def test_a_business_system_certificate_not_registered_is_refused_whatever_its_cn(
        rig: Rig) -> None:
    twin = make_leaf("CN=employment,O=就业登记系统,C=CN", rig.pki.ca, eku=CLIENT_EKU,
                     extra=policies(BUSINESS_SYSTEM_POLICY))
    with pytest.raises(GatewayClientError) as exc:
        _as(rig, twin).sign(DOC, "hr-sign")
    assert exc.value.status == 401 and "not registered" in exc.value.message


def test_a_system_without_the_business_system_policy_or_eku_is_refused(rig: Rig) -> None:
    # registered by fingerprint (a configuration slip) but not issued under the profile
    for who in ("employment-no-policy", "employment-no-eku"):
        with pytest.raises(GatewayClientError) as exc:
            _as(rig, rig.extra[who]).verify(b"x")
        assert exc.value.status == 401, who
        assert "business-system" in exc.value.message, who


def test_the_system_is_found_by_fingerprint_not_by_cn(rig: Rig) -> None:
    # registered for 'employment' though its CN says something else
    renamed = rig.extra["employment-renamed"]
    signed = _as(rig, renamed).sign(DOC, "hr-sign")
    assert rig.client().verify(signed)["valid"]
    assert rig.recorder.records[-1]["actor"] == "employment"


def test_a_ca_certificate_does_not_authenticate_as_a_cardholder(rig: Rig) -> None:
    gw = rig.client()
    for ca in (rig.pki.ca, rig.pki.root):
        challenge = gw.cardholder_challenge()
        answer = gw.cardholder_verify(challenge["challenge_id"],
                                      ca.key.sign(challenge["to_sign"]), ca.cert)
        assert answer["authenticated"] is False
        assert "NOT_A_CARDHOLDER" in [r["code"] for r in answer["reasons"]]


def test_a_system_certificate_does_not_authenticate_as_a_cardholder(rig: Rig) -> None:
    gw = rig.client()
    system = rig.systems["fund"]
    challenge = gw.cardholder_challenge()
    answer = gw.cardholder_verify(challenge["challenge_id"],
                                  system.key.sign(challenge["to_sign"]), system.cert)
    assert answer["authenticated"] is False
    assert "NOT_A_CARDHOLDER" in [r["code"] for r in answer["reasons"]]


@pytest.mark.parametrize("who", ["signing", "root", "issuing-ca", "cardholder-sign"])
def test_no_envelope_for_certificates_that_do_not_allow_encryption(rig: Rig, who: str) -> None:
    cert = {"signing": rig.hr_sign.cert, "root": rig.pki.root.cert,
            "issuing-ca": rig.pki.ca.cert, "cardholder-sign": rig.pki.signer.cert}[who]
    with pytest.raises(GatewayClientError) as exc:
        rig.client().encrypt(DOC, [cert])
    assert exc.value.status == 422 and exc.value.code == "RECIPIENT_NOT_VALID"


def test_envelopes_for_cardholder_encryption_and_configured_decryption_certificates(
        rig: Rig) -> None:
    gw = rig.client()
    holder = cardholder_encryption(rig.pki.ca)
    assert gw.encrypt(DOC, [holder.cert, rig.employment_enc.cert])
