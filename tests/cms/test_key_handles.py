"""SignedData and EnvelopedData through key handles other than software keys: an ECDSA and an
RSA key on a SoftHSM2 token (the signature checked by OpenSSL too) and the emulated card's
on-card SM2 key."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport
from sscard.cms import (
    ContentCipher,
    EnvelopeDecryptionError,
    TrustConfig,
    Verifier,
    decrypt,
    encrypt,
    sign,
)
from sscard.crypto.algorithms import EncryptionScheme
from sscard.emulator.card import EmulatedCard
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, sample_card
from sscard.keys.base import KeyHandle
from sscard.keys.pkcs11 import Pkcs11Token
from sscard.x509.builder import CertificateBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from tests.cms.pki import NOW, Issued, Pki
from tests.softhsm import create_token

DOC = "劳动合同备案".encode() * 9


def certify(key: KeyHandle, ca: Issued, subject: str, usage: set[str]) -> object:
    public = key.public_key()
    return (CertificateBuilder()
            .subject(parse_name(subject)).issuer(ca.cert.subject).public_key(public)
            .serial_number(secrets.randbits(63))
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
            .add_extension("key_identifier", key_identifier(public))
            .add_extension("authority_key_identifier", {"key_identifier": ca.ski})
            .add_extension("key_usage", usage, True)
            .sign(ca.key))


@pytest.fixture(scope="module")
def token() -> Iterator[Pkcs11Token]:
    hsm = create_token("cms-keys")
    with Pkcs11Token(hsm.label, hsm.user_pin.encode(), hsm.module) as opened:
        yield opened


@pytest.mark.parametrize("family,algorithm", [("ec", "ec-p256"), ("rsa", "rsa2048")])
def test_hsm_key_signs_cms_that_openssl_verifies(request: pytest.FixtureRequest,
                                                  token: Pkcs11Token, openssl: str,
                                                  tmp_path: Path, family: str,
                                                  algorithm: str) -> None:
    pki: Pki = request.getfixturevalue(f"{family}_pki")
    key = token.generate_key(algorithm, f"cms-{family}")
    cert = certify(key, pki.ca, f"CN=HSM signer {family},C=CN", {"digital_signature"})
    der = sign(DOC, key, cert, chain=pki.chain, detached=True)  # type: ignore[arg-type]
    assert Verifier(TrustConfig([pki.root.cert])).verify(der, DOC).valid
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "doc.txt").write_bytes(DOC)
    (tmp_path / "root.pem").write_bytes(der_to_pem(pki.root.cert.dump(), "CERTIFICATE"))
    res = subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in",
                          str(tmp_path / "sig.der"), "-content", str(tmp_path / "doc.txt"),
                          "-CAfile", str(tmp_path / "root.pem"), "-purpose", "any",
                          "-out", "/dev/null"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_hsm_rsa_key_opens_an_envelope(rsa_pki: Pki, token: Pkcs11Token) -> None:
    key = token.generate_key("rsa2048", "cms-rsa-enc")
    cert = certify(key, rsa_pki.ca, "CN=HSM recipient,C=CN", {"key_encipherment"})
    # SoftHSM2 does OAEP with SHA-1 only: the default (SHA-256) is refused with a clear error
    env = encrypt(DOC, [cert], cipher=ContentCipher.AES256_GCM)  # type: ignore[list-item]
    with pytest.raises(EnvelopeDecryptionError, match="rsa-oaep-sha256"):
        decrypt(env, key, cert)  # type: ignore[arg-type]
    for scheme in (EncryptionScheme.RSA_OAEP_SHA1, EncryptionScheme.RSA_PKCS1V15):
        env = encrypt(DOC, [cert], cipher=ContentCipher.AES256_GCM,  # type: ignore[list-item]
                      rsa_scheme=scheme)
        assert decrypt(env, key, cert).content == DOC  # type: ignore[arg-type]


def test_card_key_signs_cms(sm2_pki: Pki) -> None:
    from sscard.card.auth import PsamAuthenticator
    from sscard.emulator.testkeys import KeyId

    card = EmulatedCard(sample_card(CardProfile(generation=3)))
    client = CardClient(InProcessTransport(card))
    client.connect()
    psam = InProcessTransport(EmulatedPsam(make_test_psam()))
    psam.connect()
    client.external_authenticate(KeyId.UPDATE, PsamAuthenticator(psam))
    client.generate_signing_key()
    key = CardKey(client, lambda: "123456")
    cert = certify(key, sm2_pki.ca, "CN=张三,serialNumber=111111198101011110,C=CN",
                   {"digital_signature", "non_repudiation"})
    der = sign(DOC, key, cert, chain=sm2_pki.chain)  # type: ignore[arg-type]
    report = Verifier(TrustConfig([sm2_pki.root.cert])).verify(der)
    assert report.valid, report.problems
    assert report.signer is not None
    assert report.signer.social_insurance_number == "111111198101011110"
