"""Sealing key material that must leave the KMC (PSAM contents, per-card keys) for one recipient.

A fresh SM4 key encrypts the payload with SM4-GCM; the SM4 key is SM2-encrypted (GM/T 0009
SM2Cipher) to the recipient's SM2 public key, e.g. the PSAM personalisation station's key. The
header (format, purpose, recipient key hash) is the GCM associated data, so a sealed file cannot
be relabelled. Only the holder of the recipient private key can open it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from keymgmt.errors import KmcError
from sscard.crypto import sm4
from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.crypto.sm2 import SM2PrivateKey

SEALED_FORMAT = "sscard-kmc-sealed/1"


def _header(purpose: str, recipient_sha256: str) -> dict[str, str]:
    return {"format": SEALED_FORMAT, "purpose": purpose, "recipient_sha256": recipient_sha256,
            "cipher": "sm4-gcm", "key_transport": "sm2-encrypt"}


def _aad(header: dict[str, str]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(payload: dict[str, Any], purpose: str, recipient_spki: bytes) -> bytes:
    try:
        recipient = PublicKey.from_spki(recipient_spki)
    except CryptoError as exc:
        raise KmcError(f"export recipient public key: {exc}") from None
    if recipient.algorithm is not KeyAlgorithm.SM2:
        raise KmcError("exports are sealed for an SM2 public key; "
                       f"the recipient key is {recipient.algorithm.value}")
    header = _header(purpose, hashlib.sha256(recipient.spki_der()).hexdigest())
    key, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    body = json.dumps(payload, sort_keys=True).encode()
    doc = {
        **header,
        "encrypted_key": base64.b64encode(recipient.encrypt(key, EncryptionScheme.SM2)).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sm4.gcm_encrypt(key, nonce, body, _aad(header))).decode(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def open_sealed(data: bytes, recipient: SM2PrivateKey, purpose: str) -> dict[str, Any]:
    """The recipient's side (the personalisation station, and the tests)."""
    try:
        doc = json.loads(data)
        header = {k: doc[k] for k in _header("", "")}
        encrypted_key = base64.b64decode(doc["encrypted_key"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        ciphertext = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise KmcError(f"not a sealed KMC export: {exc}") from None
    if header["format"] != SEALED_FORMAT or header["purpose"] != purpose:
        raise KmcError(f"sealed export is {header['format']}/{header['purpose']}, "
                       f"expected {SEALED_FORMAT}/{purpose}")
    if header["recipient_sha256"] != hashlib.sha256(recipient.public_key().spki_der()).hexdigest():
        raise KmcError("sealed export is for another recipient key")
    try:
        key = recipient.decrypt(encrypted_key)
        body = sm4.gcm_decrypt(key, nonce, ciphertext, _aad(header))
    except CryptoError as exc:
        raise KmcError(f"sealed export does not open: {exc}") from None
    result: dict[str, Any] = json.loads(body)
    return result
