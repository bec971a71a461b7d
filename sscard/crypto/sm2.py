"""SM2 (GB/T 32918): signatures with a distinguishing ID, public-key encryption, key handling.

Backed by OpenSSL 3 libcrypto (see ``_libcrypto``). Ciphertexts come in the two forms of GM/T 0009:
the ASN.1 ``SM2Cipher`` (SEQUENCE {x, y, hash C3, ciphertext C2}), which is what OpenSSL emits, and
raw ``C1||C3||C2`` with C1 an uncompressed point (what cards and GM/T 0016 structures use).
"""

from __future__ import annotations

import enum
import threading
from typing import Any

from asn1crypto import core
from asn1crypto import keys as asn1keys

from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs)
from sscard.crypto import oids
from sscard.crypto._libcrypto import ffi, last_error, lib, pkcs8_from_pkey, pkey_from_pkcs8
from sscard.crypto.errors import DecryptionError, InvalidKey, InvalidSignature
from sscard.crypto.hashes import sm3

DEFAULT_UID = b"1234567812345678"

# sm2p256v1 domain parameters (GB/T 32918.5), needed for Z = SM3(ENTL||ID||a||b||xG||yG||xA||yA)
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))


class CipherFormat(enum.Enum):
    ASN1 = "asn1"  # GM/T 0009 SM2Cipher
    C1C3C2 = "c1c3c2"  # raw, C1 = 04||x||y


class SM2Cipher(core.Sequence):
    """GM/T 0009-2012 §7.2 SM2Cipher."""

    _fields = [
        ("x_coordinate", core.Integer),
        ("y_coordinate", core.Integer),
        ("hash", core.OctetString),
        ("cipher_text", core.OctetString),
    ]


class SM2Signature(core.Sequence):
    _fields = [("r", core.Integer), ("s", core.Integer)]


def _check(ok: int, what: str, exc: type[Exception] = InvalidKey) -> None:
    if ok != 1:
        raise exc(f"{what}: {last_error()}")


def _owned_pkey(ptr: Any, what: str) -> Any:
    if ptr == ffi.NULL:
        raise InvalidKey(f"{what}: {last_error()}")
    return ffi.gc(ptr, lib.EVP_PKEY_free)


def _pctx(pkey: Any) -> Any:
    ctx = lib.EVP_PKEY_CTX_new(pkey, ffi.NULL)
    if ctx == ffi.NULL:
        raise InvalidKey(f"cannot use SM2 key: {last_error()}")
    return ffi.gc(ctx, lib.EVP_PKEY_CTX_free)


def _spki_der(point: bytes) -> bytes:
    info = asn1keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": asn1keys.ECDomainParameters(
                    name="named", value=oids.SM2_CURVE
                ),
            },
            "public_key": point,
        }
    )
    return info.dump()


#: the DER of an SM2 SubjectPublicKeyInfo up to its 65-byte uncompressed point
_SPKI_PREFIX = _spki_der(b"\x04" + bytes(64))[:-65]
#: OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS (EVP_PKEY_PUBLIC_KEY)
_SELECT_PUBLIC_KEY = 0x86


def is_point_spki(der: bytes) -> bool:
    """Whether ``der`` is the one encoding of an SM2 SubjectPublicKeyInfo: the fixed prefix
    (id-ecPublicKey, the SM2 curve) and an uncompressed point."""
    return len(der) == len(_SPKI_PREFIX) + 65 and der.startswith(_SPKI_PREFIX)


def z_value(public_point: bytes, uid: bytes = DEFAULT_UID) -> bytes:
    """Z_A of GB/T 32918.2 §5.5, for a 65-byte uncompressed public point."""
    if len(uid) * 8 > 0xFFFF:
        raise ValueError("SM2 user ID longer than 8191 bytes")
    entl = (len(uid) * 8).to_bytes(2, "big")
    return sm3(entl + uid + _CURVE_BYTES + public_point[1:])


def signature_digest(public_point: bytes, data: bytes, uid: bytes = DEFAULT_UID) -> bytes:
    """e = SM3(Z_A || M): what a card or HSM that signs digests is given."""
    return sm3(z_value(public_point, uid) + data)


def _point_from_cipher(x: int, y: int) -> bytes:
    if not (0 <= x < P and 0 <= y < P):
        raise DecryptionError("SM2 ciphertext: C1 coordinate out of range")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def asn1_to_c1c3c2(ciphertext: bytes) -> bytes:
    try:
        parsed = SM2Cipher.load(ciphertext, strict=True)
        x, y = parsed["x_coordinate"].native, parsed["y_coordinate"].native
        c3, c2 = parsed["hash"].native, parsed["cipher_text"].native
    except (ValueError, TypeError) as exc:
        raise DecryptionError(f"SM2 ciphertext is not a valid GM/T 0009 SM2Cipher: {exc}") from None
    if len(c3) != 32:
        raise DecryptionError(f"SM2 ciphertext: C3 must be 32 bytes, got {len(c3)}")
    if not c2:
        raise DecryptionError("SM2 ciphertext: C2 is empty")
    canonical = SM2Cipher(
        {"x_coordinate": x, "y_coordinate": y, "hash": c3, "cipher_text": c2}
    ).dump(force=True)
    if canonical != ciphertext:
        # OpenSSL itself accepts BER; a ciphertext has one valid encoding, so refuse the others
        raise DecryptionError("SM2 ciphertext is not DER (non-minimal length or integer)")
    return _point_from_cipher(x, y) + c3 + c2


def c1c3c2_to_asn1(ciphertext: bytes) -> bytes:
    if len(ciphertext) < 97 or ciphertext[0] != 4:
        raise DecryptionError(
            "SM2 C1C3C2 ciphertext must start with an uncompressed point (04) and be >= 97 bytes"
        )
    x = int.from_bytes(ciphertext[1:33], "big")
    y = int.from_bytes(ciphertext[33:65], "big")
    return SM2Cipher(
        {"x_coordinate": x, "y_coordinate": y, "hash": ciphertext[65:97],
         "cipher_text": ciphertext[97:]}
    ).dump()


def asn1_to_c1c2c3(ciphertext: bytes) -> bytes:
    """SM2Cipher to raw C1||C2||C3, the order of the 2010 draft that BouncyCastle's "SM2"
    cipher (and so its CMS) still uses."""
    raw = asn1_to_c1c3c2(ciphertext)
    return raw[:65] + raw[97:] + raw[65:97]


def c1c2c3_to_asn1(ciphertext: bytes) -> bytes:
    if len(ciphertext) < 98 or ciphertext[0] != 4:
        raise DecryptionError(
            "SM2 C1C2C3 ciphertext must start with an uncompressed point (04) and be >= 98 bytes"
        )
    return c1c3c2_to_asn1(ciphertext[:65] + ciphertext[-32:] + ciphertext[65:-32])


_importers = threading.local()


def _importer() -> Any:
    """This thread's EVP_PKEY_CTX for importing public points, initialised once: fetching
    the SM2 key manager for a new context on every key cost a tenth of the import."""
    ctx = getattr(_importers, "ctx", None)
    if ctx is None:
        ctx = ffi.gc(lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL),
                     lib.EVP_PKEY_CTX_free)
        _check(lib.EVP_PKEY_fromdata_init(ctx), "SM2 public key import")
        _importers.ctx = ctx
    return ctx


class SM2PublicKey:
    """An SM2 public key on sm2p256v1."""

    __slots__ = ("_pkey", "point")

    def __init__(self, pkey: Any, point: bytes) -> None:
        self._pkey = pkey
        self.point = point

    @classmethod
    def from_point(cls, point: bytes) -> SM2PublicKey:
        if len(point) != 65 or point[0] != 4:
            raise InvalidKey("SM2 public key must be a 65-byte uncompressed point")
        # built from the point itself (EVP_PKEY_fromdata, which refuses a point off the
        # curve as d2i_PUBKEY does): OpenSSL 3's DER decoder chain costs ~2.5 times as much,
        # and a CA reads one public key per certificate it issues
        bld = lib.OSSL_PARAM_BLD_new()
        if bld == ffi.NULL:
            raise InvalidKey(f"SM2 public key: {last_error()}")
        try:
            _check(lib.OSSL_PARAM_BLD_push_utf8_string(bld, b"group", b"SM2", 0), "SM2 group")
            _check(lib.OSSL_PARAM_BLD_push_octet_string(bld, b"pub", point, len(point)),
                   "SM2 public point")
            params = lib.OSSL_PARAM_BLD_to_param(bld)
        finally:
            lib.OSSL_PARAM_BLD_free(bld)
        if params == ffi.NULL:
            raise InvalidKey(f"SM2 public key: {last_error()}")
        try:
            out = ffi.new("EVP_PKEY **")
            if lib.EVP_PKEY_fromdata(_importer(), out, _SELECT_PUBLIC_KEY, params) != 1:
                _importers.ctx = None  # a fresh context for the next key, whatever this left
                raise InvalidKey(f"not an SM2 public key: {last_error()}")
        finally:
            lib.OSSL_PARAM_free(params)
        return cls(_owned_pkey(out[0], "SM2 public key import"), bytes(point))

    @classmethod
    def from_spki(cls, der: bytes) -> SM2PublicKey:
        if is_point_spki(der):
            return cls.from_point(der[len(_SPKI_PREFIX):])
        buf = ffi.new("unsigned char[]", der)
        pp = ffi.new("const unsigned char **", buf)
        pkey = _owned_pkey(
            lib.d2i_PUBKEY(ffi.NULL, pp, len(der)), "not an SM2 SubjectPublicKeyInfo"
        )
        if not lib.EVP_PKEY_is_a(pkey, b"SM2"):
            raise InvalidKey("SubjectPublicKeyInfo does not hold an SM2 key")
        return cls(pkey, _public_point(pkey))

    def spki_der(self) -> bytes:
        return _spki_der(self.point)

    def verify(self, signature: bytes, data: bytes, uid: bytes = DEFAULT_UID) -> None:
        """Raise InvalidSignature unless ``signature`` (DER r,s) signs ``data`` under ``uid``."""
        mctx = ffi.gc(lib.EVP_MD_CTX_new(), lib.EVP_MD_CTX_free)
        pctx = _pctx(self._pkey)
        _check(lib.EVP_PKEY_CTX_set1_id(pctx, uid, len(uid)), "SM2 set ID")
        lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
        _check(lib.EVP_DigestVerifyInit(mctx, ffi.NULL, lib.EVP_sm3(), ffi.NULL, self._pkey),
               "SM2 verify init")
        ok = lib.EVP_DigestVerify(mctx, signature, len(signature), data, len(data))
        lib.EVP_MD_CTX_set_pkey_ctx(mctx, ffi.NULL)
        if ok != 1:
            lib.ERR_clear_error()
            raise InvalidSignature("SM2 signature does not verify")

    def verify_digest(self, signature: bytes, digest: bytes) -> None:
        """Verify a signature over e = SM3(Z||M) computed by the caller."""
        pctx = _pctx(self._pkey)
        _check(lib.EVP_PKEY_verify_init(pctx), "SM2 verify init")
        if lib.EVP_PKEY_verify(pctx, signature, len(signature), digest, len(digest)) != 1:
            lib.ERR_clear_error()
            raise InvalidSignature("SM2 signature does not verify")

    def encrypt(self, plaintext: bytes, fmt: CipherFormat = CipherFormat.ASN1) -> bytes:
        if not plaintext:
            raise ValueError("SM2 cannot encrypt an empty message")
        pctx = _pctx(self._pkey)
        _check(lib.EVP_PKEY_encrypt_init(pctx), "SM2 encrypt init")
        outlen = ffi.new("size_t *")
        _check(lib.EVP_PKEY_encrypt(pctx, ffi.NULL, outlen, plaintext, len(plaintext)),
               "SM2 encrypt")
        out = ffi.new("unsigned char[]", outlen[0])
        _check(lib.EVP_PKEY_encrypt(pctx, out, outlen, plaintext, len(plaintext)), "SM2 encrypt")
        der = bytes(ffi.buffer(out, outlen[0]))
        return der if fmt is CipherFormat.ASN1 else asn1_to_c1c3c2(der)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)


def _public_point(pkey: Any) -> bytes:
    buf = ffi.new("unsigned char[133]")
    n = ffi.new("size_t *")
    _check(lib.EVP_PKEY_get_octet_string_param(pkey, b"pub", buf, 133, n), "SM2 public point")
    return bytes(ffi.buffer(buf, n[0]))


class SM2PrivateKey:
    """An SM2 private key on sm2p256v1; the scalar stays inside libcrypto."""

    __slots__ = ("_default_z", "_pkey", "_public", "_signers")

    def __init__(self, pkey: Any) -> None:
        self._pkey = pkey
        self._public = SM2PublicKey(pkey, _public_point(pkey))
        self._default_z = z_value(self._public.point)
        self._signers = threading.local()

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
        ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
        _check(lib.EVP_PKEY_keygen_init(ctx), "SM2 keygen init")
        out = ffi.new("EVP_PKEY **")
        _check(lib.EVP_PKEY_generate(ctx, out), "SM2 key generation")
        return cls(_owned_pkey(out[0], "SM2 key generation"))

    @classmethod
    def from_pkcs8(cls, der: bytes) -> SM2PrivateKey:
        """Load an unencrypted PKCS#8 PrivateKeyInfo (id-ecPublicKey, curve sm2p256v1)."""
        pkey = pkey_from_pkcs8(der, InvalidKey)
        if not lib.EVP_PKEY_is_a(pkey, b"SM2"):
            raise InvalidKey("PKCS#8 does not hold an SM2 key")
        return cls(pkey)

    @classmethod
    def from_private_value(cls, d: int) -> SM2PrivateKey:
        if not 1 <= d < N - 1:
            raise InvalidKey("SM2 private scalar out of range [1, n-2]")
        ec_key = asn1keys.ECPrivateKey(
            {
                "version": "ecPrivkeyVer1",
                "private_key": d,
                "parameters": asn1keys.ECDomainParameters(name="named", value=oids.SM2_CURVE),
            }
        )
        info = asn1keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {
                    "algorithm": "ec",
                    "parameters": asn1keys.ECDomainParameters(
                        name="named", value=oids.SM2_CURVE
                    ),
                },
                "private_key": ec_key,
            }
        )
        # OpenSSL derives the public point when the encoding omits it; load twice so that the
        # re-encoded PKCS#8 carries the point, as OpenSSL's own keys do.
        point = cls.from_pkcs8(info.dump()).public_key().point
        ec_key["public_key"] = point
        info["private_key"] = ec_key
        return cls.from_pkcs8(info.dump())

    def pkcs8_der(self) -> bytes:
        """Unencrypted PKCS#8; callers must encrypt it before it touches a disk."""
        return pkcs8_from_pkey(self._pkey, InvalidKey)

    def private_value(self) -> int:
        """The scalar d; for escrow and card import only, never for logging."""
        bn = ffi.new("void **")
        _check(lib.EVP_PKEY_get_bn_param(self._pkey, b"priv", bn), "SM2 private scalar")
        buf = ffi.new("unsigned char[32]")
        lib.BN_bn2binpad(ffi.cast("BIGNUM *", bn[0]), buf, 32)
        lib.BN_clear_free(ffi.cast("BIGNUM *", bn[0]))
        return int.from_bytes(bytes(buf), "big")

    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(self, data: bytes, uid: bytes = DEFAULT_UID) -> bytes:
        """DER SEQUENCE {r, s} over SM3(Z_A || data)."""
        # the same signature as EVP_DigestSign with the ID set, but Z_A (fixed for this key and
        # the default ID) is computed once, and the signing context is set up once per thread:
        # a CA signs every certificate with one key, and the per-call context setup held the
        # GIL for about a twentieth of the signature's time
        z = self._default_z if uid == DEFAULT_UID else z_value(self._public.point, uid)
        return self.sign_digest(sm3(z + data))

    def _signer(self) -> Any:
        """This thread's signing context: an EVP_PKEY_CTX may not be shared between threads,
        and may be used for many signatures once initialised."""
        pctx = getattr(self._signers, "pctx", None)
        if pctx is None:
            pctx = _pctx(self._pkey)
            _check(lib.EVP_PKEY_sign_init(pctx), "SM2 sign init")
            self._signers.pctx = pctx
        return pctx

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign e = SM3(Z||M) computed by the caller (as a card's PSO CDS does)."""
        if len(digest) != 32:
            raise ValueError("SM2 digest must be 32 bytes (SM3)")
        siglen = ffi.new("size_t *", 80)
        sig = ffi.new("unsigned char[80]")
        _check(lib.EVP_PKEY_sign(self._signer(), sig, siglen, digest, 32), "SM2 sign")
        return ffi.buffer(sig, siglen[0])[:]

    def decrypt(self, ciphertext: bytes, fmt: CipherFormat = CipherFormat.ASN1) -> bytes:
        der = c1c3c2_to_asn1(ciphertext) if fmt is CipherFormat.C1C3C2 else ciphertext
        if fmt is CipherFormat.ASN1:
            asn1_to_c1c3c2(der)  # strict structural check first, for a precise message
        pctx = _pctx(self._pkey)
        _check(lib.EVP_PKEY_decrypt_init(pctx), "SM2 decrypt init")
        outlen = ffi.new("size_t *")
        if lib.EVP_PKEY_decrypt(pctx, ffi.NULL, outlen, der, len(der)) != 1:
            lib.ERR_clear_error()
            raise DecryptionError("SM2 ciphertext rejected: malformed SM2Cipher")
        out = ffi.new("unsigned char[]", max(outlen[0], 1))
        if lib.EVP_PKEY_decrypt(pctx, out, outlen, der, len(der)) != 1:
            detail = last_error()
            what = ("C1 is not a valid curve point" if "point" in detail
                    else "C3 does not match (wrong key or altered ciphertext)")
            raise DecryptionError(f"SM2 decryption failed: {what}")
        return bytes(ffi.buffer(out, outlen[0]))
