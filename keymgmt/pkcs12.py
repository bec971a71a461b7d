"""PKCS#12 (RFC 7292) files for recovered keys, SM2 included.

pyca/cryptography cannot load an SM2 private key at all (no SM2 curve), so its
``serialize_key_and_certificates`` cannot write one. The PFX is therefore assembled with
asn1crypto around pieces OpenSSL itself produces: the key bag is the PBES2 (PBKDF2-HMAC-SHA256,
AES-256-CBC) EncryptedPrivateKeyInfo from ``sscard.crypto.pkcs8.encrypt``, the certificate bag
holds the DER certificate, and the integrity MAC is HMAC-SHA256 with the key from the PKCS#12
KDF (RFC 7292 Appendix B.2), which is what OpenSSL 3 writes by default; ``openssl pkcs12``
reads the result (the tests check that).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from asn1crypto import cms, pkcs12

from sscard.crypto import pkcs8
from sscard.crypto.asymmetric import PrivateKey

MAC_ITERATIONS = 2048
_SHA256_U = 32  # digest length
_SHA256_V = 64  # block length


def _bmp_password(passphrase: bytes) -> bytes:
    # RFC 7292 B.1: the password is a BMPString with a two-byte NUL terminator.
    return passphrase.decode("utf-8").encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(passphrase: bytes, salt: bytes, purpose: int, iterations: int, length: int) -> bytes:
    """RFC 7292 Appendix B.2 with SHA-256 (purpose 3: MAC key)."""
    u, v = _SHA256_U, _SHA256_V
    d = bytes([purpose]) * v

    def stretch(data: bytes) -> bytes:
        if not data:
            return b""
        n = v * ((len(data) + v - 1) // v)
        return (data * (n // len(data) + 1))[:n]

    i_block = bytearray(stretch(salt) + stretch(_bmp_password(passphrase)))
    out = b""
    while len(out) < length:
        a = hashlib.sha256(d + bytes(i_block)).digest()
        for _ in range(iterations - 1):
            a = hashlib.sha256(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i_block), v):
            chunk = (int.from_bytes(i_block[j:j + v], "big") + b + 1) % (1 << (8 * v))
            i_block[j:j + v] = chunk.to_bytes(v, "big")
    return out[:length]


def _attributes(friendly_name: str, local_key_id: bytes) -> pkcs12.Attributes:
    return pkcs12.Attributes([
        {"type": "friendly_name", "values": [friendly_name]},
        {"type": "local_key_id", "values": [local_key_id]},
    ])


def build(
    private_key_pkcs8: bytes,
    passphrase: bytes,
    certificate_der: bytes | None = None,
    friendly_name: str = "recovered encryption key",
) -> bytes:
    """A DER PFX holding the key (shrouded under ``passphrase``) and, if given, its certificate.

    ``private_key_pkcs8`` is an unencrypted PrivateKeyInfo; it is encrypted at once and not kept.
    """
    if not passphrase:
        raise ValueError("a PKCS#12 passphrase is required")
    # localKeyId ties the key bag to the certificate bag: the SHA-1-length prefix of the
    # SHA-256 of the public key, the same for both.
    spki = PrivateKey.from_pkcs8(private_key_pkcs8).public_key().spki_der()
    local_key_id = hashlib.sha256(spki).digest()[:20]
    shrouded = pkcs8.encrypt(private_key_pkcs8, passphrase, pem=False)
    bags = [pkcs12.SafeBag({
        "bag_id": "pkcs8_shrouded_key_bag",
        "bag_value": pkcs12.EncryptedPrivateKeyInfo.load(shrouded),
        "bag_attributes": _attributes(friendly_name, local_key_id),
    })]
    if certificate_der is not None:
        bags.append(pkcs12.SafeBag({
            "bag_id": "cert_bag",
            "bag_value": pkcs12.CertBag({
                "cert_id": "x509",
                "cert_value": pkcs12.ParsableOctetString(certificate_der),
            }),
            "bag_attributes": _attributes(friendly_name, local_key_id),
        }))
    safe_contents = pkcs12.SafeContents(bags).dump()
    auth_safe = pkcs12.AuthenticatedSafe([
        cms.ContentInfo({"content_type": "data", "content": safe_contents})
    ]).dump()
    salt = secrets.token_bytes(16)
    mac_key = pkcs12_kdf(passphrase, salt, 3, MAC_ITERATIONS, _SHA256_U)
    mac = hmac.new(mac_key, auth_safe, hashlib.sha256).digest()
    pfx = pkcs12.Pfx({
        "version": "v3",
        "auth_safe": {"content_type": "data", "content": auth_safe},
        "mac_data": {
            "mac": {"digest_algorithm": {"algorithm": "sha256"}, "digest": mac},
            "mac_salt": salt,
            "iterations": MAC_ITERATIONS,
        },
    })
    return bytes(pfx.dump())


def open_pfx(pfx_der: bytes, passphrase: bytes) -> tuple[bytes, bytes | None]:
    """(unencrypted PKCS#8, certificate DER or None) from a PFX this module wrote; checks the
    MAC first. For tests and for officers' tooling; OpenSSL is the independent reader."""
    pfx = pkcs12.Pfx.load(pfx_der)
    auth_safe = pfx["auth_safe"]["content"].native
    mac_data = pfx["mac_data"]
    if mac_data["mac"]["digest_algorithm"]["algorithm"].native != "sha256":
        raise ValueError("only HMAC-SHA256 PKCS#12 MACs are supported")
    key = pkcs12_kdf(passphrase, mac_data["mac_salt"].native, 3,
                     mac_data["iterations"].native, _SHA256_U)
    expected = hmac.new(key, auth_safe, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac_data["mac"]["digest"].native):
        raise ValueError("PKCS#12 MAC does not verify: wrong passphrase or altered file")
    private_key = certificate = None
    for info in pkcs12.AuthenticatedSafe.load(auth_safe):
        for bag in pkcs12.SafeContents.load(info["content"].native):
            if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                private_key = pkcs8.decrypt(bag["bag_value"].untag().dump(), passphrase)
            elif bag["bag_id"].native == "cert_bag":
                certificate = bag["bag_value"]["cert_value"].parsed.dump()
    if private_key is None:
        raise ValueError("PKCS#12 holds no private key")
    return private_key, certificate
