"""Every algorithm behind the one PrivateKey/PublicKey API, and the registry keyed by OID."""

from __future__ import annotations

import pytest
from asn1crypto import algos
from asn1crypto import keys as asn1keys
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sscard.crypto import oids
from sscard.crypto.algorithms import (
    EncryptionScheme,
    KeyAlgorithm,
    PssParameters,
    SignatureAlgorithm,
    signature_algorithm_for_oid,
)
from sscard.crypto.asymmetric import PrivateKey, PublicKey, SignatureEncoding
from sscard.crypto.errors import (
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    UnsupportedAlgorithm,
    WrongPassphrase,
)
from sscard.crypto.hashes import hash_algorithm

ALGS = [a for a in KeyAlgorithm if a is not KeyAlgorithm.RSA4096]


@pytest.fixture(scope="module", params=ALGS, ids=lambda a: a.value)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param)


def test_sign_verify_every_compatible_algorithm(key: PrivateKey) -> None:
    fitting = [s for s in SignatureAlgorithm
               if s.key_type is key.algorithm.key_type and not s.verify_only]
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


# -- RSA-PSS parameters, P1363, ECDH (issue 13: Wycheproof) --------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> PrivateKey:
    return PrivateKey.generate(KeyAlgorithm.RSA2048)


def _pss_sign(key: PrivateKey, data: bytes, params: PssParameters) -> bytes:
    """A PSS signature with any parameters, as another signer (OpenSSL, an HSM) makes it."""
    h = hash_algorithm(params.hash_name)
    pad = padding.PSS(mgf=padding.MGF1(hash_algorithm(params.mgf_hash_name)),
                      salt_length=params.salt_length)
    return bytes(key.raw.sign(data, pad, h))


def test_pss_salt_length_is_enforced_not_auto(rsa_key: PrivateKey) -> None:
    """The attack: a signature whose salt length differs from the one agreed passed (PSS.AUTO)."""
    pub = rsa_key.public_key()
    alg = SignatureAlgorithm.RSA_PSS_SHA256
    max_salt = PssParameters("sha256", "sha256", 2048 // 8 - 32 - 2)
    sig = _pss_sign(rsa_key, b"doc", max_salt)
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"doc", alg)  # the default is salt = digest length, exactly
    pub.verify(sig, b"doc", alg, pss=max_salt)  # the caller (or the AlgorithmIdentifier) says
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"doc", alg, pss=PssParameters("sha256", "sha256", 32))
    pub.verify(rsa_key.sign(b"doc", alg), b"doc", alg)


def test_pss_key_parameters_bind_the_key(rsa_key: PrivateKey) -> None:
    """An id-RSASSA-PSS key (RFC 4055) verifies only PSS with its own parameters."""
    params = PssParameters("sha256", "sha256", 0)
    spki = asn1keys.PublicKeyInfo({
        "algorithm": {"algorithm": "rsassa_pss", "parameters": params.asn1()},
        "public_key": rsa_key.public_key().asn1()["public_key"],
    }).dump()
    pub = PublicKey.from_spki(spki)
    assert pub.pss == params
    assert pub.spki_der() == spki  # the restriction survives re-export
    pub.verify(_pss_sign(rsa_key, b"doc", params), b"doc")
    with pytest.raises(InvalidSignature, match="restricted"):
        pub.verify(_pss_sign(rsa_key, b"doc", PssParameters("sha256", "sha256", 32)), b"doc",
                   SignatureAlgorithm.RSA_PSS_SHA256, pss=PssParameters("sha256", "sha256", 32))
    with pytest.raises(InvalidSignature, match="restricted to RSA-PSS"):
        pub.verify(rsa_key.sign(b"doc", SignatureAlgorithm.RSA_PKCS1_SHA256), b"doc",
                   SignatureAlgorithm.RSA_PKCS1_SHA256)
    with pytest.raises(InvalidSignature, match="restricted"):  # another hash, no parameters
        pub.verify(rsa_key.sign(b"doc", SignatureAlgorithm.RSA_PSS_SHA384), b"doc",
                   SignatureAlgorithm.RSA_PSS_SHA384)


def test_pss_with_sha1_and_mgf1_sha1_is_expressible(rsa_key: PrivateKey) -> None:
    params = PssParameters("sha1", "sha1", 20)  # RFC 4055's defaults: absent parameters
    assert params == PssParameters.from_asn1(algos.RSASSAPSSParams.load(b"\x30\x00"))
    assert params.algorithm is SignatureAlgorithm.RSA_PSS_SHA1
    rsa_key.public_key().verify(_pss_sign(rsa_key, b"doc", params), b"doc", params.algorithm,
                                pss=params)
    with pytest.raises(UnsupportedAlgorithm, match="verifying only"):
        rsa_key.sign(b"doc", SignatureAlgorithm.RSA_PSS_SHA1)
    with pytest.raises(UnsupportedAlgorithm, match="md5"):
        PssParameters("md5", "md5", 16)


@pytest.mark.parametrize("alg", [KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384, KeyAlgorithm.SM2])
def test_p1363_signatures_where_asked_for(alg: KeyAlgorithm) -> None:
    key = PrivateKey.generate(alg)
    der = key.sign(b"doc")
    r, s = decode_dss_signature(der)
    width = 48 if alg is KeyAlgorithm.EC_P384 else 32
    raw = r.to_bytes(width, "big") + s.to_bytes(width, "big")
    key.public_key().verify(raw, b"doc", encoding=SignatureEncoding.P1363)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(raw, b"doc")  # not DER: refused unless P1363 is asked for
    with pytest.raises(InvalidSignature, match=f"{2 * width} bytes"):
        key.public_key().verify(raw[1:], b"doc", encoding=SignatureEncoding.P1363)


def test_ecdh_agrees_and_refuses_other_curves() -> None:
    a, b = PrivateKey.generate(KeyAlgorithm.EC_P256), PrivateKey.generate(KeyAlgorithm.EC_P256)
    assert a.exchange(b.public_key()) == b.exchange(a.public_key())
    with pytest.raises(InvalidKey, match="one curve"):
        a.exchange(PrivateKey.generate(KeyAlgorithm.EC_P384).public_key())
    with pytest.raises(UnsupportedAlgorithm, match="do not do ECDH"):
        PrivateKey.generate(KeyAlgorithm.SM2).exchange(a.public_key())


def test_spki_with_absent_ec_parameters_is_a_clear_error() -> None:
    """Wycheproof ECDH tcId 484 crashed from_spki with AttributeError ('Void' has no 'name')."""
    spki = asn1keys.PublicKeyInfo({"algorithm": {"algorithm": "ec"},
                                   "public_key": b"\x04" + bytes(64)}).dump()
    with pytest.raises(InvalidKey):
        PublicKey.from_spki(spki)


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384])
def test_an_ec_key_in_its_one_encoding_is_read_and_checked_without_asn1crypto(
        algorithm: KeyAlgorithm) -> None:
    """The shortcut for a named-curve key with an uncompressed point reads the same key, and
    still refuses a point off the curve (attack: an invalid-curve key in a CSR)."""
    spki = PrivateKey.generate(algorithm).public_key().spki_der()
    key = PublicKey.from_spki(spki)
    assert key.algorithm is algorithm and key.spki_der() == spki
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    with pytest.raises(InvalidKey):
        PublicKey.from_spki(off_curve)
