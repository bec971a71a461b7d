"""SignedData and EnvelopedData round trips for every key type the issue names, both content-type
families, and the refusals for envelopes that are not ours or were changed."""

from __future__ import annotations

import pytest
from asn1crypto import cms

from sscard.cms import (
    CmsBuildError,
    CmsParseError,
    ContentCipher,
    EnvelopeDecryptionError,
    Flavour,
    NoMatchingRecipient,
    TrustConfig,
    Verifier,
    decrypt,
    encrypt,
    sign,
)
from sscard.crypto.algorithms import SignatureAlgorithm
from tests.cms.pki import Pki, make_leaf, make_pki

DOC = "城乡居民医保参保登记".encode() * 7


@pytest.fixture(scope="module")
def ed25519_pki() -> Pki:
    return make_pki("ed25519")


@pytest.mark.parametrize("family,algorithm", [
    ("sm2", None),
    ("ec", None),
    ("rsa", SignatureAlgorithm.RSA_PKCS1_SHA256),
    ("rsa", SignatureAlgorithm.RSA_PSS_SHA256),
    ("ed25519", None),
])
@pytest.mark.parametrize("flavour", list(Flavour))
def test_sign_verify_every_key_type(request: pytest.FixtureRequest, family: str,
                                    algorithm: SignatureAlgorithm | None,
                                    flavour: Flavour) -> None:
    pki: Pki = request.getfixturevalue(f"{family}_pki")
    der = sign(DOC, pki.signer.key, pki.signer.cert, chain=pki.chain, algorithm=algorithm,
               flavour=flavour, detached=True)
    verifier = Verifier(TrustConfig([pki.root.cert]))
    report = verifier.verify(der, DOC)
    assert report.valid, report.problems
    info = cms.ContentInfo.load(der)
    attrs = {a["type"].native for a in info["content"]["signer_infos"][0]["signed_attrs"]}
    assert attrs == {"content_type", "message_digest", "signing_time", "signing_certificate_v2"}
    assert {c.value for c in verifier.verify(der, DOC + b"!").codes} == {"CONTENT_CHANGED"}


def test_sm2_signature_uses_sm3_and_the_signing_certificate(sm2_pki: Pki) -> None:
    der = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert)
    si = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert si["digest_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.401"
    assert si["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    ess = next(a for a in si["signed_attrs"] if a["type"].native == "signing_certificate_v2")
    cert_id = ess["values"][0]["certs"][0]
    assert cert_id["hash_algorithm"]["algorithm"].native == "sm3"
    assert cert_id["issuer_serial"]["serial_number"].native == sm2_pki.signer.cert.serial_number


@pytest.mark.parametrize("family", ["sm2", "ec", "rsa"])
@pytest.mark.parametrize("cipher", list(ContentCipher))
def test_envelope_round_trip(request: pytest.FixtureRequest, family: str,
                             cipher: ContentCipher) -> None:
    pki: Pki = request.getfixturevalue(f"{family}_pki")
    env = encrypt(DOC, [pki.signer.cert], cipher=cipher)
    opened = decrypt(env, pki.signer.key, pki.signer.cert)
    assert opened.content == DOC and opened.cipher == cipher.value


def test_envelope_to_several_recipients_and_gm_types(sm2_pki: Pki, rsa_pki: Pki,
                                                     ec_pki: Pki) -> None:
    env = encrypt(DOC, [sm2_pki.signer.cert, rsa_pki.signer.cert, ec_pki.signer.cert],
                  cipher=ContentCipher.SM4_GCM, flavour=Flavour.GM)
    info = cms.ContentInfo.load(env)
    assert info["content_type"].dotted == "1.2.156.10197.6.1.4.2.3"
    ri = info["content"]["recipient_infos"]
    assert ri[0].chosen["key_encryption_algorithm"]["algorithm"].dotted == \
        "1.2.156.10197.1.301.3"
    assert [r.name for r in ri] == ["ktri", "ktri", "kari"]
    for pki in (sm2_pki, rsa_pki, ec_pki):
        assert decrypt(env, pki.signer.key, pki.signer.cert).content == DOC


def test_envelope_refusals(sm2_pki: Pki) -> None:
    env = encrypt(DOC, [sm2_pki.signer.cert], cipher=ContentCipher.SM4_GCM)
    stranger = make_leaf("CN=stranger,C=CN", sm2_pki.ca)
    with pytest.raises(NoMatchingRecipient, match="not addressed"):
        decrypt(env, stranger.key, stranger.cert)
    with pytest.raises(CmsBuildError, match="does not match"):
        decrypt(env, stranger.key, sm2_pki.signer.cert)
    info = cms.ContentInfo.load(env)
    eci = info["content"]["encrypted_content_info"]
    data = bytearray(eci["encrypted_content"].native)
    data[3] ^= 0x40
    eci["encrypted_content"] = bytes(data)
    with pytest.raises(EnvelopeDecryptionError, match="authentication tag"):
        decrypt(cms.ContentInfo.load(info.dump()).dump(), sm2_pki.signer.key,
                sm2_pki.signer.cert)
    signed = sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert)
    with pytest.raises(CmsParseError, match="expected EnvelopedData"):
        decrypt(signed, sm2_pki.signer.key, sm2_pki.signer.cert)
    with pytest.raises(CmsBuildError, match="at least one recipient"):
        encrypt(DOC, [])


def test_ed25519_cannot_receive_envelopes(ed25519_pki: Pki) -> None:
    with pytest.raises(CmsBuildError, match="cannot receive envelopes"):
        encrypt(DOC, [ed25519_pki.signer.cert])
