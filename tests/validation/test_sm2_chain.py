"""SM2 root -> issuing CA -> leaf chains, with CRLs and delta CRLs, through validate_path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import crl, x509

from sscard.crypto import oids
from sscard.validation import (
    BadSignatureError,
    Purpose,
    ReasonCode,
    RevocationMode,
    RevokedError,
    ValidationInputError,
    ValidationResult,
    validate_path,
)
from tests.validation.chain import NOW, Issued, make_ca, make_crl, make_leaf, tampered, uri


class Sm2Pki:
    def __init__(self) -> None:
        self.root = make_ca("CN=省人社厅根CA,O=人力资源和社会保障厅,C=CN")
        self.ca = make_ca("CN=社保卡签发CA,O=人力资源和社会保障厅,C=CN", self.root, path_len=0)
        self.leaf = make_leaf(
            "CN=张三,serialNumber=350102199001011234,C=CN",
            self.ca,
            key_usage=frozenset({"digital_signature"}),
            eku=["server_auth"],
            dns_names=["gateway.hrss.example.cn", "*.api.hrss.example.cn"],
        )
        self.lost = make_leaf(
            "CN=李四,serialNumber=350102198502022345,C=CN",
            self.ca,
            key_usage=frozenset({"non_repudiation"}),
        )
        self.root_crl = make_crl(self.root)
        self.ca_crl = make_crl(self.ca, revoked=[(self.lost.cert, "key_compromise")])


@pytest.fixture(scope="module")
def pki() -> Sm2Pki:
    return Sm2Pki()


def check(pki: Sm2Pki, leaf: x509.Certificate, **kwargs: Any) -> ValidationResult:
    args: dict[str, Any] = {
        "trust_anchors": [pki.root.cert],
        "intermediates": [pki.ca.cert],
        "crls": [pki.root_crl, pki.ca_crl],
    }
    args.update(kwargs)
    return validate_path(leaf, **args)


def test_chain_is_really_sm2(pki: Sm2Pki) -> None:
    for issued in (pki.root, pki.ca, pki.leaf):
        assert issued.cert["signature_algorithm"]["algorithm"].dotted == oids.SM2_WITH_SM3
    assert pki.ca_crl["signature_algorithm"]["algorithm"].dotted == oids.SM2_WITH_SM3


def test_valid_sm2_chain(pki: Sm2Pki) -> None:
    result = check(pki, pki.leaf.cert)
    assert result.valid, result.reasons
    assert result.revocation_checked
    assert [c.dump() for c in result.path] == [
        pki.root.cert.dump(),
        pki.ca.cert.dump(),
        pki.leaf.cert.dump(),
    ]
    assert result.user_constrained_policies == frozenset()  # no policies asserted
    result.raise_for_status()  # no error for a valid result


def test_revoked_sm2_leaf(pki: Sm2Pki) -> None:
    result = check(pki, pki.lost.cert)
    assert not result.valid
    (reason,) = result.reasons
    assert reason.code is ReasonCode.REVOKED
    assert reason.revocation_reason == "keyCompromise"
    assert reason.revocation_time == NOW - timedelta(minutes=30)
    with pytest.raises(RevokedError) as excinfo:
        result.raise_for_status()
    assert excinfo.value.result is result


def test_tampered_leaf_signature(pki: Sm2Pki) -> None:
    result = check(pki, tampered(pki.leaf.cert))
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.BAD_SIGNATURE
    assert "end-entity certificate" in result.reasons[0].message
    with pytest.raises(BadSignatureError):
        result.raise_for_status()


def test_tampered_intermediate_signature(pki: Sm2Pki) -> None:
    result = check(pki, pki.leaf.cert, intermediates=[tampered(pki.ca.cert)])
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.BAD_SIGNATURE


def test_leaf_signed_by_another_sm2_key_fails(pki: Sm2Pki) -> None:
    # Same issuer name and key identifier, different SM2 key: a forged certificate.
    impostor_ca = Issued(pki.ca.cert, make_ca("CN=impostor").key)
    forged = make_leaf("CN=王五,C=CN", impostor_ca)
    result = check(pki, forged.cert)
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.BAD_SIGNATURE


def test_tampered_crl_signature_leaves_status_unknown(pki: Sm2Pki) -> None:
    der = bytearray(pki.ca_crl.dump())
    der[-5] ^= 0x01
    bad_crl = crl.CertificateList.load(bytes(der))
    result = check(pki, pki.lost.cert, crls=[pki.root_crl, bad_crl])
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.REVOCATION_UNKNOWN
    result = check(pki, pki.leaf.cert, crls=[pki.root_crl, bad_crl])
    assert result.reasons[0].code is ReasonCode.REVOCATION_UNKNOWN


def test_missing_ca_crl_required(pki: Sm2Pki) -> None:
    result = check(pki, pki.leaf.cert, crls=[pki.root_crl])
    assert result.codes == {ReasonCode.REVOCATION_UNKNOWN}


def test_no_revocation_sources_means_not_checked(pki: Sm2Pki) -> None:
    result = check(pki, pki.lost.cert, crls=[])
    assert result.valid
    assert not result.revocation_checked
    forced = check(pki, pki.lost.cert, crls=[], revocation=RevocationMode.REQUIRE)
    assert forced.codes == {ReasonCode.REVOCATION_UNKNOWN}


def test_stale_crl(pki: Sm2Pki) -> None:
    old = make_crl(
        pki.ca, this_update=NOW - timedelta(days=20), next_update=NOW - timedelta(days=10)
    )
    result = check(pki, pki.leaf.cert, crls=[pki.root_crl, old])
    assert result.codes == {ReasonCode.REVOCATION_UNKNOWN}


def test_delta_crl_revokes(pki: Sm2Pki) -> None:
    base = make_crl(pki.ca, number=10, freshest_url="http://crl.hrss.example.cn/delta.crl")
    assert check(pki, pki.leaf.cert, crls=[pki.root_crl, base]).codes == {
        ReasonCode.REVOCATION_UNKNOWN  # the base CRL announces a delta that is missing
    }
    quiet_delta = make_crl(pki.ca, number=11, delta_of=10)
    assert check(pki, pki.leaf.cert, crls=[pki.root_crl, base, quiet_delta]).valid
    delta = make_crl(pki.ca, revoked=[(pki.leaf.cert, "superseded")], number=11, delta_of=10)
    result = check(pki, pki.leaf.cert, crls=[pki.root_crl, base, delta])
    assert not result.valid
    assert result.reasons[0].code is ReasonCode.REVOKED
    assert result.reasons[0].revocation_reason == "superseded"


def test_expired_and_not_yet_valid(pki: Sm2Pki) -> None:
    late = check(pki, pki.leaf.cert, at=NOW + timedelta(days=400), revocation=RevocationMode.NONE)
    assert late.codes == {ReasonCode.EXPIRED}
    early = check(pki, pki.leaf.cert, at=NOW - timedelta(days=2), revocation=RevocationMode.NONE)
    assert early.codes == {ReasonCode.NOT_YET_VALID}


def test_untrusted_root(pki: Sm2Pki) -> None:
    other_root = make_ca("CN=其他根CA,C=CN")
    result = check(pki, pki.leaf.cert, trust_anchors=[other_root.cert])
    assert result.codes == {ReasonCode.UNTRUSTED_ROOT}
    assert [c.dump() for c in result.path] == [pki.leaf.cert.dump()]


def test_path_length_constraint(pki: Sm2Pki) -> None:
    sub = make_ca("CN=下级CA,C=CN", pki.ca)  # the issuing CA has pathLen 0
    leaf = make_leaf("CN=赵六,C=CN", sub)
    result = check(pki, leaf.cert, intermediates=[pki.ca.cert, sub.cert], crls=[])
    assert result.codes == {ReasonCode.PATH_LENGTH}


def test_leaf_cannot_act_as_ca(pki: Sm2Pki) -> None:
    under_leaf = make_leaf("CN=冒充,C=CN", pki.lost)
    result = check(pki, under_leaf.cert, intermediates=[pki.ca.cert, pki.lost.cert], crls=[])
    assert not result.valid
    assert result.reasons[0].code in {ReasonCode.NOT_A_CA, ReasonCode.KEY_USAGE}


def test_name_constraints(pki: Sm2Pki) -> None:
    constrained = make_ca(
        "CN=受限CA,O=人力资源和社会保障厅,C=CN",
        pki.root,
        extra=[
            (
                "name_constraints",
                {
                    "permitted_subtrees": [
                        {"base": x509.GeneralName(name="dns_name", value="hrss.example.cn")}
                    ]
                },
                True,
            )
        ],
    )
    inside = make_leaf("CN=内,C=CN", constrained, dns_names=["svc.hrss.example.cn"])
    outside = make_leaf("CN=外,C=CN", constrained, dns_names=["evil.example.com"])
    common = {"intermediates": [constrained.cert], "crls": []}
    assert check(pki, inside.cert, **common).valid
    assert check(pki, outside.cert, **common).codes == {ReasonCode.NAME_CONSTRAINTS}


def test_policies(pki: Sm2Pki) -> None:
    policy = "1.2.156.112562.1.1"
    ca = make_ca(
        "CN=策略CA,C=CN",
        pki.root,
        extra=[("certificate_policies", [{"policy_identifier": policy}], False)],
    )
    leaf = make_leaf(
        "CN=策略,C=CN",
        ca,
        extra=[("certificate_policies", [{"policy_identifier": policy}], False)],
    )
    common = {"intermediates": [ca.cert], "crls": []}
    result = check(pki, leaf.cert, **common, policies=[policy], explicit_policy=True)
    assert result.valid
    assert result.user_constrained_policies == {policy}
    other = check(pki, leaf.cert, **common, policies=["1.2.156.112562.1.2"], explicit_policy=True)
    assert other.codes == {ReasonCode.POLICY}


def test_purpose_and_hostname(pki: Sm2Pki) -> None:
    assert check(pki, pki.leaf.cert, purpose=Purpose.SERVER).valid
    assert check(pki, pki.leaf.cert, purpose="sign").valid
    client = check(pki, pki.leaf.cert, purpose="client")
    assert client.codes == {ReasonCode.WRONG_PURPOSE}
    assert "does not include 1.3.6.1.5.5.7.3.2" in client.reasons[0].message
    # the lost card's key is for non-repudiation only; the path's own failure comes first
    both = check(pki, pki.lost.cert, purpose="server")
    assert [r.code for r in both.reasons] == [ReasonCode.REVOKED, ReasonCode.WRONG_PURPOSE]

    assert check(pki, pki.leaf.cert, hostname="gateway.hrss.example.cn").valid
    assert check(pki, pki.leaf.cert, hostname="GATEWAY.hrss.example.cn.").valid
    assert check(pki, pki.leaf.cert, hostname="a.api.hrss.example.cn").valid
    for wrong in ("a.b.api.hrss.example.cn", "api.hrss.example.cn", "hrss.example.cn"):
        result = check(pki, pki.leaf.cert, hostname=wrong)
        assert result.codes == {ReasonCode.HOSTNAME_MISMATCH}, wrong
    assert check(pki, pki.leaf.cert, hostname="10.0.0.1").codes == {ReasonCode.HOSTNAME_MISMATCH}


def test_ecdsa_chain_is_delegated(pki: Sm2Pki) -> None:
    root = make_ca("CN=EC Root,C=CN", algorithm="ec-p256")
    ca = make_ca("CN=EC CA,C=CN", root, algorithm="ec-p256")
    leaf = make_leaf("CN=EC Leaf,C=CN", ca, algorithm="ec-p256")
    ok = validate_path(leaf.cert, trust_anchors=[root.cert], intermediates=[ca.cert])
    assert ok.valid, ok.reasons
    bad = validate_path(tampered(leaf.cert), trust_anchors=[root.cert], intermediates=[ca.cert])
    assert bad.codes == {ReasonCode.BAD_SIGNATURE}


def test_mixed_chain_sm2_root_over_ecdsa_ca(pki: Sm2Pki) -> None:
    ca = make_ca("CN=EC under SM2,C=CN", pki.root, algorithm="ec-p256")
    leaf = make_leaf("CN=SM2 under EC,C=CN", ca, algorithm="sm2")
    result = check(pki, leaf.cert, intermediates=[ca.cert], crls=[])
    assert result.valid, result.reasons


def test_sm2_signature_algorithm_on_a_non_sm2_key_is_bad_signature(pki: Sm2Pki) -> None:
    ec_ca = make_ca("CN=EC CA 2,C=CN", pki.root, algorithm="ec-p256")
    leaf = make_leaf("CN=confused,C=CN", ec_ca, algorithm="sm2")
    # Relabel the ECDSA signature as SM2-with-SM3, in both places.
    relabelled = leaf.cert.copy()
    relabelled["signature_algorithm"] = {"algorithm": oids.SM2_WITH_SM3}
    result = check(pki, relabelled, intermediates=[ec_ca.cert], crls=[])
    assert result.codes == {ReasonCode.BAD_SIGNATURE}


def test_caller_objects_are_not_changed(pki: Sm2Pki) -> None:
    before = [c.dump() for c in (pki.root.cert, pki.ca.cert, pki.leaf.cert)]
    check(pki, pki.leaf.cert)
    assert [c.dump() for c in (pki.root.cert, pki.ca.cert, pki.leaf.cert)] == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trust_anchors": []}, "at least one trust anchor"),
        ({"trust_anchors": [b"not a cert"]}, "trust anchor must be an asn1crypto Certificate"),
        ({"crls": [b"x"]}, "each CRL must be an asn1crypto CertificateList"),
        ({"policies": ["anyPolicy"]}, "not a policy OID"),
        ({"policies": []}, "initial policy set is empty"),
        ({"purpose": "teleport"}, "unknown purpose 'teleport'"),
        ({"hostname": "  "}, "empty host name"),
    ],
)
def test_unusable_arguments(pki: Sm2Pki, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationInputError, match=message):
        check(pki, pki.leaf.cert, **kwargs)


def test_naive_time_refused(pki: Sm2Pki) -> None:
    with pytest.raises(ValidationInputError, match="time zone"):
        check(pki, pki.leaf.cert, at=NOW.replace(tzinfo=None))


def test_self_signed_leaf() -> None:
    lone = make_ca("CN=自签名,C=CN")
    other = make_ca("CN=别的根,C=CN")
    untrusted = validate_path(lone.cert, trust_anchors=[other.cert])
    assert untrusted.codes == {ReasonCode.UNTRUSTED_ROOT}
    assert "self-signed" in untrusted.reasons[0].message
    # a trust anchor is trusted to issue, not to be the end entity: directly trusting a
    # certificate is the 'leaf' trust mode's business
    as_anchor = validate_path(lone.cert, trust_anchors=[lone.cert])
    assert as_anchor.codes == {ReasonCode.UNTRUSTED_ROOT}
    assert "trust mode 'leaf'" in as_anchor.reasons[0].message
    pinned = validate_path(lone.cert, trust_anchors=[lone.cert], trust_mode="leaf")
    assert pinned.valid, pinned.reasons
    assert validate_path(lone.cert, trust_anchors=[other.cert], trust_mode="leaf").codes == {
        ReasonCode.UNTRUSTED_ROOT}


def test_ip_address_host(pki: Sm2Pki) -> None:
    san = [
        x509.GeneralName(name="ip_address", value="10.1.2.3"),
        x509.GeneralName(name="dns_name", value="svc.hrss.example.cn"),
    ]
    leaf = make_leaf("CN=ip,C=CN", pki.ca, extra=[("subject_alt_name", san, False)])
    assert check(pki, leaf.cert, hostname="10.1.2.3").valid
    wrong = check(pki, leaf.cert, hostname="10.1.2.4")
    assert wrong.codes == {ReasonCode.HOSTNAME_MISMATCH}
    assert "IP address" in wrong.reasons[0].message and "10.1.2.3" in wrong.reasons[0].message
    assert check(pki, leaf.cert, hostname="svc.hrss.example.cn").valid


def test_revocation_if_declared(pki: Sm2Pki) -> None:
    cdp = [
        (
            "crl_distribution_points",
            [{"distribution_point": {"full_name": [uri("http://crl.hrss.example.cn/ca.crl")]}}],
            False,
        )
    ]
    declares = make_leaf("CN=有CRL分发点,C=CN", pki.ca, extra=cdp)
    quiet = make_leaf("CN=无分发点,C=CN", pki.ca)
    mode = RevocationMode.IF_DECLARED
    # No CRL at hand: a certificate that names one cannot be cleared, one that does not can.
    assert check(pki, declares.cert, crls=[], revocation=mode).codes == {
        ReasonCode.REVOCATION_UNKNOWN
    }
    assert check(pki, quiet.cert, crls=[], revocation=mode).valid
    assert check(pki, declares.cert, revocation=mode).valid


def test_signed_certificate_with_unparsable_extension_is_invalid_not_a_crash(
    pki: Sm2Pki,
) -> None:
    # A CA signs a certificate whose keyUsage holds an OCTET STRING where a BIT STRING belongs.
    good_tbs = pki.leaf.cert["tbs_certificate"].dump()
    ku = pki.leaf.cert.key_usage_value.dump()
    assert good_tbs.count(ku) == 1
    bad_tbs = good_tbs.replace(ku, b"\x04" + ku[1:])
    cert = x509.Certificate(
        {
            "tbs_certificate": x509.TbsCertificate.load(bad_tbs),
            "signature_algorithm": pki.leaf.cert["signature_algorithm"],
            "signature_value": pki.ca.key.sign(bad_tbs),
        }
    )
    cert = x509.Certificate.load(cert.dump())
    for purpose in (None, "server"):
        result = check(pki, cert, purpose=purpose)
        assert not result.valid
        assert result.reasons[0].code is ReasonCode.INVALID
        assert "KeyUsage" in result.reasons[0].message
        assert "\n" not in result.reasons[0].message
