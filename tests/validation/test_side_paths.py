"""The certificates pyhanko-certvalidator validates on the side, for revocation (a delegated
OCSP responder, a CRL issuer), are held to the same name constraints and RFC 5280 profile
rules as the path itself: a responder the issuing CA's name constraints exclude, or one that
breaks the profile, cannot vouch for a certificate's status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import core, ocsp, x509

from ca.ocsp import respond
from ca.records import CertificateStatus, Status
from sscard.crypto.hashes import digest
from sscard.validation import RevocationMode, validate_path
from sscard.validation.result import ReasonCode, ValidationResult
from sscard.x509.builder import CrlBuilder
from sscard.x509.names import parse_name
from tests.validation.chain import NOW, Issued, make_ca, make_leaf, uri

ROOT = make_ca("CN=Side Root,C=CN")
CA = make_ca("C=CN,O=Good,CN=Side CA", ROOT, extra=[(
    "name_constraints",
    {"permitted_subtrees": [{"base": x509.GeneralName(
        name="directory_name", value=parse_name("C=CN,O=Good"))}]},
    True)])
LEAF = make_leaf("C=CN,O=Good,CN=Alice", CA, extra=[(
    "authority_information_access",
    [{"access_method": "ocsp", "access_location": uri("http://127.0.0.1:9/ocsp")}], False)])


def _responder(subject: str, key_usage: frozenset[str] = frozenset({"digital_signature"}),
               **options: Any) -> Issued:
    return make_leaf(subject, CA, key_usage=key_usage, eku=["ocsp_signing"],
                     extra=[("ocsp_no_check", core.Null(), False)], **options)


def _validate_with_answer_of(responder: Issued) -> ValidationResult:
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": digest("sha256", CA.cert.subject.dump()),
        "issuer_key_hash": digest("sha256", CA.cert.public_key["public_key"].contents[1:]),
        "serial_number": LEAF.cert.serial_number,
    }}]}}).dump()
    answer = respond(request, lambda serial: CertificateStatus(serial, Status.GOOD),
                     responder.key, responder.cert, CA.cert, NOW)
    return validate_path(LEAF.cert, trust_anchors=[ROOT.cert],
                         intermediates=[CA.cert, responder.cert],
                         ocsp_responses=[ocsp.OCSPResponse.load(answer)],
                         revocation=RevocationMode.LEAF, at=NOW + timedelta(seconds=1))


def test_a_responder_inside_the_cas_name_constraints_answers() -> None:
    result = _validate_with_answer_of(_responder("C=CN,O=Good,CN=Responder"))
    assert result.valid, result.reasons


@pytest.mark.parametrize("responder", [
    pytest.param(lambda: _responder("C=CN,O=Evil,CN=Responder"), id="outside-name-constraints"),
    pytest.param(lambda: _responder("C=CN,O=Good,CN=Responder",
                                    key_usage=frozenset({"digital_signature", "key_cert_sign"})),
                 id="keyCertSign-without-cA"),
])
def test_a_responder_the_path_rules_refuse_cannot_vouch(
        responder: Callable[[], Issued]) -> None:
    """The attack: a certificate the CA issued outside its own constraints (or one that is
    malformed) says GOOD about a leaf; without the checks its answer was taken."""
    result = _validate_with_answer_of(responder())
    assert not result.valid
    assert [r.code for r in result.reasons] == [ReasonCode.REVOCATION_UNKNOWN], result.reasons


def _validate_with_indirect_crl_from(subject: str) -> ValidationResult:
    """The leaf's CRL comes from a separate CRL issuer that CA certified (an indirect CRL)."""
    crl_issuer = make_leaf(subject, CA, key_usage=frozenset({"crl_sign"}))
    url = "http://127.0.0.1:9/indirect.crl"
    leaf = make_leaf("C=CN,O=Good,CN=Bob", CA, extra=[("crl_distribution_points", [{
        "distribution_point": {"full_name": [uri(url)]},
        "crl_issuer": [x509.GeneralName(name="directory_name",
                                        value=crl_issuer.cert.subject)]}], False)])
    indirect = (CrlBuilder().issuer(crl_issuer.cert.subject)
                .this_update(NOW - timedelta(hours=1)).next_update(NOW + timedelta(days=1))
                .crl_number(1).authority_key_identifier(crl_issuer.ski)
                .add_extension("issuing_distribution_point", {
                    "distribution_point": {"full_name": [uri(url)]}, "indirect_crl": True},
                    critical=True)
                .sign(crl_issuer.key))
    return validate_path(leaf.cert, trust_anchors=[ROOT.cert],
                         intermediates=[CA.cert, crl_issuer.cert], crls=[indirect],
                         revocation=RevocationMode.IF_DECLARED, at=NOW)


def test_an_indirect_crl_issuer_inside_the_cas_name_constraints_is_used() -> None:
    result = _validate_with_indirect_crl_from("C=CN,O=Good,CN=CRL Issuer")
    assert result.valid and result.revocation_checked, result.reasons


def test_an_indirect_crl_issuer_outside_the_cas_name_constraints_is_not() -> None:
    result = _validate_with_indirect_crl_from("C=CN,O=Evil,CN=CRL Issuer")
    assert not result.valid
    assert [r.code for r in result.reasons] == [ReasonCode.REVOCATION_UNKNOWN], result.reasons
    assert "permitted subtrees" in result.reasons[0].message
