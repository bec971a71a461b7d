"""The fast CRL path (sscard.validation.crl_fast) answers only where pyhanko's general check
would give the same answer: each attack below on a CRL that looks plain must end as it does
without the fast path (not valid, or REVOKED), and the plain case must be answered from the
index. Each validation is run twice: the second one meets warm caches (the kept copies, the
index, the signatures found good)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from asn1crypto import crl, x509

from sscard.validation import RevocationMode, crl_fast, validate_path
from sscard.validation.memo import digest_of
from sscard.validation.result import ReasonCode, ValidationResult
from sscard.x509.builder import CrlBuilder
from sscard.x509.parse import load_certificate, load_crl
from tests.validation.chain import (
    NOW,
    Issued,
    issue_cert,
    make_ca,
    make_crl,
    make_leaf,
    uri,
)

ROOT = make_ca("CN=Fast Root,C=CN")
CA = make_ca("CN=Fast CA,C=CN", ROOT)
LEAF = make_leaf("CN=Fast Leaf,C=CN", CA)
OTHER = make_leaf("CN=Fast Other,C=CN", CA)


def _validate(crls: list[crl.CertificateList], *, leaf: Issued = LEAF,
              issuer: Issued = CA, **options: Any) -> ValidationResult:
    at = options.pop("at", NOW)
    results = [validate_path(
        load_certificate(leaf.cert.dump()), trust_anchors=[load_certificate(ROOT.cert.dump())],
        intermediates=[load_certificate(issuer.cert.dump())],
        crls=[load_crl(c.dump()) for c in crls], revocation=RevocationMode.LEAF,
        at=at, **options) for _ in range(2)]
    assert results[0].valid == results[1].valid
    assert [r.code for r in results[0].reasons] == [r.code for r in results[1].reasons]
    return results[1]


def _code(result: ValidationResult) -> ReasonCode:
    assert not result.valid
    return result.reasons[0].code


def _resigned(base: crl.CertificateList, key: Issued, change: Any) -> crl.CertificateList:
    """``base`` with ``change`` applied to its tbsCertList, signed again by ``key``."""
    tbs = crl.TbsCertList.load(base["tbs_cert_list"].dump())
    change(tbs)
    algorithm = key.key.default_signature_algorithm
    return crl.CertificateList({
        "tbs_cert_list": tbs,
        "signature_algorithm": base["signature_algorithm"],
        "signature": key.key.sign(tbs.dump(force=True), algorithm),
    })


def test_a_plain_crl_is_answered_from_its_index() -> None:
    revoking = make_crl(CA, [(LEAF.cert, "key_compromise")], number=11)
    assert _code(_validate([revoking])) is ReasonCode.REVOKED
    assert digest_of(bytes(load_crl(revoking.dump()).dump())) in crl_fast._ENTRIES
    assert _validate([revoking], leaf=OTHER).valid


def test_a_long_crl_finds_its_entry() -> None:
    builder = (CrlBuilder().issuer(CA.cert.subject).this_update(NOW - timedelta(hours=1))
               .next_update(NOW + timedelta(days=1)).crl_number(12)
               .authority_key_identifier(CA.ski))
    for serial in range(1, 3001):
        builder = builder.add_revoked(serial, NOW - timedelta(hours=2))
    builder = builder.add_revoked(LEAF.cert.serial_number, NOW - timedelta(hours=2),
                                  "superseded")
    long_crl = builder.sign(CA.key)
    assert _code(_validate([long_crl])) is ReasonCode.REVOKED
    assert _validate([long_crl], leaf=OTHER).valid


def test_a_forged_crl_under_the_issuers_name_is_not_believed() -> None:
    impostor = Issued(CA.cert, make_ca("CN=Fast CA,C=CN", ROOT).key)  # same name, other key
    forged = make_crl(impostor, number=13)
    assert _code(_validate([forged])) is ReasonCode.REVOCATION_UNKNOWN
    # and beside the genuine one that revokes, the forged all-clear does not win
    genuine = make_crl(CA, [(LEAF.cert, "key_compromise")], number=13)
    assert _code(_validate([forged, genuine])) is ReasonCode.REVOKED
    assert _code(_validate([genuine, forged])) is ReasonCode.REVOKED


def test_a_crl_out_of_its_time_is_not_used() -> None:
    stale = make_crl(CA, number=14, this_update=NOW - timedelta(days=3),
                     next_update=NOW - timedelta(days=1))
    assert not _validate([stale]).valid
    early = make_crl(CA, number=15, this_update=NOW + timedelta(hours=2))
    assert not _validate([early]).valid


def test_a_revocation_after_the_validation_time_does_not_count() -> None:
    revoking = make_crl(CA, [(LEAF.cert, "key_compromise")], number=16)  # revoked NOW-30min
    assert _validate([revoking], at=NOW - timedelta(hours=1)).valid
    assert _code(_validate([revoking], at=NOW)) is ReasonCode.REVOKED


def test_an_issuer_that_may_not_sign_crls_is_not_believed() -> None:
    key = make_ca("CN=Throwaway,C=CN").key
    no_crl_sign = Issued(issue_cert(
        "CN=Fast CA No CRL Sign,C=CN", key, ROOT,
        [("basic_constraints", {"ca": True}, True), ("key_usage", {"key_cert_sign"}, True)],
        NOW - timedelta(days=1), NOW + timedelta(days=30)), key)
    leaf = make_leaf("CN=Fast Leaf Under No CRL Sign,C=CN", no_crl_sign)
    assert not _validate([make_crl(no_crl_sign, number=17)], leaf=leaf,
                         issuer=no_crl_sign).valid


def test_a_crl_scoped_away_from_the_leaf_is_not_used() -> None:
    ca_only = (CrlBuilder().issuer(CA.cert.subject).this_update(NOW - timedelta(hours=1))
               .next_update(NOW + timedelta(days=1)).crl_number(18)
               .authority_key_identifier(CA.ski)
               .add_extension("issuing_distribution_point",
                              {"only_contains_ca_certs": True}, critical=True)
               .sign(CA.key))
    assert not _validate([ca_only]).valid
    elsewhere = (CrlBuilder().issuer(CA.cert.subject).this_update(NOW - timedelta(hours=1))
                 .next_update(NOW + timedelta(days=1)).crl_number(19)
                 .authority_key_identifier(CA.ski)
                 .add_extension("issuing_distribution_point", {"distribution_point": {
                     "full_name": [uri("http://crl.example/other.crl")]}}, critical=True)
                 .sign(CA.key))
    with_dp = make_leaf("CN=Fast Leaf With DP,C=CN", CA, extra=[(
        "crl_distribution_points",
        [{"distribution_point": {"full_name": [uri("http://crl.example/fast.crl")]}}],
        False)])
    assert not _validate([elsewhere], leaf=with_dp).valid
    # the same scope naming the leaf's own distribution point is used
    matching = (CrlBuilder().issuer(CA.cert.subject).this_update(NOW - timedelta(hours=1))
                .next_update(NOW + timedelta(days=1)).crl_number(20)
                .authority_key_identifier(CA.ski)
                .add_revoked(with_dp.cert.serial_number, NOW - timedelta(hours=2))
                .add_extension("issuing_distribution_point", {"distribution_point": {
                    "full_name": [uri("http://crl.example/fast.crl")]}}, critical=True)
                .sign(CA.key))
    assert _code(_validate([matching], leaf=with_dp)) is ReasonCode.REVOKED


def test_an_unknown_critical_crl_extension_makes_the_crl_unusable() -> None:
    def add_unknown(tbs: crl.TbsCertList) -> None:
        tbs["crl_extensions"].append(crl.TBSCertListExtension({
            "extn_id": "1.2.3.4.5.6.7", "critical": True, "extn_value": b"\x05\x00"}))

    odd = _resigned(make_crl(CA, number=21), CA, add_unknown)
    assert not _validate([odd]).valid


def test_an_entry_with_an_unknown_critical_extension_is_not_read_as_all_clear() -> None:
    def mark_entry(tbs: crl.TbsCertList) -> None:
        entry = tbs["revoked_certificates"][0]
        entry["crl_entry_extensions"] = [crl.CRLEntryExtension({
            "extn_id": "1.2.3.4.5.6.8", "critical": True, "extn_value": b"\x05\x00"})]

    odd = _resigned(make_crl(CA, [(LEAF.cert, None)], number=22), CA, mark_entry)
    # neither all clear nor revoked: the entry cannot be read
    assert _code(_validate([odd])) is ReasonCode.REVOCATION_UNKNOWN
    assert _validate([odd], leaf=OTHER).valid  # the unknown extension is not on its entry


def test_an_entry_naming_a_certificate_issuer_is_read_as_pyhanko_reads_it() -> None:
    def name_issuer(tbs: crl.TbsCertList) -> None:
        entry = tbs["revoked_certificates"][0]
        entry["crl_entry_extensions"] = [crl.CRLEntryExtension({
            "extn_id": "certificate_issuer", "critical": True,
            "extn_value": [x509.GeneralName(name="directory_name", value=CA.cert.subject)]})]

    named = _resigned(make_crl(CA, [(LEAF.cert, "key_compromise")], number=23), CA,
                      name_issuer)
    assert _code(_validate([named])) is ReasonCode.REVOKED


def test_a_delta_crl_is_still_read() -> None:
    base = make_crl(CA, number=24, freshest_url="http://crl.example/delta.crl")
    delta = make_crl(CA, [(LEAF.cert, "key_compromise")], number=25, delta_of=24)
    assert _code(_validate([base, delta])) is ReasonCode.REVOKED


def test_an_older_crl_does_not_hide_a_newer_ones_revocation() -> None:
    older = make_crl(CA, number=26)
    newer = make_crl(CA, [(LEAF.cert, "key_compromise")], number=27)
    assert _code(_validate([older, newer])) is ReasonCode.REVOKED
