"""The algorithm registry: key algorithms, and signature algorithms keyed by OID.

Everything that signs or verifies names a ``SignatureAlgorithm``; certificates, CSRs, CRLs and CMS
carry its OID, and ``signature_algorithm_for_oid`` maps back. Parameters that live in the
AlgorithmIdentifier (RSA-PSS) are produced by ``asn1_algorithm_identifier``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sscard.crypto import oids
from sscard.crypto.errors import UnsupportedAlgorithm


class KeyType(enum.Enum):
    SM2 = "sm2"
    EC = "ec"
    RSA = "rsa"
    ED25519 = "ed25519"


class KeyAlgorithm(enum.Enum):
    """Key algorithms a key handle can hold; the values are the CLI names."""

    SM2 = "sm2"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    ED25519 = "ed25519"

    @property
    def key_type(self) -> KeyType:
        return _KEY_TYPES.get(self, KeyType.RSA)

    @property
    def rsa_bits(self) -> int:
        return {KeyAlgorithm.RSA2048: 2048, KeyAlgorithm.RSA3072: 3072,
                KeyAlgorithm.RSA4096: 4096}[self]

    @property
    def default_signature(self) -> SignatureAlgorithm:
        return _DEFAULT_SIGNATURES[self]

    @classmethod
    def parse(cls, name: str) -> KeyAlgorithm:
        try:
            return cls(name.lower())
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise UnsupportedAlgorithm(
                f"unknown key algorithm {name!r}; use one of {names}"
            ) from None


#: a table, not a chain of tests: looked up for every key a CA certifies
_KEY_TYPES = {KeyAlgorithm.SM2: KeyType.SM2, KeyAlgorithm.EC_P256: KeyType.EC,
              KeyAlgorithm.EC_P384: KeyType.EC, KeyAlgorithm.ED25519: KeyType.ED25519}


@dataclass(frozen=True)
class _Sig:
    oid: str
    key_type: KeyType
    hash_name: str | None  # None: the algorithm hashes internally (Ed25519)
    pss: bool = False
    verify_only: bool = False  # legacy: checked where others made it, never produced here


class SignatureAlgorithm(enum.Enum):
    SM2_SM3 = _Sig(oids.SM2_WITH_SM3, KeyType.SM2, "sm3")
    ECDSA_SHA256 = _Sig(oids.ECDSA_SHA256, KeyType.EC, "sha256")
    ECDSA_SHA384 = _Sig(oids.ECDSA_SHA384, KeyType.EC, "sha384")
    ECDSA_SHA512 = _Sig(oids.ECDSA_SHA512, KeyType.EC, "sha512")
    RSA_PKCS1_SHA256 = _Sig(oids.SHA256_RSA, KeyType.RSA, "sha256")
    RSA_PKCS1_SHA384 = _Sig(oids.SHA384_RSA, KeyType.RSA, "sha384")
    RSA_PKCS1_SHA512 = _Sig(oids.SHA512_RSA, KeyType.RSA, "sha512")
    RSA_PSS_SHA256 = _Sig(oids.RSA_PSS, KeyType.RSA, "sha256", pss=True)
    RSA_PSS_SHA384 = _Sig(oids.RSA_PSS + "#sha384", KeyType.RSA, "sha384", pss=True)
    RSA_PSS_SHA512 = _Sig(oids.RSA_PSS + "#sha512", KeyType.RSA, "sha512", pss=True)
    # legacy, for verifying what older signers and RFC 4055's defaults produce
    RSA_PSS_SHA1 = _Sig(oids.RSA_PSS + "#sha1", KeyType.RSA, "sha1", pss=True, verify_only=True)
    ED25519 = _Sig(oids.ED25519, KeyType.ED25519, None)

    @property
    def oid(self) -> str:
        return self.value.oid.split("#")[0]

    @property
    def key_type(self) -> KeyType:
        return self.value.key_type

    @property
    def hash_name(self) -> str | None:
        return self.value.hash_name

    @property
    def is_pss(self) -> bool:
        return self.value.pss

    @property
    def verify_only(self) -> bool:
        return self.value.verify_only

    def check_can_sign(self) -> None:
        if self.verify_only:
            raise UnsupportedAlgorithm(f"{self.name} is accepted for verifying only, not signing")

    def default_pss(self) -> PssParameters:
        """RFC 4055's recommendation for this PSS algorithm: MGF1 with the same hash, salt of
        the digest length. What we sign with, and what we verify when nothing else is said."""
        if not self.is_pss or self.hash_name is None:
            raise UnsupportedAlgorithm(f"{self.name} is not an RSA-PSS algorithm")
        return PssParameters(self.hash_name, self.hash_name, _DIGEST_SIZE[self.hash_name])

    def asn1_algorithm_identifier(self) -> dict[str, object]:
        """The AlgorithmIdentifier as an asn1crypto-ready dict (parameters absent or NULL)."""
        if self.is_pss:
            return {"algorithm": "rsassa_pss", "parameters": self.default_pss().asn1()}
        if self.key_type is KeyType.RSA:
            return {"algorithm": self.oid, "parameters": None}
        return {"algorithm": self.oid}


#: built once, not on every call: a CA asks its key's default for every certificate it signs
_DEFAULT_SIGNATURES = {
    KeyAlgorithm.SM2: SignatureAlgorithm.SM2_SM3,
    KeyAlgorithm.EC_P256: SignatureAlgorithm.ECDSA_SHA256,
    KeyAlgorithm.EC_P384: SignatureAlgorithm.ECDSA_SHA384,
    KeyAlgorithm.RSA2048: SignatureAlgorithm.RSA_PKCS1_SHA256,
    KeyAlgorithm.RSA3072: SignatureAlgorithm.RSA_PKCS1_SHA256,
    KeyAlgorithm.RSA4096: SignatureAlgorithm.RSA_PKCS1_SHA256,
    KeyAlgorithm.ED25519: SignatureAlgorithm.ED25519,
}


_BY_OID = {a.oid: a for a in SignatureAlgorithm if not a.is_pss}
_DIGEST_SIZE = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True)
class PssParameters:
    """RSASSA-PSS parameters (RFC 8017 §9.1, RFC 4055 §3.1): hash, MGF1 hash, salt length.

    A verifier checks the salt length exactly: accepting any length (OpenSSL's "auto") lets a
    signature made under other parameters pass where the key or the caller fixed them.
    """

    hash_name: str
    mgf_hash_name: str
    salt_length: int

    def __post_init__(self) -> None:
        for name in (self.hash_name, self.mgf_hash_name):
            if name not in _DIGEST_SIZE:
                raise UnsupportedAlgorithm(
                    f"RSA-PSS with hash {name} is not supported"
                    f" (use one of {', '.join(_DIGEST_SIZE)})"
                )
        if not 0 <= self.salt_length <= 1024:
            raise UnsupportedAlgorithm(f"RSA-PSS salt length {self.salt_length} is out of range")

    @classmethod
    def from_asn1(cls, params: Any) -> PssParameters:
        """From asn1crypto RSASSAPSSParams (absent fields take RFC 4055's SHA-1 defaults)."""
        try:
            mgf = params["mask_gen_algorithm"]
            if mgf["algorithm"].native != "mgf1":
                raise UnsupportedAlgorithm(
                    f"RSA-PSS mask generation {mgf['algorithm'].dotted} is not supported (MGF1)"
                )
            if params["trailer_field"].native not in ("trailer_field_bc", 1):
                raise UnsupportedAlgorithm("RSA-PSS trailer field other than 0xBC (1)")
            return cls(params["hash_algorithm"]["algorithm"].native,
                       mgf["parameters"]["algorithm"].native,
                       int(params["salt_length"].native))
        except (ValueError, TypeError, KeyError) as exc:
            raise UnsupportedAlgorithm(f"malformed RSASSA-PSS parameters: {exc}") from None

    def asn1(self) -> dict[str, object]:
        return {
            "hash_algorithm": {"algorithm": self.hash_name},
            "mask_gen_algorithm": {
                "algorithm": "mgf1",
                "parameters": {"algorithm": self.mgf_hash_name},
            },
            "salt_length": self.salt_length,
        }

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return signature_algorithm_for_oid(oids.RSA_PSS, self.hash_name)


def signature_algorithm_for_oid(oid: str, pss_hash: str | None = None) -> SignatureAlgorithm:
    """Map an AlgorithmIdentifier back; RSA-PSS needs the hash from its parameters."""
    if oid == oids.RSA_PSS:
        for alg in SignatureAlgorithm:
            if alg.is_pss and alg.hash_name == (pss_hash or "sha256"):
                return alg
        raise UnsupportedAlgorithm(f"RSA-PSS with hash {pss_hash} is not supported")
    if oid == oids.SM2_SIGN:  # some GM/T producers put sm2sign where sm2-with-sm3 belongs
        return SignatureAlgorithm.SM2_SM3
    try:
        return _BY_OID[oid]
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported signature algorithm OID {oid}") from None


def signature_algorithm_from_asn1(alg_id: object) -> SignatureAlgorithm:
    """From an asn1crypto SignedDigestAlgorithm."""
    oid = alg_id["algorithm"].dotted  # type: ignore[index]
    pss = pss_parameters_from_asn1(alg_id)
    return pss.algorithm if pss is not None else signature_algorithm_for_oid(oid)


def pss_parameters_from_asn1(alg_id: object) -> PssParameters | None:
    """The RSASSA-PSS parameters of an asn1crypto AlgorithmIdentifier; None if not PSS."""
    if alg_id["algorithm"].dotted != oids.RSA_PSS:  # type: ignore[index]
        return None
    return PssParameters.from_asn1(alg_id["parameters"])  # type: ignore[index]


class EncryptionScheme(enum.Enum):
    """Public-key encryption schemes (key transport)."""

    SM2 = "sm2"  # GM/T 0009 SM2Cipher (ASN.1)
    SM2_C1C3C2 = "sm2-c1c3c2"
    RSA_OAEP_SHA256 = "rsa-oaep-sha256"
    RSA_OAEP_SHA1 = "rsa-oaep-sha1"
    RSA_PKCS1V15 = "rsa-pkcs1v15"
