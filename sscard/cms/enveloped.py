"""CMS EnvelopedData (RFC 5652 §6, GM/T 0010 §9): the digital envelope.

Key management by the recipient certificate's key:

* RSA: key transport with RSAES-OAEP (SHA-256, MGF1-SHA-256); PKCS#1 v1.5 and OAEP with other
  hashes are accepted when opening (OpenSSL's default is v1.5).
* SM2: key transport with sm2encrypt (1.2.156.10197.1.301.3), the encrypted key a GM/T 0009
  SM2Cipher (GM/T 0010 §9). On request the form BouncyCastle's CMS API reads and writes:
  sm2encrypt-with-sm3 (1.2.156.10197.1.301.3.2.1), the key raw C1||C2||C3. Both are read.
* ECDH on P-256/P-384: key agreement, ephemeral-static (RFC 5753 dhSinglePass-stdDH-sha256kdf,
  X9.63 KDF over ECC-CMS-SharedInfo, AES key wrap); the SHA-1/384/512 KDF variants open too.

Content encryption: SM4-CBC, SM4-GCM, AES-128/256-CBC or AES-128/256-GCM (GCM parameters as in
RFC 5084, the 16-byte tag appended to the ciphertext). Decryption goes through any key handle
that can decrypt (key transport) or a software key (ECDH needs the private scalar).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core, keys, x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.padding import PKCS7

from sscard.asn1.register import GCMParameters
from sscard.cms import _asn1 as _cms_asn1
from sscard.cms.content_types import Flavour, content_type, normalise
from sscard.cms.errors import (
    CmsBuildError,
    CmsParseError,
    EnvelopeDecryptionError,
    NoMatchingRecipient,
)
from sscard.crypto import oids, sm2, sm4
from sscard.crypto.algorithms import EncryptionScheme, KeyType
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError, DecryptionError
from sscard.crypto.hashes import hash_algorithm
from sscard.keys.base import KeyHandle
from sscard.keys.software import SoftwareKey


class ContentCipher(enum.Enum):
    """Content-encryption algorithms; the values are asn1crypto's names."""

    SM4_CBC = "sm4_cbc"
    SM4_GCM = "sm4_gcm"
    AES128_CBC = "aes128_cbc"
    AES256_CBC = "aes256_cbc"
    AES128_GCM = "aes128_gcm"
    AES256_GCM = "aes256_gcm"

    @property
    def key_size(self) -> int:
        return 32 if self.value.startswith("aes256") else 16

    @property
    def is_gcm(self) -> bool:
        return self.value.endswith("gcm")

    @classmethod
    def parse(cls, name: str) -> ContentCipher:
        try:
            return cls(name.lower().replace("-", "_"))
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise CmsBuildError(f"unknown content cipher {name!r}; use one of {names}") from None


class Sm2KeyTransport(enum.Enum):
    """How an SM2 recipient's content key is written; the values are the CLI names."""

    GMT0010 = "gmt0010"  # sm2encrypt, SM2Cipher (GM/T 0009/0010): the default
    BOUNCYCASTLE = "bouncycastle"  # sm2encrypt-with-sm3, raw C1||C2||C3 (BouncyCastle 1.5x+)

    @classmethod
    def parse(cls, name: str) -> Sm2KeyTransport:
        try:
            return cls(name.lower())
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise CmsBuildError(f"unknown SM2 key-transport form {name!r}; use one of {names}"
                                ) from None


_GCM_NONCE = 12
_TAG = 16


def _block_cipher(cipher: ContentCipher, key: bytes) -> algorithms.BlockCipherAlgorithm:
    return algorithms.SM4(key) if cipher.value.startswith("sm4") else algorithms.AES(key)


def _encrypt_content(
    cipher: ContentCipher, key: bytes, data: bytes
) -> tuple[dict[str, object], bytes]:
    if cipher.is_gcm:
        nonce = secrets.token_bytes(_GCM_NONCE)
        if cipher is ContentCipher.SM4_GCM:
            ct = sm4.gcm_encrypt(key, nonce, data)
            params: object = GCMParameters({"nonce": nonce, "icv_len": _TAG})
        else:
            ct = AESGCM(key).encrypt(nonce, data, None)
            params = core.Any.load(GCMParameters({"nonce": nonce, "icv_len": _TAG}).dump())
        return {"algorithm": cipher.value, "parameters": params}, ct
    iv = secrets.token_bytes(16)
    padder = PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(_block_cipher(cipher, key), modes.CBC(iv)).encryptor()
    return {"algorithm": cipher.value, "parameters": iv}, enc.update(padded) + enc.finalize()


def _decrypt_content(alg: algos.EncryptionAlgorithm, key: bytes, ciphertext: bytes,
                     aad: bytes = b"") -> bytes:
    name = alg["algorithm"].native
    try:
        cipher = ContentCipher(name)
    except ValueError:
        raise EnvelopeDecryptionError(
            f"unsupported content-encryption algorithm {alg['algorithm'].dotted}"
        ) from None
    if len(key) != cipher.key_size:
        raise EnvelopeDecryptionError(
            f"the content key is {len(key)} bytes, {cipher.value} needs {cipher.key_size}"
        )
    params = alg["parameters"]
    if cipher.is_gcm:
        try:
            gcm = GCMParameters.load(params.dump())
            nonce = gcm["nonce"].native
            icv = gcm["icv_len"].native
        except (ValueError, TypeError) as exc:
            raise EnvelopeDecryptionError(f"malformed GCM parameters: {exc}") from None
        if icv != _TAG:
            raise EnvelopeDecryptionError(f"GCM tags of {icv} bytes are not supported (16)")
        try:
            if cipher is ContentCipher.SM4_GCM:
                return sm4.gcm_decrypt(key, nonce, ciphertext, aad)
            return AESGCM(key).decrypt(nonce, ciphertext, aad or None)
        except (InvalidTag, DecryptionError):
            raise EnvelopeDecryptionError(
                "the content fails its GCM authentication tag: changed or wrong key"
            ) from None
        except ValueError as exc:  # sm4.ParameterError, or pyca's for an AES-GCM nonce
            raise EnvelopeDecryptionError(f"unusable GCM parameters: {exc}") from None
    iv = params.native if params is not None else None
    if not isinstance(iv, bytes) or len(iv) != 16:
        raise EnvelopeDecryptionError("the CBC initialisation vector is missing or not 16 bytes")
    if not ciphertext or len(ciphertext) % 16:
        raise EnvelopeDecryptionError("the encrypted content is not a whole number of blocks")
    dec = Cipher(_block_cipher(cipher, key), modes.CBC(iv)).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    unpadder = PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise EnvelopeDecryptionError(
            "bad padding after decryption: wrong key or changed content"
        ) from None


# -- recipients --------------------------------------------------------------------------


def _issuer_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    return cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})


_OAEP_SHA256 = {
    "hash_algorithm": {"algorithm": "sha256"},
    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
}


def _wrap_alg_for(key_size: int) -> str:
    return "aes256_wrap" if key_size == 32 else "aes128_wrap"


def _shared_info(wrap_alg: str, kek_len: int, ukm: bytes | None) -> bytes:
    info: dict[str, object] = {
        "key_info": {"algorithm": cms.KeyEncryptionAlgorithmId(wrap_alg).dotted},
        "supp_pub_info": (kek_len * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        info["entity_u_info"] = ukm
    return _cms_asn1.EccCmsSharedInfo(info).dump()


def _kek(shared: bytes, hash_name: str, wrap_alg: str, ukm: bytes | None) -> bytes:
    kek_len = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}.get(wrap_alg)
    if kek_len is None:
        raise EnvelopeDecryptionError(f"unsupported key-wrap algorithm {wrap_alg}")
    return X963KDF(hash_algorithm(hash_name), kek_len,
                   _shared_info(wrap_alg, kek_len, ukm)).derive(shared)


_RSA_KEY_ENCRYPTION: dict[EncryptionScheme, dict[str, object]] = {
    EncryptionScheme.RSA_OAEP_SHA256: {"algorithm": "rsaes_oaep", "parameters": _OAEP_SHA256},
    # RFC 4055: OAEP with the default parameters (an empty SEQUENCE) is SHA-1 and MGF1-SHA-1;
    # loaded from DER because asn1crypto takes an empty value for an unset one
    EncryptionScheme.RSA_OAEP_SHA1: {"algorithm": "rsaes_oaep",
                                     "parameters": algos.RSAESOAEPParams.load(b"\x30\x00")},
    EncryptionScheme.RSA_PKCS1V15: {"algorithm": "rsaes_pkcs1v15", "parameters": None},
}


def _recipient_info(cert: x509.Certificate, cek: bytes, rsa_scheme: EncryptionScheme,
                    sm2_form: Sm2KeyTransport) -> cms.RecipientInfo:
    public = PublicKey.from_spki(cert.public_key.dump())
    key_type = public.algorithm.key_type
    if key_type is KeyType.RSA:
        return cms.RecipientInfo(name="ktri", value={
            "version": "v0",
            "rid": {"issuer_and_serial_number": _issuer_serial(cert)},
            "key_encryption_algorithm": _RSA_KEY_ENCRYPTION[rsa_scheme],
            "encrypted_key": public.encrypt(cek, rsa_scheme),
        })
    if key_type is KeyType.SM2:
        sm2_cipher = public.encrypt(cek, EncryptionScheme.SM2)
        bc = sm2_form is Sm2KeyTransport.BOUNCYCASTLE
        return cms.RecipientInfo(name="ktri", value={
            "version": "v0",
            "rid": {"issuer_and_serial_number": _issuer_serial(cert)},
            "key_encryption_algorithm": {
                "algorithm": oids.SM2_ENCRYPT_WITH_SM3 if bc else "sm2_encrypt"},
            "encrypted_key": sm2.asn1_to_c1c2c3(sm2_cipher) if bc else sm2_cipher,
        })
    if key_type is KeyType.EC:
        peer = public.raw
        ephemeral = ec.generate_private_key(peer.curve)
        shared = ephemeral.exchange(ec.ECDH(), peer)
        wrap_alg = _wrap_alg_for(len(cek))
        kek = _kek(shared, "sha256", wrap_alg, None)
        eph_spki = keys.PublicKeyInfo.load(PublicKey(ephemeral.public_key()).spki_der())
        return cms.RecipientInfo(name="kari", value={
            "version": "v3",
            "originator": cms.OriginatorIdentifierOrKey(name="originator_key", value=eph_spki),
            "key_encryption_algorithm": {
                "algorithm": "dh_single_pass_std_dh_sha256kdf",
                "parameters": cms.KeyEncryptionAlgorithm({"algorithm": wrap_alg}),
            },
            "recipient_encrypted_keys": [{
                "rid": cms.KeyAgreementRecipientIdentifier(
                    name="issuer_and_serial_number", value=_issuer_serial(cert)),
                "encrypted_key": keywrap.aes_key_wrap(kek, cek),
            }],
        })
    raise CmsBuildError(
        f"{public.algorithm.value} certificates cannot receive envelopes "
        f"({cert.subject.human_friendly})"
    )


def encrypt(
    content: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    cipher: ContentCipher = ContentCipher.SM4_CBC,
    flavour: Flavour = Flavour.RFC5652,
    authenticated: bool = False,
    rsa_scheme: EncryptionScheme = EncryptionScheme.RSA_OAEP_SHA256,
    sm2_form: Sm2KeyTransport = Sm2KeyTransport.GMT0010,
) -> bytes:
    """Encrypt ``content`` to every certificate in ``recipients``; the DER ContentInfo.

    ``authenticated`` writes RFC 5083 AuthEnvelopedData (GCM ciphers only; the tag in its
    ``mac`` field), which is what OpenSSL reads and writes for AES-GCM. ``rsa_scheme`` for RSA
    recipients: OAEP with SHA-256 by default; OAEP with SHA-1 for HSMs that offer no other
    (SoftHSM2); PKCS#1 v1.5 only for old peers. ``sm2_form`` for SM2 recipients: GM/T 0010
    by default; ``BOUNCYCASTLE`` for peers on BouncyCastle's CMS API, which knows no other."""
    if rsa_scheme not in _RSA_KEY_ENCRYPTION:
        raise CmsBuildError(f"{rsa_scheme.value} is not an RSA key-transport scheme")
    if not recipients:
        raise CmsBuildError("an envelope needs at least one recipient certificate")
    if authenticated and not cipher.is_gcm:
        raise CmsBuildError(f"AuthEnvelopedData needs a GCM cipher, not {cipher.value}")
    cek = secrets.token_bytes(cipher.key_size)
    infos = [_recipient_info(cert, cek, rsa_scheme, sm2_form) for cert in recipients]
    alg, ciphertext = _encrypt_content(cipher, cek, bytes(content))
    if authenticated:
        auth = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": content_type("data", flavour),
                "content_encryption_algorithm": alg,
                "encrypted_content": ciphertext[:-_TAG],
            },
            "mac": ciphertext[-_TAG:],
        })
        return cms.ContentInfo(
            {"content_type": "authenticated_enveloped_data", "content": auth}).dump()
    # RFC 5652 §6.1: version 2 when any recipient uses key agreement... v0 only for all-ktri v0
    version = "v2" if any(i.name == "kari" for i in infos) else "v0"
    enveloped = cms.EnvelopedData({
        "version": version,
        "recipient_infos": infos,
        "encrypted_content_info": {
            "content_type": content_type("data", flavour),
            "content_encryption_algorithm": alg,
            "encrypted_content": ciphertext,
        },
    })
    return cms.ContentInfo(
        {"content_type": content_type("enveloped_data", flavour), "content": enveloped}
    ).dump()


# -- opening -----------------------------------------------------------------------------


def load_enveloped(data: bytes) -> cms.EnvelopedData | cms.AuthEnvelopedData:
    """Parse a ContentInfo holding EnvelopedData or AuthEnvelopedData (DER or PEM, either OID
    family)."""
    from sscard.cms.parse import load_content_info

    info = load_content_info(data)
    kind = normalise(info["content_type"].native)
    if kind not in ("enveloped_data", "authenticated_enveloped_data"):
        raise CmsParseError(f"expected EnvelopedData, found {info['content_type'].native}")
    return info["content"]


def _rid_matches(rid: cms.Asn1Value, cert: x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        if ias["issuer"].dump() == cert.issuer.dump():
            return True
        try:  # RFC 5280 §7.1 comparison: asn1crypto refuses names it cannot prepare
            return bool(ias["issuer"] == cert.issuer)
        except ValueError:
            return False  # a name that cannot be compared names no certificate of ours
    if rid.name == "subject_key_identifier":
        return cert.key_identifier is not None and rid.chosen.native == cert.key_identifier
    if rid.name == "r_key_id":
        return (cert.key_identifier is not None
                and rid.chosen["subject_key_identifier"].native == cert.key_identifier)
    return False


def _sm2_cipher(alg: cms.KeyEncryptionAlgorithm, encrypted_key: bytes) -> bytes:
    """The SM2Cipher (DER) of an SM2 ktri in either form, so that every key handle (card,
    token, software) decrypts it the one way it knows."""
    if encrypted_key[:1] == b"\x30":
        return encrypted_key
    if alg["algorithm"].dotted == oids.SM2_ENCRYPT_WITH_SM3 and encrypted_key[:1] == b"\x04":
        try:
            return sm2.c1c2c3_to_asn1(encrypted_key)
        except CryptoError as exc:
            raise EnvelopeDecryptionError(f"the SM2 encrypted key: {exc}") from None
    raise EnvelopeDecryptionError(
        f"the SM2 encrypted key under {alg['algorithm'].dotted} is neither an SM2Cipher nor"
        " (under sm2encrypt-with-sm3) raw C1||C2||C3"
    )


def _ktri_scheme(alg: cms.KeyEncryptionAlgorithm) -> EncryptionScheme:
    name = alg["algorithm"].native
    if name == "sm2_encrypt" or alg["algorithm"].dotted == oids.SM2_ENCRYPT_WITH_SM3:
        return EncryptionScheme.SM2
    if name in ("rsaes_pkcs1v15", "rsa"):
        return EncryptionScheme.RSA_PKCS1V15
    if name == "rsaes_oaep":
        params = alg["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native if params.native else "sha1"
        mgf_hash = (params["mask_gen_algorithm"]["parameters"]["algorithm"].native
                    if params.native else "sha1")
        if hash_name != mgf_hash:
            raise EnvelopeDecryptionError("RSA-OAEP with different hash and MGF1 hash")
        if hash_name == "sha256":
            return EncryptionScheme.RSA_OAEP_SHA256
        if hash_name == "sha1":
            return EncryptionScheme.RSA_OAEP_SHA1
        raise EnvelopeDecryptionError(f"RSA-OAEP with {hash_name} is not supported")
    raise EnvelopeDecryptionError(f"unsupported key-transport algorithm {alg['algorithm'].dotted}")


def _open_kari(kari: cms.KeyAgreeRecipientInfo, encrypted_key: bytes, key: KeyHandle) -> bytes:
    if not isinstance(key, SoftwareKey):
        raise EnvelopeDecryptionError(
            f"ECDH key agreement needs a software key; {key.label} cannot agree keys"
        )
    private = key.private_key.raw
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise EnvelopeDecryptionError("the key-agreement recipient key is not an EC key")
    kea = kari["key_encryption_algorithm"]
    scheme = kea["algorithm"].native
    hash_name = _cms_asn1.KDF_HASH_BY_NAME.get(scheme)
    if hash_name is None:
        raise EnvelopeDecryptionError(f"unsupported key-agreement scheme {kea['algorithm'].dotted}")
    wrap = cms.KeyEncryptionAlgorithm.load(kea["parameters"].dump())
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise EnvelopeDecryptionError("only ephemeral-static ECDH (an originator key) is supported")
    orig = originator.chosen
    try:
        point = orig["public_key"].native
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, point)
    except (ValueError, TypeError) as exc:
        raise EnvelopeDecryptionError(f"the originator's public key is unusable: {exc}") from None
    shared = private.exchange(ec.ECDH(), peer)
    ukm = kari["ukm"].native
    kek = _kek(shared, hash_name, wrap["algorithm"].native, ukm)
    try:
        return keywrap.aes_key_unwrap(kek, encrypted_key)
    except keywrap.InvalidUnwrap:
        raise EnvelopeDecryptionError(
            "the wrapped content key does not unwrap: wrong key"
        ) from None


@dataclass(frozen=True)
class Opened:
    content: bytes
    content_type: str
    cipher: str


def decrypt(data: bytes, key: KeyHandle, certificate: x509.Certificate) -> Opened:
    """Open an envelope addressed to ``certificate`` with its private ``key``."""
    env = load_enveloped(data)
    if key.public_key().spki_der() != certificate.public_key.dump():
        raise CmsBuildError("the decryption key does not match the recipient certificate")
    cek: bytes | None = None
    for ri in env["recipient_infos"]:
        if ri.name == "ktri":
            ktri = ri.chosen
            if not _rid_matches(ktri["rid"], certificate):
                continue
            scheme = _ktri_scheme(ktri["key_encryption_algorithm"])
            encrypted_key = ktri["encrypted_key"].native
            if scheme is EncryptionScheme.SM2:
                encrypted_key = _sm2_cipher(ktri["key_encryption_algorithm"], encrypted_key)
            try:
                cek = key.decrypt(encrypted_key, scheme)
            except CryptoError as exc:
                raise EnvelopeDecryptionError(
                    f"the content key does not decrypt with this key: {exc}"
                ) from None
            break
        if ri.name == "kari":
            kari = ri.chosen
            for rek in kari["recipient_encrypted_keys"]:
                if _rid_matches(rek["rid"], certificate):
                    cek = _open_kari(kari, rek["encrypted_key"].native, key)
                    break
            if cek is not None:
                break
    if cek is None:
        raise NoMatchingRecipient(
            f"the envelope is not addressed to {certificate.subject.human_friendly} "
            f"(serial {certificate.serial_number:x})"
        )
    authenticated = isinstance(env, cms.AuthEnvelopedData)
    eci = env["auth_encrypted_content_info" if authenticated else "encrypted_content_info"]
    ciphertext = eci["encrypted_content"].native
    if ciphertext is None:
        raise CmsParseError("the envelope carries no encrypted content (detached is unsupported)")
    aad = b""
    if authenticated:
        name = eci["content_encryption_algorithm"]["algorithm"].native
        if name not in {c.value for c in ContentCipher if c.is_gcm}:
            raise EnvelopeDecryptionError(f"AuthEnvelopedData with {name}: only GCM is supported")
        ciphertext += env["mac"].native
        attrs = env["auth_attrs"]
        if not isinstance(attrs, core.Void):
            # RFC 5083 §2.2: the AAD is the DER of authAttrs with its SET OF tag
            aad = b"\x31" + attrs.dump()[1:]
    content = _decrypt_content(eci["content_encryption_algorithm"], cek, ciphertext, aad)
    return Opened(content, normalise(eci["content_type"].native),
                  eci["content_encryption_algorithm"]["algorithm"].native)
