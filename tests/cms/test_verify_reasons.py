"""The verifier's answer: who signed, and every reason a signature is not valid, with stable
codes (the issue's must-show list: changed document, wrong signer, revoked before and after the
time-stamp, expired certificate, unknown root)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms

from ca.tsa import TimeStampAuthority
from sscard.cms import (
    CmsBuildError,
    CmsParseError,
    Code,
    Flavour,
    TimeStamper,
    TrustConfig,
    Verifier,
    sign,
)
from tests.cms.pki import NOW, Pki, make_ca, make_crl, make_leaf, make_pki

DOC = "参保人员基本信息变更申请表".encode() * 10


def codes(report: object) -> set[str]:
    return {p.code.value for p in report.problems}  # type: ignore[attr-defined]


def stamper(tsa: TimeStampAuthority, at: datetime | None = None) -> TimeStamper:
    return TimeStamper(lambda req: tsa.respond(req, now=at))


def test_valid_signature_names_the_signer(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert report.valid and report.problems == ()
    assert report.signer is not None
    assert report.signer.common_name == "张三"
    assert report.signer.social_insurance_number == "350102199001011234"
    assert "张三" in report.signer.subject
    assert report.content == DOC
    assert report.signing_time is not None
    assert abs(report.signing_time - datetime.now(UTC)) < timedelta(minutes=1)


def test_changed_document_is_content_changed(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain, detached=True)
    verifier = Verifier(TrustConfig([sm2_pki.root.cert]))
    assert verifier.verify(der, DOC).valid
    report = verifier.verify(der, DOC[:-1] + b"X")
    assert not report.valid
    assert codes(report) == {"CONTENT_CHANGED"}
    assert report.signer is not None  # still says who signed the original


def test_changed_attached_content_is_content_changed(sm2_pki: Pki) -> None:
    der = bytearray(sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain))
    at = bytes(der).index(DOC[:12])
    der[at] ^= 0x01
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(bytes(der))
    assert codes(report) == {"CONTENT_CHANGED"}


def test_detached_without_content_says_so(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, detached=True)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert codes(report) == {"NO_CONTENT"}


def test_wrong_signer_expected_certificate(sm2_pki: Pki) -> None:
    other = make_leaf("CN=李四,serialNumber=350102199202022345,C=CN", sm2_pki.ca)
    der = sign(DOC, other.key, other.cert, chain=sm2_pki.chain)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(
        der, expected_signer=sm2_pki.signer.cert)
    assert codes(report) == {"WRONG_SIGNER"}
    assert report.signer is not None and report.signer.common_name == "李四"


def test_signature_by_another_key_is_bad_signature(sm2_pki: Pki) -> None:
    impostor = make_leaf("CN=冒名者,C=CN", sm2_pki.ca)
    # the impostor signs but names 张三's certificate
    der = sign(DOC, impostor.key, sm2_pki.signer.cert, chain=sm2_pki.chain, check_key=False)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert codes(report) == {"BAD_SIGNATURE"}


def test_missing_signer_certificate_is_unknown_signer(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert)
    info = cms.ContentInfo.load(der)
    info["content"]["certificates"] = []
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(info.dump())
    assert codes(report) == {"UNKNOWN_SIGNER"}
    assert report.signer is None


def test_unknown_root_is_untrusted_root(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain)
    stranger = make_ca("CN=Some Other Root,C=CN")
    report = Verifier(TrustConfig([stranger.cert])).verify(der)
    assert codes(report) == {"UNTRUSTED_ROOT"}
    assert report.signer is not None and report.signer.common_name == "张三"


def test_expired_certificate_is_expired(sm2_pki: Pki) -> None:
    old = make_leaf("CN=王五,C=CN", sm2_pki.ca, not_before=NOW - timedelta(days=400),
                    not_after=NOW - timedelta(days=1))
    der = sign(DOC, old.key, old.cert, chain=sm2_pki.chain)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert codes(report) == {"EXPIRED"}


def test_revoked_without_timestamp_is_revoked_with_time(sm2_pki: Pki) -> None:
    leaf = make_leaf("CN=赵六,C=CN", sm2_pki.ca)
    when = NOW - timedelta(hours=1)
    crls = [make_crl(sm2_pki.ca, [(leaf.cert, when)]), make_crl(sm2_pki.root)]
    der = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain)
    report = Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(der)
    assert codes(report) == {"REVOKED"}
    assert report.problems[0].at == when


def test_revoked_before_the_timestamp_is_revoked(sm2_pki: Pki,
                                                 sm2_tsa: TimeStampAuthority) -> None:
    leaf = make_leaf("CN=孙七,C=CN", sm2_pki.ca)
    stamp_time = NOW - timedelta(hours=2)
    revoked_at = NOW - timedelta(hours=3)
    crls = [make_crl(sm2_pki.ca, [(leaf.cert, revoked_at)]), make_crl(sm2_pki.root)]
    der = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa, stamp_time))
    report = Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(der)
    assert report.timestamp_time == stamp_time
    assert codes(report) == {"REVOKED"}
    assert report.problems[0].at == revoked_at
    assert "before the time-stamp" in report.problems[0].message


def test_revoked_after_the_timestamp_stays_valid_with_a_note(
        sm2_pki: Pki, sm2_tsa: TimeStampAuthority) -> None:
    leaf = make_leaf("CN=周八,C=CN", sm2_pki.ca)
    stamp_time = NOW - timedelta(hours=2)
    revoked_at = NOW - timedelta(hours=1)
    crls = [make_crl(sm2_pki.ca, [(leaf.cert, revoked_at)]), make_crl(sm2_pki.root)]
    der = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa, stamp_time))
    report = Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(der)
    assert report.valid, report.problems
    assert report.timestamp_time == stamp_time
    assert [n.code for n in report.notes] == [Code.REVOKED_AFTER_TIMESTAMP]
    assert report.notes[0].at == revoked_at
    # without the time-stamp the same revocation makes the signature invalid
    bare = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain)
    assert codes(Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(bare)) == {
        "REVOKED"}


def test_timestamp_lets_an_expired_certificate_vouch(sm2_pki: Pki,
                                                    sm2_tsa: TimeStampAuthority) -> None:
    # signed and stamped while valid; verified after expiry: the stamp's time decides
    leaf = make_leaf("CN=吴九,C=CN", sm2_pki.ca, not_before=NOW - timedelta(days=10),
                     not_after=NOW - timedelta(days=1))
    der = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa, NOW - timedelta(days=2)))
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert report.valid, report.problems
    stale = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain)
    assert codes(Verifier(TrustConfig([sm2_pki.root.cert])).verify(stale)) == {"EXPIRED"}


def test_tampered_timestamp_token_is_reported(sm2_pki: Pki, sm2_tsa: TimeStampAuthority) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa))
    info = cms.ContentInfo.load(der)
    si = info["content"]["signer_infos"][0]
    token = si["unsigned_attrs"][0]["values"][0]
    tst = token["content"]["encap_content_info"]["content"].parsed
    tst["serial_number"] = tst["serial_number"].native + 1
    token["content"]["encap_content_info"]["content"] = cms.ParsableOctetString(tst.dump())
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(
        cms.ContentInfo.load(info.dump()).dump())
    assert "TIMESTAMP_INVALID" in codes(report)
    assert report.timestamp_time is None


def test_timestamp_from_an_untrusted_tsa(sm2_pki: Pki, sm2_tsa: TimeStampAuthority) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa))
    other = make_pki("sm2")
    report = Verifier(TrustConfig([other.root.cert])).verify(der)
    assert {"TIMESTAMP_UNTRUSTED", "UNTRUSTED_ROOT"} <= codes(report)


def test_timestamp_refusal_is_a_build_error(sm2_pki: Pki, sm2_tsa: TimeStampAuthority) -> None:
    with pytest.raises(CmsBuildError, match="refused"):
        sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert,
             timestamper=TimeStamper(lambda req: sm2_tsa.respond(b"\x30\x00")))
    with pytest.raises(CmsBuildError, match="could not be reached"):
        sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert,
             timestamper=TimeStamper(lambda req: (_ for _ in ()).throw(OSError("down"))))


def test_gm_content_types_round_trip(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain,
               flavour=Flavour.GM)
    info = cms.ContentInfo.load(der)
    assert info["content_type"].dotted == "1.2.156.10197.6.1.4.2.2"
    assert info["content"]["encap_content_info"]["content_type"].dotted == \
        "1.2.156.10197.6.1.4.2.1"
    assert Verifier(TrustConfig([sm2_pki.root.cert])).verify(der).valid


@pytest.mark.parametrize("junk", [b"", b"\x30\x03\x02\x01\x01", b"not cms at all",
                                  b"-----BEGIN CMS-----\nAAAA\n-----END CMS-----\n"])
def test_malformed_input_is_a_parse_error(sm2_pki: Pki, junk: bytes) -> None:
    with pytest.raises(CmsParseError):
        Verifier(TrustConfig([sm2_pki.root.cert])).verify(junk)


def test_key_and_certificate_must_match(sm2_pki: Pki) -> None:
    other = make_leaf("CN=x,C=CN", sm2_pki.ca)
    with pytest.raises(CmsBuildError, match="does not match"):
        sign(DOC, other.key, sm2_pki.signer.cert)


def test_expired_now_but_revoked_before_the_timestamp(sm2_pki: Pki,
                                                      sm2_tsa: TimeStampAuthority) -> None:
    """Expiry since the time-stamp must not hide a revocation from before it."""
    leaf = make_leaf("CN=郑十,C=CN", sm2_pki.ca, not_before=NOW - timedelta(days=10),
                     not_after=NOW - timedelta(days=1))
    stamp_time = NOW - timedelta(days=2)
    crls = [make_crl(sm2_pki.ca, [(leaf.cert, NOW - timedelta(days=3))]),
            make_crl(sm2_pki.root)]
    der = sign(DOC, leaf.key, leaf.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa, stamp_time))
    report = Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(der)
    assert not report.valid
    assert codes(report) & {"REVOKED", "REVOCATION_UNKNOWN"}


def test_attached_signature_with_a_different_document_given(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain)
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der, DOC + b"?")
    assert codes(report) == {"CONTENT_CHANGED"}
    assert report.signer is not None and report.signer.common_name == "张三"


def test_timestamp_by_a_revoked_tsa_is_untrusted(sm2_pki: Pki,
                                                 sm2_tsa: TimeStampAuthority) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain,
               timestamper=stamper(sm2_tsa, NOW - timedelta(hours=1)))
    crls = [make_crl(sm2_pki.ca, [(sm2_tsa.certificate, NOW - timedelta(hours=2))]),
            make_crl(sm2_pki.root)]
    report = Verifier(TrustConfig([sm2_pki.root.cert], crls=crls)).verify(der)
    assert "TIMESTAMP_UNTRUSTED" in codes(report) and report.timestamp_time is None
    # revoked after the token was made: the token stands
    later = [make_crl(sm2_pki.ca, [(sm2_tsa.certificate, NOW - timedelta(minutes=30))]),
             make_crl(sm2_pki.root)]
    assert Verifier(TrustConfig([sm2_pki.root.cert], crls=later)).verify(der).valid
