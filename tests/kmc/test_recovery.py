"""Escrow and dual-control recovery: refused with one approval and with self-approval,
succeeds with two, and the recovered key is the escrowed one."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from keymgmt import pkcs12
from keymgmt.errors import (
    ApprovalError,
    AuthenticationError,
    Conflict,
    KmcError,
    NotFound,
    PermissionDenied,
    SealedError,
)
from keymgmt.service import (
    CardRecipient,
    JudicialOrder,
    KeyManagementCentre,
    OfficerRecipient,
    Principal,
)
from sscard.audit import AuditLog
from sscard.crypto import envelopes
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.crypto.sm2 import SM2PrivateKey
from tests.kmc.kmc_helpers import new_kmc, principals

SSN = "11010519491231002X"


@pytest.fixture
def kmc(tmp_path: Path) -> KeyManagementCentre:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


@pytest.fixture
def who(kmc: KeyManagementCentre) -> dict[str, Principal]:
    return principals(kmc)


def _escrow(kmc: KeyManagementCentre, who: dict[str, Principal]) -> tuple[str, SM2PrivateKey,
                                                                           SM2PrivateKey]:
    card = SM2PrivateKey.generate()
    res = kmc.escrow(who["ca"], SSN, card.public_key().spki_der())
    escrowed = envelopes.unwrap(res.enveloped_key_blob or b"", card)
    assert envelopes.unwrap(res.enveloped_key_der or b"", card).private_value() == \
        escrowed.private_value()
    assert PublicKey.from_spki(res.public_key_spki).raw.point == escrowed.public_key().point
    return res.key_id, card, escrowed


def test_recovery_onto_a_new_card_needs_two_other_officers(
    kmc: KeyManagementCentre, who: dict[str, Principal],
) -> None:
    key_id, _old_card, escrowed = _escrow(kmc, who)
    new_card = SM2PrivateKey.generate()
    req = kmc.request_recovery(who["o1"], key_id=key_id, reason="card lost, reissued",
                               recipient=CardRecipient(new_card.public_key().spki_der()))
    rid = req["request_id"]
    assert req["status"] == "pending" and req["approvals"] == []

    with pytest.raises(ApprovalError, match="requested this recovery"):
        kmc.approve(who["o1"], rid)
    with pytest.raises(ApprovalError, match="0 of the 2 approvals"):
        kmc.complete_recovery(who["o1"], rid)

    assert kmc.approve(who["o2"], rid)["status"] == "pending"
    with pytest.raises(ApprovalError, match="1 of the 2 approvals"):
        kmc.complete_recovery(who["o1"], rid)
    with pytest.raises(ApprovalError, match="already decided"):
        kmc.approve(who["o2"], rid)
    with pytest.raises(PermissionDenied, match="needs officer"):
        kmc.approve(who["ra"], rid)

    assert kmc.approve(who["o3"], rid)["status"] == "approved"
    with pytest.raises(PermissionDenied, match="only o1 may collect"):
        kmc.complete_recovery(who["o2"], rid)
    result = kmc.complete_recovery(who["o1"], rid)
    recovered = envelopes.unwrap(result.enveloped_key_blob or b"", new_card)
    assert recovered.private_value() == escrowed.private_value()
    assert envelopes.unwrap(result.enveloped_key_der or b"", new_card).private_value() == \
        escrowed.private_value()
    # the envelope is for the new card only
    with pytest.raises(envelopes.EnvelopeError):
        envelopes.unwrap(result.enveloped_key_blob or b"", _old_card)
    with pytest.raises(Conflict, match="already completed"):
        kmc.complete_recovery(who["o1"], rid)

    events = kmc.events(who["auditor"], "recovery.")
    assert [e["action"] for e in events if not e["action"].endswith(".refused")] == [
        "recovery.request", "recovery.approve", "recovery.approve", "recovery.complete"]
    # every refusal is on record too, with who and why
    refused = [(e["action"], e["actor"]) for e in events if e["action"].endswith(".refused")]
    assert refused == [
        ("recovery.approve.refused", "o1"), ("recovery.complete.refused", "o1"),
        ("recovery.complete.refused", "o1"), ("recovery.approve.refused", "o2"),
        ("recovery.approve.refused", "ra"), ("recovery.complete.refused", "o2"),
        ("recovery.complete.refused", "o1")]
    assert "dual control" in events[1]["details"]["reason"]


def test_recovery_as_pkcs12_for_a_named_officer(
    kmc: KeyManagementCentre, who: dict[str, Principal], tmp_path: Path,
) -> None:
    _key_id, _card, escrowed = _escrow(kmc, who)
    rid = kmc.request_recovery(who["ra"], owner=SSN, reason="decrypt archived files",
                               recipient=OfficerRecipient("o4"))["request_id"]
    with pytest.raises(ApprovalError, match="is to receive the key"):
        kmc.approve(who["o4"], rid)
    kmc.approve(who["o1"], rid)
    kmc.approve(who["o2"], rid)
    with pytest.raises(PermissionDenied, match="only o4 may collect"):
        kmc.complete_recovery(who["ra"], rid)
    result = kmc.complete_recovery(who["o4"], rid)
    assert result.pkcs12 is not None and result.pkcs12_passphrase
    assert result.pkcs12_passphrase not in repr(result)
    p8, _cert = pkcs12.open_pfx(result.pkcs12, result.pkcs12_passphrase.encode())
    assert PrivateKey.from_pkcs8(p8).raw.private_value() == escrowed.private_value()
    # OpenSSL, as an independent reader, opens the same file with the one-time passphrase
    pfx = tmp_path / "recovered.p12"
    pfx.write_bytes(result.pkcs12)
    out = subprocess.run(
        ["openssl", "pkcs12", "-in", str(pfx), "-nocerts", "-nodes", "-passin", "stdin"],
        input=result.pkcs12_passphrase.encode() + b"\n", capture_output=True, check=True,
    ).stdout
    key = PrivateKey.from_pkcs8(
        subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
                       input=out, capture_output=True, check=True).stdout)
    assert key.raw.private_value() == escrowed.private_value()
    bad = subprocess.run(["openssl", "pkcs12", "-in", str(pfx), "-nodes", "-passin", "stdin"],
                         input=b"wrong\n", capture_output=True)
    assert bad.returncode != 0


def test_rejection_ends_a_request(kmc: KeyManagementCentre, who: dict[str, Principal]) -> None:
    key_id, _card, _ = _escrow(kmc, who)
    rid = kmc.request_recovery(who["o1"], key_id=key_id, reason="x",
                               recipient=OfficerRecipient("o4"))["request_id"]
    kmc.approve(who["o2"], rid)
    assert kmc.reject(who["o3"], rid, "no court order")["status"] == "rejected"
    with pytest.raises(Conflict, match="rejected, not pending"):
        kmc.approve(who["o2"], rid)
    with pytest.raises(ApprovalError, match="was rejected"):
        kmc.complete_recovery(who["o4"], rid)


def test_judicial_recovery_is_a_separate_recorded_path(
    kmc: KeyManagementCentre, who: dict[str, Principal],
) -> None:
    key_id, _card, escrowed = _escrow(kmc, who)
    order = JudicialOrder("某市中级人民法院", "(2026)某01刑初123号",
                          hashlib.sha256(b"scanned order").hexdigest())
    with pytest.raises(KmcError, match="named officer as PKCS#12"):
        kmc.request_recovery(who["o1"], key_id=key_id, reason="court order", judicial=order,
                             recipient=CardRecipient(SM2PrivateKey.generate().public_key()
                                                     .spki_der()))
    with pytest.raises(PermissionDenied):
        kmc.request_recovery(who["ra"], key_id=key_id, reason="court order", judicial=order,
                             recipient=OfficerRecipient("o4"))
    with pytest.raises(KmcError, match="SHA-256"):
        kmc.request_recovery(who["o1"], key_id=key_id, reason="court order",
                             judicial=JudicialOrder("court", "ref", "nothex"),
                             recipient=OfficerRecipient("o4"))
    req = kmc.request_recovery(who["o1"], key_id=key_id, reason="court order", judicial=order,
                               recipient=OfficerRecipient("o4"))
    assert req["judicial"] is True
    kmc.approve(who["o2"], req["request_id"])
    kmc.approve(who["o3"], req["request_id"])
    result = kmc.complete_recovery(who["o4"], req["request_id"])
    assert result.pkcs12 is not None and result.pkcs12_passphrase is not None
    p8, _ = pkcs12.open_pfx(result.pkcs12, result.pkcs12_passphrase.encode())
    assert PrivateKey.from_pkcs8(p8).raw.private_value() == escrowed.private_value()
    events = kmc.events(who["auditor"], "recovery.judicial.")
    assert [(e["action"], e["actor"]) for e in events if "refused" in e["action"]] == [
        ("recovery.judicial.request.refused", "ra")]
    events = [e for e in events if "refused" not in e["action"]]
    assert [e["action"] for e in events] == [
        "recovery.judicial.request", "recovery.judicial.approve", "recovery.judicial.approve",
        "recovery.judicial.complete"]
    assert events[0]["details"]["order_ref"] == "(2026)某01刑初123号"
    assert kmc.events(who["auditor"], "recovery.request") == []


def test_approval_count_is_configurable(tmp_path: Path) -> None:
    kmc = new_kmc(f"sqlite:///{tmp_path / 'k3.db'}", approvals=3)
    try:
        who = principals(kmc)
        key_id, _card, _ = _escrow(kmc, who)
        rid = kmc.request_recovery(who["o1"], key_id=key_id, reason="r",
                                   recipient=OfficerRecipient("o4"))["request_id"]
        kmc.approve(who["o2"], rid)
        kmc.approve(who["o3"], rid)
        with pytest.raises(ApprovalError, match="2 of the 3 approvals"):
            kmc.complete_recovery(who["o4"], rid)
    finally:
        kmc.close()
    with pytest.raises(ValueError, match="at least 2"):
        new_kmc(f"sqlite:///{tmp_path / 'k1.db'}", approvals=1)


def test_callers_roles_and_bad_requests(kmc: KeyManagementCentre,
                                       who: dict[str, Principal]) -> None:
    card = SM2PrivateKey.generate().public_key().spki_der()
    with pytest.raises(AuthenticationError):
        kmc.authenticate("kmc_not-a-key")
    with pytest.raises(PermissionDenied, match="needs ca or ra"):
        kmc.escrow(who["o1"], SSN, card)
    with pytest.raises(KmcError, match="recipient signing public key"):
        kmc.escrow(who["ca"], SSN, b"\x30\x03garbage")
    with pytest.raises(KmcError, match="owner"):
        kmc.escrow(who["ca"], "", card)
    with pytest.raises(KmcError, match="not escrowed here"):
        kmc.escrow(who["ca"], SSN, card, "ed25519")
    with pytest.raises(KmcError, match="unknown key algorithm"):
        kmc.escrow(who["ca"], SSN, card, "dsa")
    rsa_pub = PrivateKey.generate("ec-p256").public_key().spki_der()
    with pytest.raises(KmcError, match="SM2 signing public key"):
        kmc.escrow(who["ca"], SSN, rsa_pub)
    with pytest.raises(NotFound):
        kmc.request_recovery(who["o1"], key_id="ek-missing", reason="r",
                             recipient=OfficerRecipient("o4"))
    with pytest.raises(KmcError, match="not an active officer"):
        kmc.request_recovery(who["o1"], owner=SSN, reason="r", recipient=OfficerRecipient("ra"))
    with pytest.raises(Conflict, match="already exists"):
        kmc.add_caller("o1", "officer")
    kmc.deactivate_caller("o2")
    # nothing above changed the archive
    assert kmc.find_keys(who["auditor"], owner=SSN) == []


def test_owner_with_two_keys_must_be_named_precisely(
    kmc: KeyManagementCentre, who: dict[str, Principal],
) -> None:
    _escrow(kmc, who)
    _escrow(kmc, who)
    with pytest.raises(Conflict, match="has 2 escrowed keys"):
        kmc.request_recovery(who["o1"], owner=SSN, reason="r", recipient=OfficerRecipient("o4"))


def test_sealed_kmc_refuses_key_operations(tmp_path: Path) -> None:
    kmc = KeyManagementCentre.open(f"sqlite:///{tmp_path / 'sealed.db'}",
                                   audit=AuditLog.at_home(tmp_path))
    try:
        ca = kmc.authenticate(kmc.add_caller("ca", "ca"))
        with pytest.raises(SealedError, match="sealed"):
            kmc.escrow(ca, SSN, SM2PrivateKey.generate().public_key().spki_der())
    finally:
        kmc.close()


def test_other_algorithms_are_escrowed_and_recovered_as_pkcs12(
    kmc: KeyManagementCentre, who: dict[str, Principal],
) -> None:
    card = SM2PrivateKey.generate().public_key().spki_der()
    res = kmc.escrow(who["ra"], "officer-laptop-7", card, "ec-p256")
    assert res.algorithm == "ec-p256" and res.enveloped_key_der is None
    with pytest.raises(KmcError, match="only SM2 keys can be recovered onto a card"):
        kmc.request_recovery(who["o1"], key_id=res.key_id, reason="r",
                             recipient=CardRecipient(card))
    rid = kmc.request_recovery(who["o1"], key_id=res.key_id, reason="r",
                               recipient=OfficerRecipient("o4"))["request_id"]
    kmc.approve(who["o2"], rid)
    kmc.approve(who["o3"], rid)
    out = kmc.complete_recovery(who["o4"], rid)
    assert out.pkcs12 is not None and out.pkcs12_passphrase is not None
    p8, _ = pkcs12.open_pfx(out.pkcs12, out.pkcs12_passphrase.encode())
    assert PrivateKey.from_pkcs8(p8).public_key().spki_der() == res.public_key_spki


def test_other_algorithms_come_back_in_a_cms_envelope(
    kmc: KeyManagementCentre, who: dict[str, Principal], tmp_path: Path,
) -> None:
    """ECDSA/RSA keys: the PKCS#8 in CMS EnvelopedData for the requester's SM2 or RSA key,
    opened by sscard.cms and (RSA) by openssl cms as independent readers."""
    import datetime as dt
    import secrets as _secrets

    from keymgmt.pkcs8_envelope import subject_key_identifier
    from sscard.cms.enveloped import decrypt as cms_decrypt
    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name

    for recipient_alg in ("sm2", "rsa2048"):
        requester = SoftwareKey.generate(recipient_alg)
        res = kmc.escrow(who["ra"], f"system-{recipient_alg}",
                         requester.public_key().spki_der(), "ec-p256")
        assert res.enveloped_key_der is None and res.enveloped_pkcs8 is not None
        now = dt.datetime.now(dt.UTC)
        cert = (CertificateBuilder().subject(parse_name("CN=requester"))
                .issuer(parse_name("CN=requester")).public_key(requester.public_key())
                .serial_number(_secrets.randbits(64)).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension("key_identifier", subject_key_identifier(requester.public_key()))
                .sign(requester))
        opened = cms_decrypt(res.enveloped_pkcs8, requester, cert)
        key = PrivateKey.from_pkcs8(opened.content)
        assert key.public_key().spki_der() == res.public_key_spki
        if recipient_alg == "rsa2048":
            keyfile = tmp_path / "requester.pem"
            keyfile.write_bytes(requester.private_key.encrypted_pkcs8(b"requester pw"))
            env_file = tmp_path / "env.der"
            env_file.write_bytes(res.enveloped_pkcs8)
            out = subprocess.run(
                ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(env_file),
                 "-inkey", str(keyfile), "-passin", "pass:requester pw"],
                capture_output=True, check=True).stdout
            assert out == opened.content
    with pytest.raises(KmcError, match="SM2 or RSA public key"):
        kmc.escrow(who["ra"], "system-ec", PrivateKey.generate("ec-p256").public_key().spki_der(),
                   "ec-p256")
