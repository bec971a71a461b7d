"""Public and private keys of every supported algorithm behind one small API.

SM2 goes to ``sm2`` (OpenSSL libcrypto); ECDSA, RSA and Ed25519 to pyca/cryptography. Callers
see ``PrivateKey``/``PublicKey`` and name a ``SignatureAlgorithm`` or ``EncryptionScheme``.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

from asn1crypto import keys as asn1keys
from cryptography.exceptions import InvalidSignature as _CInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _CUnsupported
from cryptography.hazmat.primitives import hashes as _ch
from cryptography.hazmat.primitives import serialization as _ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs)
from sscard.crypto import oids, pkcs8, sm2
from sscard.crypto.algorithms import (
    EncryptionScheme,
    KeyAlgorithm,
    KeyType,
    PssParameters,
    SignatureAlgorithm,
)
from sscard.crypto.errors import (
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    UnsupportedAlgorithm,
)
from sscard.crypto.hashes import hash_algorithm

#: ECDSA digests hashlib computes the same as cryptography does (SM3 stays with cryptography)
_HASHLIB_DIGESTS = frozenset({"sha1", "sha224", "sha256", "sha384", "sha512"})

_CURVES = {KeyAlgorithm.EC_P256: ec.SECP256R1(), KeyAlgorithm.EC_P384: ec.SECP384R1()}


def _algorithm_of(key: Any) -> KeyAlgorithm:
    if isinstance(key, sm2.SM2PublicKey | sm2.SM2PrivateKey):
        return KeyAlgorithm.SM2
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        name = key.curve.name
        if name == "secp256r1":
            return KeyAlgorithm.EC_P256
        if name == "secp384r1":
            return KeyAlgorithm.EC_P384
        raise UnsupportedAlgorithm(f"unsupported elliptic curve {name}")
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        bits = key.key_size
        for alg in (KeyAlgorithm.RSA2048, KeyAlgorithm.RSA3072, KeyAlgorithm.RSA4096):
            if alg.rsa_bits == bits:
                return alg
        if 2048 <= bits <= 8192:
            return KeyAlgorithm.RSA4096 if bits > 3072 else KeyAlgorithm.RSA2048
        raise UnsupportedAlgorithm(f"RSA keys of {bits} bits are not supported (2048-8192)")
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return KeyAlgorithm.ED25519
    raise UnsupportedAlgorithm(f"unsupported key type {type(key).__name__}")


def _is_sm2(algorithm_identifier: Any) -> bool:
    """id-ecPublicKey on the SM2 curve (GM/T 0015), or the bare SM2 OID some producers use."""
    algo = algorithm_identifier["algorithm"].dotted
    if algo == oids.SM2_CURVE:
        return True
    params = algorithm_identifier["parameters"]
    # absent parameters (asn1crypto's Void) cannot name the SM2 curve
    return bool(algo == oids.EC_PUBLIC_KEY and isinstance(params, asn1keys.ECDomainParameters)
                and params.name == "named" and params.chosen.dotted == oids.SM2_CURVE)


def _check_fits(alg: SignatureAlgorithm, key_alg: KeyAlgorithm) -> None:
    if alg.key_type is not key_alg.key_type:
        raise UnsupportedAlgorithm(
            f"signature algorithm {alg.name} does not fit a {key_alg.value} key"
        )


class SignatureEncoding(enum.Enum):
    """How an (EC)DSA-style signature (r, s) is written."""

    DER = "der"  # SEQUENCE {r, s}: X.509, CMS, OpenSSL
    P1363 = "p1363"  # r || s, each the width of the group order: JOSE, PKCS#11, cards


def _p1363_to_der(signature: bytes, order_bits: int) -> bytes:
    width = (order_bits + 7) // 8
    if len(signature) != 2 * width:
        raise InvalidSignature(
            f"a P1363 signature for this key is {2 * width} bytes (r||s), got {len(signature)}"
        )
    return bytes(encode_dss_signature(int.from_bytes(signature[:width], "big"),
                                      int.from_bytes(signature[width:], "big")))


def _pss_to_use(alg: SignatureAlgorithm, given: PssParameters | None,
                of_key: PssParameters | None) -> PssParameters:
    """The PSS parameters a verification must hold to: the caller's, else the key's, else the
    algorithm's defaults. A key restricted to PSS parameters (RFC 4055 §3.1) admits no other."""
    if given is not None and given.hash_name != alg.hash_name:
        raise UnsupportedAlgorithm(
            f"RSA-PSS parameters name hash {given.hash_name}, the algorithm {alg.name}"
        )
    if of_key is not None and (of_key.hash_name != alg.hash_name
                               or (given is not None and given != of_key)):
        raise InvalidSignature(
            f"the key is restricted to RSA-PSS {of_key}; the signature claims"
            f" {given or alg.name}"
        )
    return given or of_key or alg.default_pss()


def _pss_padding(params: PssParameters) -> Any:
    return padding.PSS(mgf=padding.MGF1(hash_algorithm(params.mgf_hash_name)),
                       salt_length=params.salt_length)


def _rsa_sig_padding(alg: SignatureAlgorithm, hash_alg: _ch.HashAlgorithm) -> Any:
    if alg.is_pss:
        return _pss_padding(alg.default_pss())
    return padding.PKCS1v15()


def _oaep(scheme: EncryptionScheme, label: bytes | None = None) -> Any:
    if scheme is EncryptionScheme.RSA_PKCS1V15:
        if label:
            raise UnsupportedAlgorithm("PKCS#1 v1.5 encryption has no label")
        return padding.PKCS1v15()
    h: _ch.HashAlgorithm = (
        _ch.SHA256() if scheme is EncryptionScheme.RSA_OAEP_SHA256
        else _ch.SHA1()  # noqa: S303  (OAEP with SHA-1 is what many HSMs and cards offer)
    )
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=label or None)


def _ec_point_spki_prefixes() -> dict[int, bytes]:
    """SPKI length -> the DER up to the uncompressed point, for P-256 and P-384 (id-ecPublicKey
    with a named curve): the one encoding a CSR's EC key almost always has."""
    found = {}
    for curve, size in (("secp256r1", 65), ("secp384r1", 97)):
        spki = asn1keys.PublicKeyInfo({
            "algorithm": {"algorithm": "ec", "parameters": asn1keys.ECDomainParameters(
                name="named", value=curve)},
            "public_key": b"\x04" + bytes(size - 1)}).dump()
        found[len(spki)] = spki[:-size]
    return found


_EC_POINT_SPKI = _ec_point_spki_prefixes()


def _is_ec_point_spki(der: bytes) -> bool:
    prefix = _EC_POINT_SPKI.get(len(der))
    return prefix is not None and der.startswith(prefix) and der[len(prefix)] == 4


class PublicKey:
    """A public key of any supported algorithm."""

    __slots__ = ("_key", "_pss_spki", "algorithm", "pss")

    def __init__(self, key: Any, pss: PssParameters | None = None,
                 pss_spki: bytes | None = None) -> None:
        self._key = key
        self.algorithm = _algorithm_of(key)
        #: an id-RSASSA-PSS key's own parameters: then only PSS with exactly these verifies
        self.pss = pss
        # its SPKI as given: pyca/cryptography would re-encode it as rsaEncryption, unrestricted
        self._pss_spki = pss_spki if pss is not None else None

    @classmethod
    def from_spki(cls, der: bytes) -> PublicKey:
        if sm2.is_point_spki(der):
            # an SM2 key in its one encoding needs no asn1crypto parse (~120 us; a CA reads
            # one key per certificate it issues); the point is checked on the curve as ever
            return cls(sm2.SM2PublicKey.from_spki(der))
        if _is_ec_point_spki(der):
            # so is a P-256 or P-384 key in its one encoding: OpenSSL reads it (and checks the
            # point on the curve) without asn1crypto's parse first
            try:
                return cls(_ser.load_der_public_key(der))
            except (ValueError, _CUnsupported) as exc:
                raise InvalidKey(f"unsupported or malformed public key: {exc}") from None
        try:
            info = asn1keys.PublicKeyInfo.load(der, strict=True)
            is_sm2 = _is_sm2(info["algorithm"])
            is_pss = info["algorithm"]["algorithm"].dotted == oids.RSA_PSS
            pss_params = info["algorithm"]["parameters"] if is_pss else None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidKey(f"not a SubjectPublicKeyInfo: {exc}") from None
        if is_sm2:
            return cls(sm2.SM2PublicKey.from_spki(der))
        pss = None
        if is_pss and pss_params is not None and pss_params.native is not None:
            try:
                pss = PssParameters.from_asn1(pss_params)
            except UnsupportedAlgorithm as exc:
                raise InvalidKey(f"RSA-PSS key: {exc}") from None
        try:
            return cls(_ser.load_der_public_key(der), pss, der)
        except (ValueError, _CUnsupported) as exc:
            raise InvalidKey(f"unsupported or malformed public key: {exc}") from None

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        from sscard.x509.pem import pem_to_der

        return cls.from_spki(pem_to_der(data, "PUBLIC KEY"))

    @property
    def raw(self) -> Any:
        """The backend object (SM2PublicKey or a pyca/cryptography key)."""
        return self._key

    def spki_der(self) -> bytes:
        if isinstance(self._key, sm2.SM2PublicKey):
            return self._key.spki_der()
        if self._pss_spki is not None:
            return self._pss_spki
        return bytes(
            self._key.public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo)
        )

    def spki_pem(self) -> bytes:
        from sscard.x509.pem import der_to_pem

        return der_to_pem(self.spki_der(), "PUBLIC KEY")

    def asn1(self) -> asn1keys.PublicKeyInfo:
        return asn1keys.PublicKeyInfo.load(self.spki_der())

    def verify(
        self,
        signature: bytes,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        uid: bytes = sm2.DEFAULT_UID,
        *,
        pss: PssParameters | None = None,
        encoding: SignatureEncoding = SignatureEncoding.DER,
    ) -> None:
        """Raise ``InvalidSignature`` unless ``signature`` signs ``data``.

        ``pss``: RSASSA-PSS parameters the signature must have been made with (from its
        AlgorithmIdentifier, say); without them, the key's own (id-RSASSA-PSS keys), else
        salt = digest length. ``encoding``: DER or P1363 (r||s) for ECDSA and SM2.
        """
        alg = algorithm or (self.pss.algorithm if self.pss else self.algorithm.default_signature)
        _check_fits(alg, self.algorithm)
        if self.pss is not None and not alg.is_pss:
            raise InvalidSignature(f"the key is restricted to RSA-PSS; {alg.name} is refused")
        if pss is not None and not alg.is_pss:
            raise UnsupportedAlgorithm(f"PSS parameters given for {alg.name}")
        k = self._key
        if encoding is SignatureEncoding.P1363:
            if isinstance(k, sm2.SM2PublicKey):
                signature = _p1363_to_der(signature, 256)
            elif isinstance(k, ec.EllipticCurvePublicKey):
                signature = _p1363_to_der(signature, k.curve.key_size)  # = order bits
            else:
                raise UnsupportedAlgorithm(f"P1363 encoding does not apply to {alg.name}")
        try:
            if isinstance(k, sm2.SM2PublicKey):
                k.verify(signature, data, uid)
            elif isinstance(k, ec.EllipticCurvePublicKey):
                assert alg.hash_name is not None
                k.verify(signature, data, ec.ECDSA(hash_algorithm(alg.hash_name)))
            elif isinstance(k, rsa.RSAPublicKey):
                assert alg.hash_name is not None
                h = hash_algorithm(alg.hash_name)
                pad = (_pss_padding(_pss_to_use(alg, pss, self.pss)) if alg.is_pss
                       else padding.PKCS1v15())
                k.verify(signature, data, pad, h)
            else:
                k.verify(signature, data)
        except _CInvalidSignature:
            raise InvalidSignature(f"{alg.name} signature does not verify") from None

    def encrypt(self, plaintext: bytes, scheme: EncryptionScheme | None = None,
                label: bytes | None = None) -> bytes:
        """``label``: the OAEP label (RFC 8017 §7.1), empty unless both sides agree on one."""
        k = self._key
        if isinstance(k, sm2.SM2PublicKey):
            scheme = scheme or EncryptionScheme.SM2
            if scheme not in (EncryptionScheme.SM2, EncryptionScheme.SM2_C1C3C2):
                raise UnsupportedAlgorithm(f"{scheme.value} does not fit an SM2 key")
            fmt = (sm2.CipherFormat.ASN1 if scheme is EncryptionScheme.SM2
                   else sm2.CipherFormat.C1C3C2)
            return k.encrypt(plaintext, fmt)
        if isinstance(k, rsa.RSAPublicKey):
            scheme = scheme or EncryptionScheme.RSA_OAEP_SHA256
            if scheme in (EncryptionScheme.SM2, EncryptionScheme.SM2_C1C3C2):
                raise UnsupportedAlgorithm(f"{scheme.value} does not fit an RSA key")
            return bytes(k.encrypt(plaintext, _oaep(scheme, label)))
        raise UnsupportedAlgorithm(f"{self.algorithm.value} keys cannot encrypt")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.spki_der() == self.spki_der()

    def __hash__(self) -> int:
        return hash(self.spki_der())

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm.value})"


class PrivateKey:
    """A private key of any supported algorithm, held in memory (software keys)."""

    __slots__ = ("_key", "algorithm")

    def __init__(self, key: Any) -> None:
        self._key = key
        self.algorithm = _algorithm_of(key)

    @classmethod
    def generate(cls, algorithm: KeyAlgorithm | str) -> PrivateKey:
        alg = KeyAlgorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
        if alg is KeyAlgorithm.SM2:
            return cls(sm2.SM2PrivateKey.generate())
        if alg in _CURVES:
            return cls(ec.generate_private_key(_CURVES[alg]))
        if alg is KeyAlgorithm.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=alg.rsa_bits))

    @classmethod
    def from_private_value(cls, algorithm: KeyAlgorithm, d: int) -> PrivateKey:
        """An SM2 or EC private key from its scalar (as cards and test vectors give it)."""
        if not 0 < d:
            raise InvalidKey("the private scalar must be positive")
        if algorithm is KeyAlgorithm.SM2:
            return cls(sm2.SM2PrivateKey.from_private_value(d))
        if algorithm not in _CURVES:
            raise UnsupportedAlgorithm(f"{algorithm.value} keys have no private scalar")
        try:
            return cls(ec.derive_private_key(d, _CURVES[algorithm]))
        except ValueError as exc:
            raise InvalidKey(f"not a {algorithm.value} private scalar: {exc}") from None

    @classmethod
    def from_pkcs8(cls, der: bytes) -> PrivateKey:
        try:
            info = asn1keys.PrivateKeyInfo.load(der, strict=True)
            is_sm2 = _is_sm2(info["private_key_algorithm"])
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidKey(f"not a PKCS#8 PrivateKeyInfo: {exc}") from None
        if is_sm2:
            return cls(sm2.SM2PrivateKey.from_pkcs8(der))
        try:
            return cls(_ser.load_der_private_key(der, password=None))
        except (ValueError, TypeError, _CUnsupported) as exc:
            raise InvalidKey(f"unsupported or malformed private key: {exc}") from None

    @classmethod
    def from_encrypted(cls, data: bytes, passphrase: bytes) -> PrivateKey:
        """Load encrypted PKCS#8, PEM or DER (as ``openssl pkcs8 -topk8`` writes it)."""
        return cls.from_pkcs8(pkcs8.decrypt(data, passphrase))

    @property
    def raw(self) -> Any:
        return self._key

    def pkcs8_der(self) -> bytes:
        """Unencrypted PKCS#8: for wrapping or encrypting, never for writing to disk as is."""
        if isinstance(self._key, sm2.SM2PrivateKey):
            return self._key.pkcs8_der()
        return bytes(
            self._key.private_bytes(
                _ser.Encoding.DER, _ser.PrivateFormat.PKCS8, _ser.NoEncryption()
            )
        )

    def encrypted_pkcs8(self, passphrase: bytes, pem: bool = True) -> bytes:
        return pkcs8.encrypt(self.pkcs8_der(), passphrase, pem=pem)

    def public_key(self) -> PublicKey:
        return PublicKey(self._key.public_key())

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        uid: bytes = sm2.DEFAULT_UID,
    ) -> bytes:
        alg = algorithm or self.algorithm.default_signature
        _check_fits(alg, self.algorithm)
        alg.check_can_sign()
        k = self._key
        if isinstance(k, sm2.SM2PrivateKey):
            return k.sign(data, uid)
        if isinstance(k, ec.EllipticCurvePrivateKey):
            assert alg.hash_name is not None
            h = hash_algorithm(alg.hash_name)
            if alg.hash_name in _HASHLIB_DIGESTS:
                # hashed by hashlib and signed as prehashed (the same signature): cryptography
                # fetches the digest from OpenSSL 3's provider on every sign, which cost more
                # than the P-256 signature itself (about 120 us a call against 48 us)
                prehashed = hashlib.new(alg.hash_name, data).digest()
                return bytes(k.sign(prehashed, ec.ECDSA(Prehashed(h))))
            return bytes(k.sign(data, ec.ECDSA(h)))
        if isinstance(k, rsa.RSAPrivateKey):
            assert alg.hash_name is not None
            h = hash_algorithm(alg.hash_name)
            return bytes(k.sign(data, _rsa_sig_padding(alg, h), h))
        return bytes(k.sign(data))

    def exchange(self, peer: PublicKey) -> bytes:
        """ECDH (SEC 1 §3.3.1): the x-coordinate of d·Q, for EC keys on the same curve.

        The peer's point is checked to lie on the curve (pyca/cryptography does so on load),
        which defeats invalid-curve attacks. SM2 key agreement is a different protocol.
        """
        k = self._key
        if not isinstance(k, ec.EllipticCurvePrivateKey):
            raise UnsupportedAlgorithm(f"{self.algorithm.value} keys do not do ECDH")
        if peer.algorithm is not self.algorithm:
            raise InvalidKey(
                f"ECDH needs keys on one curve: ours is {self.algorithm.value},"
                f" the peer's {peer.algorithm.value}"
            )
        try:
            return bytes(k.exchange(ec.ECDH(), peer.raw))
        except ValueError as exc:
            raise InvalidKey(f"ECDH with this peer key failed: {exc}") from None

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None,
                label: bytes | None = None) -> bytes:
        """Raise ``DecryptionError`` on any failure, one message for all (no padding oracle).

        PKCS#1 v1.5 uses implicit rejection (OpenSSL 3.2+, the Marvin attack fix): a bad
        padding yields a deterministic pseudo-random message, not an error.
        """
        k = self._key
        if isinstance(k, sm2.SM2PrivateKey):
            if label:
                raise UnsupportedAlgorithm("SM2 encryption has no label")
            fmt = (sm2.CipherFormat.C1C3C2 if scheme is EncryptionScheme.SM2_C1C3C2
                   else sm2.CipherFormat.ASN1)
            return k.decrypt(ciphertext, fmt)
        if isinstance(k, rsa.RSAPrivateKey):
            try:
                pad = _oaep(scheme or EncryptionScheme.RSA_OAEP_SHA256, label)
                return bytes(k.decrypt(ciphertext, pad))
            except ValueError:
                raise DecryptionError("RSA decryption failed (wrong key or corrupt data)") from None
        raise UnsupportedAlgorithm(f"{self.algorithm.value} keys cannot decrypt")

    def __repr__(self) -> str:
        return f"PrivateKey({self.algorithm.value})"


def key_type_of_spki(der: bytes) -> KeyType:
    return PublicKey.from_spki(der).algorithm.key_type

