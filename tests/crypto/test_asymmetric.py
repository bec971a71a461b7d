"""Every algorithm behind the one PrivateKey/PublicKey API, and the registry keyed by OID."""

from __future__ import annotations

import pytest

from sscard.crypto import oids
from sscard.crypto.algorithms import (
    EncryptionScheme,
    KeyAlgorithm,
    SignatureAlgorithm,
    signature_algorithm_for_oid,
)
from sscard.crypto.asymmetric import PrivateKey, PublicKey
from sscard.crypto.errors import (
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    UnsupportedAlgorithm,
    WrongPassphrase,
)

ALGS = [a for a in KeyAlgorithm if a is not KeyAlgorithm.RSA4096]


@pytest.fixture(scope="module", params=ALGS, ids=lambda a: a.value)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param)


def test_sign_verify_every_compatible_algorithm(key: PrivateKey) -> None:
    fitting = [s for s in SignatureAlgorithm if s.key_type is key.algorithm.key_type]
    assert fitting
    for alg in fitting:
        sig = key.sign(b"payload", alg)
        key.public_key().verify(sig, b"payload", alg)
        with pytest.raises(InvalidSignature):
            key.public_key().verify(sig, b"payload!", alg)


def test_mismatched_algorithm_is_refused(key: PrivateKey) -> None:
    wrong = next(s for s in SignatureAlgorithm if s.key_type is not key.algorithm.key_type)
    with pytest.raises(UnsupportedAlgorithm, match="does not fit"):
        key.sign(b"x", wrong)


def test_pkcs8_spki_and_encrypted_round_trip(key: PrivateKey) -> None:
    again = PrivateKey.from_pkcs8(key.pkcs8_der())
    assert again.public_key() == key.public_key()
    assert PublicKey.from_spki(key.public_key().spki_der()) == key.public_key()
    for pem in (True, False):
        blob = key.encrypted_pkcs8(b"pw", pem=pem)
        assert PrivateKey.from_encrypted(blob, b"pw").public_key() == key.public_key()
        with pytest.raises(WrongPassphrase):
            PrivateKey.from_encrypted(blob, b"other")
    with pytest.raises(ValueError, match="empty passphrase"):
        key.encrypted_pkcs8(b"")


def test_encryption_where_the_key_allows(key: PrivateKey) -> None:
    pub = key.public_key()
    if key.algorithm is KeyAlgorithm.SM2:
        schemes = [EncryptionScheme.SM2, EncryptionScheme.SM2_C1C3C2]
    elif key.algorithm.key_type.value == "rsa":
        schemes = [EncryptionScheme.RSA_OAEP_SHA256, EncryptionScheme.RSA_OAEP_SHA1,
                   EncryptionScheme.RSA_PKCS1V15]
    else:
        with pytest.raises(UnsupportedAlgorithm, match="cannot encrypt"):
            pub.encrypt(b"x")
        with pytest.raises(UnsupportedAlgorithm, match="cannot decrypt"):
            key.decrypt(b"x")
        return
    for scheme in schemes:
        assert key.decrypt(pub.encrypt(b"secret", scheme), scheme) == b"secret"
    other = PrivateKey.generate(key.algorithm)
    with pytest.raises(DecryptionError):
        other.decrypt(pub.encrypt(b"secret", schemes[0]), schemes[0])


def test_registry_maps_oids_both_ways() -> None:
    for alg in SignatureAlgorithm:
        if alg.is_pss:
            assert signature_algorithm_for_oid(oids.RSA_PSS, alg.hash_name) is alg
        else:
            assert signature_algorithm_for_oid(alg.oid) is alg
    assert signature_algorithm_for_oid(oids.SM2_WITH_SM3) is SignatureAlgorithm.SM2_SM3
    with pytest.raises(UnsupportedAlgorithm, match=r"1\.2\.3\.4"):
        signature_algorithm_for_oid("1.2.3.4")
    with pytest.raises(UnsupportedAlgorithm, match="unknown key algorithm 'dsa'"):
        KeyAlgorithm.parse("dsa")


def test_malformed_keys_are_named() -> None:
    with pytest.raises(InvalidKey, match="SubjectPublicKeyInfo"):
        PublicKey.from_spki(b"\x30\x03\x02\x01\x00")
    with pytest.raises(InvalidKey, match="PKCS#8"):
        PrivateKey.from_pkcs8(b"garbage")
    with pytest.raises(InvalidKey, match="not a readable private key"):
        PrivateKey.from_encrypted(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                  b"pw")
