"""Issue 13 attacks on path validation, on SM2 chains: each test is a certificate or chain an
attacker (or a careless CA) can send, and the answer the validator must give."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core, keys, x509
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.validation import Budget, ReasonCode, validate_path
from sscard.validation.cli import verify
from sscard.x509.builder import CertificateBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from tests.validation.chain import NOW, Issued, make_ca, make_crl, make_leaf


@pytest.fixture(scope="module")
def root() -> Issued:
    return make_ca("CN=根CA,O=人社厅,C=CN")


@pytest.fixture(scope="module")
def ca(root: Issued) -> Issued:
    return make_ca("CN=签发CA,O=人社厅,C=CN", root)


def _with_spki(subject: str, issuer: Issued, spki: keys.PublicKeyInfo) -> x509.Certificate:
    """A leaf carrying ``spki`` whatever it is, signed by ``issuer``."""
    stand_in = make_leaf(subject, issuer)
    tbs = stand_in.cert["tbs_certificate"].copy()
    tbs["subject_public_key_info"] = spki
    builder_alg = stand_in.cert["signature_algorithm"]
    signature = issuer.key.sign(tbs.dump(), SignatureAlgorithm.SM2_SM3)
    return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": builder_alg,
                             "signature_value": signature})


def _rsa_spki(bits: int) -> keys.PublicKeyInfo:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return keys.PublicKeyInfo.load(der)


def _check(root: Issued, ca: Issued, leaf: x509.Certificate, **kwargs: Any) -> Any:
    return validate_path(leaf, trust_anchors=[root.cert], intermediates=[ca.cert], **kwargs)


def test_weak_rsa_leaf_key_is_refused_unless_legacy_allowed(root: Issued, ca: Issued) -> None:
    leaf = _with_spki("CN=弱钥,C=CN", ca, _rsa_spki(1024))
    refused = _check(root, ca, leaf)
    assert refused.codes == {ReasonCode.WEAK_ALGORITHM}, refused.reasons
    assert "1024-bit RSA" in refused.reasons[0].message
    assert _check(root, ca, leaf, allow_legacy_algorithms=True).valid


def test_unknown_key_algorithm_is_invalid_not_a_crash(root: Issued, ca: Issued) -> None:
    spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "1.2.3.4.5"},
                               "public_key": b"\x00" * 32})
    result = _check(root, ca, _with_spki("CN=怪钥,C=CN", ca, spki))
    assert not result.valid
    assert ReasonCode.INVALID in result.codes
    assert any("unknown public key algorithm 1.2.3.4.5" in r.message for r in result.reasons)


def test_critical_policies_with_unknown_qualifier_refused(root: Issued, ca: Issued) -> None:
    policies = [{"policy_identifier": "1.2.156.1.1",
                 "policy_qualifiers": [{"policy_qualifier_id": "1.2.3.4",
                                        "qualifier": core.UTF8String("?")}]}]
    leaf = make_leaf("CN=策略,C=CN", ca, extra=[("certificate_policies", policies, True)])
    result = _check(root, ca, leaf.cert)
    assert result.codes == {ReasonCode.INVALID}
    assert "unknown policy qualifier 1.2.3.4" in result.reasons[0].message
    known = make_leaf("CN=策略2,C=CN", ca, extra=[("certificate_policies", [
        {"policy_identifier": "1.2.156.1.1"}], True)])
    assert _check(root, ca, known.cert).valid


def test_expired_anchor_counts_in_constrained_mode_only() -> None:
    old_root = make_ca("CN=过期根,C=CN")
    cert = old_root.cert.copy()
    leaf = make_leaf("CN=叶,C=CN", old_root)
    later = NOW + timedelta(days=3651)  # the root expires at NOW + 3650 days, this leaf later
    leaf_long = make_leaf("CN=长叶,C=CN", old_root, not_after=NOW + timedelta(days=4000))
    constrained = validate_path(leaf_long.cert, trust_anchors=[cert], at=later)
    assert constrained.codes == {ReasonCode.EXPIRED}
    assert "trust anchor" in constrained.reasons[0].message
    bare = validate_path(leaf_long.cert, trust_anchors=[cert], at=later, trust_mode="anchor")
    assert bare.valid, bare.reasons
    assert validate_path(leaf.cert, trust_anchors=[cert]).valid


def test_anchor_name_constraints_enforced_in_constrained_mode() -> None:
    nc = {"permitted_subtrees": [{"base": x509.GeneralName(name="dns_name",
                                                            value="hrss.example.cn")}]}
    root = make_ca("CN=受限根,C=CN", extra=[("name_constraints", nc, True)])
    inside = make_leaf("CN=内,C=CN", root, dns_names=["a.hrss.example.cn"])
    outside = make_leaf("CN=外,C=CN", root, dns_names=["evil.example.com"])
    assert validate_path(inside.cert, trust_anchors=[root.cert]).valid
    refused = validate_path(outside.cert, trust_anchors=[root.cert])
    assert refused.codes == {ReasonCode.NAME_CONSTRAINTS}
    assert "evil.example.com" in refused.reasons[0].message
    assert validate_path(outside.cert, trust_anchors=[root.cert], trust_mode="anchor").valid


def test_ip_address_name_constraints(root: Issued) -> None:
    nc = {"permitted_subtrees": [{"base": x509.GeneralName(
        name="ip_address", value="10.0.0.0/8")}]}
    ip_ca = make_ca("CN=内网CA,C=CN", root, extra=[("name_constraints", nc, True)])

    def leaf_with_ip(address: str) -> x509.Certificate:
        san = [x509.GeneralName(name="ip_address", value=address)]
        return make_leaf(f"CN={address}", ip_ca,
                         extra=[("subject_alt_name", san, False)]).cert

    good = validate_path(leaf_with_ip("10.1.2.3"), trust_anchors=[root.cert],
                         intermediates=[ip_ca.cert], hostname="10.1.2.3")
    assert good.valid, good.reasons
    bad = validate_path(leaf_with_ip("192.168.1.1"), trust_anchors=[root.cert],
                        intermediates=[ip_ca.cert])
    assert bad.codes == {ReasonCode.NAME_CONSTRAINTS}
    assert "192.168.1.1" in bad.reasons[0].message


def test_wildcard_san_under_excluded_constraint(root: Issued) -> None:
    nc = {"excluded_subtrees": [{"base": x509.GeneralName(name="dns_name",
                                                           value="admin.hrss.example.cn")}]}
    ex_ca = make_ca("CN=排除CA,C=CN", root, extra=[("name_constraints", nc, True)])
    wildcard = make_leaf("CN=通配,C=CN", ex_ca, dns_names=["*.hrss.example.cn"])
    result = validate_path(wildcard.cert, trust_anchors=[root.cert], intermediates=[ex_ca.cert])
    assert result.codes == {ReasonCode.NAME_CONSTRAINTS}  # CVE-2025-61727


def test_crl_signed_by_a_trust_anchor_that_is_not_self_signed(root: Issued, ca: Issued) -> None:
    leaf = make_leaf("CN=被吊销,C=CN", ca)
    crl = make_crl(ca, revoked=[(leaf.cert, "key_compromise")])
    result = validate_path(leaf.cert, trust_anchors=[ca.cert], crls=[crl])
    assert result.codes == {ReasonCode.REVOKED}, result.reasons
    fine = make_leaf("CN=正常,C=CN", ca)
    assert validate_path(fine.cert, trust_anchors=[ca.cert], crls=[crl]).valid


def test_max_depth(root: Issued, ca: Issued) -> None:
    leaf = make_leaf("CN=深度,C=CN", ca)
    assert _check(root, ca, leaf.cert, max_depth=1).valid
    too_deep = _check(root, ca, leaf.cert, max_depth=0)
    assert too_deep.codes == {ReasonCode.UNTRUSTED_ROOT}


def test_path_building_budget_bounds_a_crafted_pile_of_cas(root: Issued) -> None:
    """24 CAs with one name: each is a candidate issuer of every other, and each candidate
    costs a signature check; the budget stops the search, with a reason."""
    key_holders = [make_ca("CN=同名CA,C=CN", root) for _ in range(3)]
    pile = []
    for issuer in key_holders:
        for _ in range(7):
            pile.append(_cross(issuer))
    leaf = make_leaf("CN=叶子,C=CN", key_holders[0])
    start = time.process_time()
    result = validate_path(leaf.cert, trust_anchors=[make_ca("CN=别的根,C=CN").cert],
                           intermediates=[*pile, *(k.cert for k in key_holders)],
                           budget=Budget(signature_checks=10))
    assert time.process_time() - start < 2
    assert result.codes == {ReasonCode.INVALID}
    assert "path building stopped after 10 signature checks" in result.reasons[0].message


def _cross(issuer: Issued) -> x509.Certificate:
    """A CA certificate named like ``issuer`` for a fresh key, signed by ``issuer``."""
    other = make_ca("CN=同名CA,C=CN")
    tbs = (CertificateBuilder().subject(parse_name("CN=同名CA,C=CN"))
           .issuer(issuer.cert.subject).public_key(other.key.public_key())
           .serial_number(other.cert.serial_number).not_valid_before(NOW - timedelta(days=1))
           .not_valid_after(NOW + timedelta(days=30))
           .add_extension("basic_constraints", {"ca": True}, True)
           .add_extension("key_usage", {"key_cert_sign"}, True)
           .add_extension("key_identifier", key_identifier(other.key.public_key()))
           .add_extension("authority_key_identifier", {"key_identifier": issuer.ski}))
    return tbs.sign(issuer.key)


def test_malformed_extension_inside_is_invalid_not_an_error(root: Issued, ca: Issued) -> None:
    leaf = make_leaf("CN=坏扩展,C=CN", ca, dns_names=["ok.example.cn"])
    der = bytearray(leaf.cert.dump())
    at = der.find(b"ok.example.cn")
    der[at - 1] = 0x7F  # the dNSName's length now runs past the extension
    broken = x509.Certificate.load(bytes(der))
    result = _check(root, ca, broken)
    assert not result.valid
    assert result.codes <= {ReasonCode.INVALID, ReasonCode.BAD_SIGNATURE}


def test_webpki_checks_eku_through_the_intermediates() -> None:
    root = make_ca("CN=Web Root,C=US", algorithm="ec-p256")
    code_ca = make_ca("CN=Code Signing CA,C=US", root, algorithm="ec-p256",
                      extra=[("extended_key_usage", ["code_signing"], False)])
    leaf = make_leaf("CN=www.example.com,C=US", code_ca, algorithm="ec-p256",
                     key_usage=frozenset({"digital_signature"}), eku=["server_auth"],
                     dns_names=["www.example.com"])
    server_auth = "1.3.6.1.5.5.7.3.1"
    args: dict[str, Any] = {"trust_anchors": [root.cert], "intermediates": [code_ca.cert],
                            "extended_key_usages": [server_auth],
                            "hostname": "www.example.com"}
    assert validate_path(leaf.cert, **args).valid  # RFC 5280 looks at the leaf's EKU only
    web = validate_path(leaf.cert, profile="webpki", **args)
    assert web.codes == {ReasonCode.INVALID}
    assert "restricts extendedKeyUsage" in web.reasons[0].message


def test_cli_trust_modes(tmp_path: Path) -> None:
    root = make_ca("CN=钉根,C=CN")
    leaf = make_leaf("CN=钉叶,C=CN", root)
    leaf_file, root_file = tmp_path / "leaf.der", tmp_path / "root.der"
    leaf_file.write_bytes(leaf.cert.dump())
    root_file.write_bytes(root.cert.dump())

    def verify_cli(*args: str) -> Any:
        return CliRunner().invoke(verify, list(args), catch_exceptions=False)

    assert verify_cli(str(leaf_file), "--trust", str(root_file)).exit_code == 0
    alone = verify_cli(str(leaf_file), "--trust", str(leaf_file))
    assert alone.exit_code == 1 and "trust mode 'leaf'" in alone.output
    pinned = verify_cli(str(leaf_file), "--trust", str(leaf_file), "--trust-mode", "leaf")
    assert pinned.exit_code == 0, pinned.output
    assert verify_cli(str(leaf_file), "--trust", str(root_file), "--max-depth", "0",
                      "--trust-mode", "anchor").exit_code == 0
    bad = verify_cli(str(leaf_file), "--trust", str(root_file), "--trust-mode", "nope")
    assert bad.exit_code == 2
