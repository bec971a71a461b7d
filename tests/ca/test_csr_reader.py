"""``ca.csr_reader``: the one-pass reader of the common request may only be narrower than the
strict asn1crypto parse, never wider, and what it reads must be what asn1crypto reads.

Attacks first: mutated, truncated, extended and random requests (Hypothesis) are either left to
the strict parse (None) or read exactly as asn1crypto reads them; requests of another shape
(attributes, several attributes in one RDN, RSA, other string types, indefinite lengths, a
PEM block of another type) are left to the strict parse; ``check_csr`` still refuses every
malformed request it refused before and answers the same for the ones it reads.
"""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import csr as asn1csr
from asn1crypto import x509 as asn1x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.csr_reader import CsrParts, read_csr
from ca.errors import RequestRefused
from ca.issuance import check_csr
from ca.profile import load_profiles
from ca.request_encoding import subject_from_name
from sscard.crypto.algorithms import SignatureAlgorithm, signature_algorithm_from_asn1
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.errors import X509Error
from sscard.x509.names import parse_name
from sscard.x509.parse import load_csr
from sscard.x509.pem import der_to_pem

_KEYS = {alg: SoftwareKey.generate(alg) for alg in ("sm2", "ec-p256", "rsa2048")}


def _csr(subject: str = "CN=Business System 1,O=社会保障,C=CN", alg: str = "sm2",
         builder: CsrBuilder | None = None) -> bytes:
    csr = (builder or CsrBuilder()).subject(parse_name(subject)).sign(_KEYS[alg])
    return bytes(csr.dump())


def _same_as_strict(data: bytes, parts: CsrParts) -> None:
    """asn1crypto accepts the request and reads from it exactly what the reader read."""
    strict = load_csr(data)
    info = strict["certification_request_info"]
    assert parts.der == strict.dump()
    assert parts.spki == info["subject_pk_info"].dump()
    assert parts.subject == subject_from_name(info["subject"])
    assert not info["attributes"].native
    # the proof of possession is checked over these: they must be what asn1crypto signs
    assert parts.info == info.dump()
    assert parts.signature == strict["signature"].native
    assert parts.signature_algorithm is signature_algorithm_from_asn1(
        strict["signature_algorithm"])


_SUBJECTS = [
    "CN=Business System 1,O=社会保障,C=CN",
    "CN=张三,serialNumber=110101199003077777,OU=人社厅,L=济南,ST=山东,C=CN",
    r"CN=a\,b\\c,O=x",
    "CN=x",
]


@pytest.mark.parametrize("alg", ["sm2", "ec-p256"])
@pytest.mark.parametrize("subject", _SUBJECTS)
def test_the_common_request_is_read_as_asn1crypto_reads_it(alg: str, subject: str) -> None:
    der = _csr(subject, alg)
    for data in (der, der_to_pem(der, "CERTIFICATE REQUEST"),
                 der_to_pem(der, "NEW CERTIFICATE REQUEST")):
        parts = read_csr(data)
        assert parts is not None
        _same_as_strict(data, parts)


def test_requests_of_another_shape_are_left_to_the_strict_parse() -> None:
    with_extension = _csr(builder=CsrBuilder().add_extension(
        "key_usage", {"digital_signature"}, critical=True))
    multi_valued = asn1x509.Name.build({"common_name": "x", "organization_name": "y"},
                                       use_printable=False)
    rdn = multi_valued.chosen[0]
    joined = asn1x509.RDNSequence([asn1x509.RelativeDistinguishedName(
        [rdn[0], multi_valued.chosen[1][0]])])
    csr = CsrBuilder().subject(asn1x509.Name(name="", value=joined)).sign(_KEYS["sm2"])
    ia5 = asn1x509.Name.build({"email_address": "a@b.cn"})
    email = CsrBuilder().subject(ia5).sign(_KEYS["sm2"])
    der = _csr()
    others = {
        "extension request": with_extension,
        "two attributes in one RDN": bytes(csr.dump()),
        "an IA5String attribute": bytes(email.dump()),
        "RSA": _csr(alg="rsa2048"),
        "a certificate's PEM label": der_to_pem(der, "CERTIFICATE"),
        "trailing octets": der + b"\x00",
        "a long form length for a short value": b"\x30\x81" + bytes((len(der) - 2,)) + der[2:]
        if der[1] < 0x80 else b"\x30\x82\x00" + der[2:],
        "indefinite length": b"\x30\x80" + der[2:] + b"\x00\x00",
    }
    for what, data in others.items():
        assert read_csr(data) is None, what
    # the ones that are well formed are still issued for, through the strict parse
    profile = load_profiles()["business-system"]
    for data in (with_extension, bytes(csr.dump())):
        assert check_csr(data, profile).request_der == data


def _mutations(der: bytes) -> st.SearchStrategy[bytes]:
    index = st.integers(0, len(der) - 1)
    return st.one_of(
        st.tuples(index, st.integers(0, 255)).map(
            lambda m: der[:m[0]] + bytes((m[1],)) + der[m[0] + 1:]),
        st.tuples(index, st.integers(1, 8)).map(lambda m: der[:m[0]] + der[m[0] + m[1]:]),
        st.tuples(index, st.binary(min_size=1, max_size=4)).map(
            lambda m: der[:m[0]] + m[1] + der[m[0]:]),
        index.map(lambda i: der[:i]),
        st.tuples(index, index).map(lambda m: der[:m[0]] + der[m[1]:]),
    )


_VALID = [_csr(s, alg) for s in _SUBJECTS for alg in ("sm2", "ec-p256")]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_VALID).flatmap(_mutations))
def test_a_mutated_request_is_read_only_if_the_strict_parse_reads_it_alike(data: bytes) -> None:
    parts = read_csr(data)
    if parts is None:
        return
    try:
        load_csr(data)
    except X509Error as exc:
        pytest.fail(f"the reader read {data.hex()}, which the strict parse refuses: {exc}")
    _same_as_strict(data, parts)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_octets_are_never_read(data: bytes) -> None:
    parts = read_csr(b"\x30" + data)
    if parts is not None:
        _same_as_strict(b"\x30" + data, parts)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_VALID).flatmap(_mutations))
def test_check_csr_answers_alike_with_and_without_the_reader(data: bytes) -> None:
    """The same request gives the same approval or the same refusal, whether the reader or
    the strict parse read it (the strict parse alone: an already parsed request)."""
    profile = load_profiles()["business-system"]
    try:
        strict = load_csr(data)
    except X509Error:
        with pytest.raises(RequestRefused):
            check_csr(data, profile)
        return
    outcomes = []
    for request in (data, strict):
        try:
            approved = check_csr(request, profile)
            outcomes.append((approved.subject_info, approved.spki_der, approved.request_der))
        except RequestRefused as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def test_an_attested_key_must_be_the_requests() -> None:
    der = _csr()
    parts = read_csr(der)
    assert parts is not None
    profile = load_profiles()["business-system"]
    attested = hashlib.sha256(parts.spki).digest()
    assert check_csr(der, profile, attested_key=attested).spki_der == parts.spki
    with pytest.raises(RequestRefused, match="not the one whose possession"):
        check_csr(der, profile, attested_key=hashlib.sha256(b"another key").digest())


def _resigned(der: bytes, signature: bytes) -> bytes:
    """The request with another signature over the same CertificationRequestInfo."""
    csr = load_csr(der)
    return bytes(asn1csr.CertificationRequest({
        "certification_request_info": csr["certification_request_info"],
        "signature_algorithm": csr["signature_algorithm"],
        "signature": signature}).dump())


@pytest.mark.parametrize("alg", ["sm2", "ec-p256"])
def test_a_signature_by_another_key_is_no_proof_of_possession(alg: str) -> None:
    """Attack: a request for someone else's public key, signed with the attacker's own key;
    the reader reads it, and the proof of possession over its octets fails as strictly."""
    der = _csr(alg=alg)
    parts = read_csr(der)
    assert parts is not None
    forged = _resigned(der, SoftwareKey.generate(alg).sign(parts.info, parts.signature_algorithm))
    assert read_csr(forged) is not None
    profile = load_profiles()["business-system"]
    for request in (forged, load_csr(forged)):
        with pytest.raises(RequestRefused, match="no proof of possession"):
            check_csr(request, profile)


def test_an_sm2_signature_with_the_empty_id_proves_possession_on_the_read_path() -> None:
    """OpenSSL 3.0's ``req`` signs SM2 with an empty ID: accepted by both paths alike."""
    der = _csr(alg="sm2")
    parts = read_csr(der)
    assert parts is not None
    empty_id = _resigned(der, _KEYS["sm2"].sign(parts.info, SignatureAlgorithm.SM2_SM3,
                                                uid=b""))
    assert read_csr(empty_id) is not None
    profile = load_profiles()["business-system"]
    assert check_csr(empty_id, profile).spki_der == parts.spki
    assert check_csr(load_csr(empty_id), profile).spki_der == parts.spki
