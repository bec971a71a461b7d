"""Mutated and truncated CMS input: the verifier answers (not valid) or raises CmsParseError, and
decryption raises a CMS/decryption error naming the problem; nothing else escapes."""

from __future__ import annotations

import pytest
from asn1crypto import cms, x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscard.asn1.register import GCMParameters
from sscard.cms import (
    CmsError,
    CmsParseError,
    ContentCipher,
    EnvelopeDecryptionError,
    NoMatchingRecipient,
    TrustConfig,
    Verifier,
    decrypt,
    encrypt,
    sign,
)
from sscard.crypto.errors import CryptoError
from tests.cms.pki import Pki

DOC = "退休审批表".encode() * 5


@pytest.fixture(scope="module")
def samples(sm2_pki: Pki) -> dict[str, bytes]:
    return {
        "signed": sign(DOC, sm2_pki.signer.key, sm2_pki.signer.cert, chain=sm2_pki.chain),
        "enveloped": encrypt(DOC, [sm2_pki.signer.cert], cipher=ContentCipher.SM4_CBC),
    }


def _mutate(data: bytes, position: int, value: int, cut: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= value or 1
    return bytes(out[: max(1, len(out) - cut)])


MUTATION = given(position=st.integers(min_value=0, max_value=10_000),
                 value=st.integers(min_value=0, max_value=255),
                 cut=st.sampled_from([0, 0, 0, 1, 7, 100]))
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@MUTATION
@FAST
def test_mutated_signed_data(sm2_pki: Pki, samples: dict[str, bytes], position: int,
                             value: int, cut: int) -> None:
    data = _mutate(samples["signed"], position, value, cut)
    verifier = Verifier(TrustConfig([sm2_pki.root.cert]))
    try:
        report = verifier.verify(data)
    except CmsParseError as exc:
        assert str(exc)
        return
    assert all(p.code and p.message for p in report.problems)
    if report.valid:  # a flip in a field no signature covers (e.g. SignedData's version)
        assert report.content == DOC


@MUTATION
@FAST
def test_mutated_enveloped_data(sm2_pki: Pki, samples: dict[str, bytes], position: int,
                                value: int, cut: int) -> None:
    data = _mutate(samples["enveloped"], position, value, cut)
    try:
        opened = decrypt(data, sm2_pki.signer.key, sm2_pki.signer.cert)
    except (CmsError, CryptoError) as exc:
        assert str(exc)
        return
    # CBC without integrity: a flip may still decrypt, but then only into other bytes
    assert isinstance(opened.content, bytes)


def test_recipient_name_that_cannot_be_compared(sm2_pki: Pki) -> None:
    """Found by the fuzz test above: an issuer name with a private-use character made
    asn1crypto's name comparison raise ValueError out of decrypt."""
    env = cms.ContentInfo.load(encrypt(b"x", [sm2_pki.signer.cert]))
    ias = env["content"]["recipient_infos"][0].chosen["rid"].chosen
    issuer = x509.Name.load(sm2_pki.signer.cert.issuer.dump())  # the same name but one value
    for rdn in issuer.chosen:
        for attr in rdn:
            if attr["type"].native == "common_name":
                attr["value"] = x509.DirectoryString(
                    name="utf8_string", value=attr["value"].native + "\ue000")
    ias["issuer"] = issuer
    with pytest.raises(NoMatchingRecipient):
        decrypt(env.dump(force=True), sm2_pki.signer.key, sm2_pki.signer.cert)


@pytest.mark.parametrize("cipher", [ContentCipher.SM4_GCM, ContentCipher.AES128_GCM])
@pytest.mark.parametrize("nonce_len", [0, 4, 300])
def test_gcm_nonce_the_cipher_refuses(sm2_pki: Pki, cipher: ContentCipher,
                                      nonce_len: int) -> None:
    """A GCM nonce of a length the cipher refuses raised pyca's raw ValueError out of decrypt."""
    env = cms.ContentInfo.load(encrypt(b"x", [sm2_pki.signer.cert], cipher=cipher))
    alg = env["content"]["encrypted_content_info"]["content_encryption_algorithm"]
    alg["parameters"] = GCMParameters({"nonce": bytes(nonce_len), "icv_len": 16})
    with pytest.raises(EnvelopeDecryptionError, match="GCM"):
        decrypt(env.dump(force=True), sm2_pki.signer.key, sm2_pki.signer.cert)
