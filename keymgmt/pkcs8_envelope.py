"""Escrowed keys that are not SM2 (ECDSA, RSA) handed to the requester: the PKCS#8 in a CMS
EnvelopedData (RFC 5652 §6; GM/T 0010 for SM2 key transport).

GM/T 0009/0016 envelopes only carry SM2 keys, so an ECDSA or RSA encryption key goes back as
an EnvelopedData whose single KeyTransRecipientInfo (version 2) names the requester's key by
subjectKeyIdentifier (SHA-1 of the subjectPublicKey bits, RFC 5280 §4.2.1.2 method 1: the
requester has a public key, not necessarily a certificate yet). Key transport: ``sm2encrypt``
(GM/T 0009 SM2Cipher) for an SM2 recipient, RSAES-OAEP-SHA256 for an RSA one; content: SM4-CBC
or AES-256-CBC respectively. ``sscard.cms.enveloped.decrypt`` and ``openssl cms -decrypt`` open
it with the recipient's key and a certificate carrying that key identifier.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from asn1crypto import algos, cms
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keymgmt.errors import KmcError
from sscard.cms import _asn1 as _cms_oids  # noqa: F401  (registers the CMS OIDs first)
from sscard.crypto import sm4
from sscard.crypto.algorithms import EncryptionScheme, KeyType
from sscard.crypto.asymmetric import PublicKey

_OAEP_SHA256 = {
    "hash_algorithm": {"algorithm": "sha256"},
    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
}


def subject_key_identifier(public_key: PublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 (1): SHA-1 of the BIT STRING subjectPublicKey (an identifier, not a
    security function)."""
    bits = public_key.asn1()["public_key"].contents[1:]
    return hashlib.sha1(bits, usedforsecurity=False).digest()


def _ensure_oid_maps() -> None:
    # The OID registrations reset asn1crypto's name->OID maps to None, which asn1crypto
    # rebuilds only on a class's first use in the process; rebuild them here if a class was
    # used before a registration ran (otherwise building by name fails with a TypeError).
    for cls in (cms.KeyEncryptionAlgorithmId, algos.EncryptionAlgorithmId, cms.ContentType):
        if cls._reverse_map is None:
            cls._reverse_map = {name: oid for oid, name in cls._map.items()}


def envelope_pkcs8(pkcs8_der: bytes, recipient: PublicKey) -> bytes:
    """DER ContentInfo(EnvelopedData) of ``pkcs8_der`` for ``recipient`` (SM2 or RSA)."""
    _ensure_oid_maps()
    iv = secrets.token_bytes(16)
    key_type = recipient.algorithm.key_type
    if key_type is KeyType.SM2:
        cek = secrets.token_bytes(16)
        transport: dict[str, Any] = {"algorithm": "sm2_encrypt"}
        encrypted_key = recipient.encrypt(cek, EncryptionScheme.SM2)
        content_alg = algos.EncryptionAlgorithm({"algorithm": "sm4_cbc", "parameters": iv})
        ciphertext = sm4.cbc_encrypt(cek, iv, pkcs8_der)
    elif key_type is KeyType.RSA:
        cek = secrets.token_bytes(32)
        transport = {"algorithm": "rsaes_oaep", "parameters": _OAEP_SHA256}
        encrypted_key = recipient.encrypt(cek, EncryptionScheme.RSA_OAEP_SHA256)
        content_alg = algos.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv})
        padder = padding.PKCS7(128).padder()
        padded = padder.update(pkcs8_der) + padder.finalize()
        enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ciphertext = enc.update(padded) + enc.finalize()
    else:
        raise KmcError(f"cannot envelope a key for a {recipient.algorithm.value} public key "
                       "(SM2 or RSA recipients only)")
    enveloped = cms.EnvelopedData({
        "version": "v2",  # RFC 5652 §6.1: a subjectKeyIdentifier rid makes the ktri version 2
        "recipient_infos": [cms.RecipientInfo(name="ktri", value={
            "version": "v2",
            "rid": cms.RecipientIdentifier(name="subject_key_identifier",
                                           value=subject_key_identifier(recipient)),
            "key_encryption_algorithm": transport,
            "encrypted_key": encrypted_key,
        })],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": content_alg,
            "encrypted_content": ciphertext,
        },
    })
    return bytes(cms.ContentInfo({"content_type": "enveloped_data",
                                  "content": enveloped}).dump())
