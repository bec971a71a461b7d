"""Our own OCSP responder's answers (ca.ocsp) handed to validate_path: SM2 and ECDSA, a delegated
responder with id-pkix-ocsp-nocheck, good and revoked, and the LEAF revocation mode."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asn1crypto import core, ocsp

from ca.ocsp import respond
from ca.records import CertificateStatus, RevocationReason, Status
from sscard.crypto.hashes import digest
from sscard.validation import validate_path
from sscard.validation.result import ReasonCode
from sscard.validation.validator import RevocationMode
from tests.validation.chain import NOW, Issued, make_ca, make_leaf, uri

OCSP_URL = "http://127.0.0.1:9/ocsp"  # declared in the leaf; never fetched here


def _request(issuer: Issued, serial: int) -> bytes:
    return ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": digest("sha256", issuer.cert.subject.dump()),
        "issuer_key_hash": digest("sha256", issuer.cert.public_key["public_key"].contents[1:]),
        "serial_number": serial,
    }}]}}).dump()


@pytest.mark.parametrize("algorithm", ["sm2", "ec-p256"])
@pytest.mark.parametrize("revoked", [False, True])
def test_our_ocsp_answer_decides_the_leaf(algorithm: str, revoked: bool) -> None:
    root = make_ca("CN=Root,C=CN", algorithm=algorithm)
    ca = make_ca("CN=Issuing CA,C=CN", root, algorithm=algorithm)
    responder = make_leaf("CN=OCSP Responder,C=CN", ca, algorithm=algorithm,
                          key_usage=frozenset({"digital_signature"}), eku=["ocsp_signing"],
                          extra=[("ocsp_no_check", core.Null(), False)])
    leaf = make_leaf("CN=张三,C=CN", ca, algorithm=algorithm, extra=[
        ("authority_information_access",
         [{"access_method": "ocsp", "access_location": uri(OCSP_URL)}], False)])

    def lookup(serial: int) -> CertificateStatus:
        if revoked:
            return CertificateStatus(serial, Status.REVOKED, NOW - timedelta(minutes=5),
                                     RevocationReason.keyCompromise)
        return CertificateStatus(serial, Status.GOOD)

    answer = respond(_request(ca, leaf.cert.serial_number), lookup, responder.key,
                     responder.cert, ca.cert, NOW)
    result = validate_path(leaf.cert, trust_anchors=[root.cert],
                           intermediates=[ca.cert, responder.cert],
                           ocsp_responses=[ocsp.OCSPResponse.load(answer)],
                           revocation=RevocationMode.LEAF, at=NOW + timedelta(seconds=1))
    if revoked:
        assert not result.valid
        assert [r.code for r in result.reasons] == [ReasonCode.REVOKED]
    else:
        assert result.valid, result.reasons
    # REQUIRE asks for the issuing CA's status too, which this test does not supply
    strict = validate_path(leaf.cert, trust_anchors=[root.cert],
                           intermediates=[ca.cert, responder.cert],
                           ocsp_responses=[ocsp.OCSPResponse.load(answer)],
                           at=NOW + timedelta(seconds=1))
    assert not strict.valid


def test_a_live_validation_takes_an_answer_made_just_after_its_clock() -> None:
    """make demo failed once under load: the OCSP answer it fetched was produced a moment after
    the validation read its clock (thisUpdate "in the future"), and zero tolerance called it too
    recent. A live validation allows revocation data a short skew; certificates stay exact, and
    a validation at a given time allows nothing."""
    from datetime import UTC, datetime

    from sscard.validation.validator import LIVE_REVOCATION_SKEW

    root = make_ca("CN=Root,C=CN")
    ca = make_ca("CN=Issuing CA,C=CN", root)
    responder = make_leaf("CN=OCSP Responder,C=CN", ca, key_usage=frozenset({"digital_signature"}),
                          eku=["ocsp_signing"], extra=[("ocsp_no_check", core.Null(), False)])
    leaf = make_leaf("CN=张三,C=CN", ca, extra=[
        ("authority_information_access",
         [{"access_method": "ocsp", "access_location": uri(OCSP_URL)}], False)])
    now = datetime.now(UTC)

    def answer_made_at(moment: datetime) -> ocsp.OCSPResponse:
        return ocsp.OCSPResponse.load(respond(
            _request(ca, leaf.cert.serial_number), lambda s: CertificateStatus(s, Status.GOOD),
            responder.key, responder.cert, ca.cert, moment))

    def check(answer: ocsp.OCSPResponse, **kwargs: object) -> object:
        return validate_path(leaf.cert, trust_anchors=[root.cert],
                             intermediates=[ca.cert, responder.cert], ocsp_responses=[answer],
                             revocation=RevocationMode.LEAF, **kwargs)  # type: ignore[arg-type]

    soon = answer_made_at(now + timedelta(seconds=5))
    live = check(soon)
    assert live.valid, live.reasons  # type: ignore[attr-defined]
    pinned = check(soon, at=now)
    assert not pinned.valid  # type: ignore[attr-defined]
    beyond = check(answer_made_at(now + LIVE_REVOCATION_SKEW + timedelta(minutes=1)))
    assert not beyond.valid  # type: ignore[attr-defined]
