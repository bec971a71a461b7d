"""Binding to the system's OpenSSL 3 libcrypto for SM2.

pyca/cryptography has SM3 and SM4 but no SM2 curve, and the SM2 bindings on PyPI either lack
the distinguishing-ID and encryption APIs (tongsuopy) or sign several times slower than
OpenSSL (gmssl_pyx, pure-Python gmssl); see docs/crypto-backends.md for the measurements.
So SM2 goes straight to the libcrypto that the ``openssl`` command line itself uses: the same
code, hence the same speed and byte-for-byte interoperability. The binding is cffi in ABI mode
(no compiler needed), kept to the handful of EVP calls that SM2 needs.
"""

from __future__ import annotations

import ctypes.util
from typing import Any

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    typedef struct evp_pkey_st EVP_PKEY;
    typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
    typedef struct evp_md_ctx_st EVP_MD_CTX;
    typedef struct evp_md_st EVP_MD;
    typedef struct evp_cipher_st EVP_CIPHER;
    typedef struct bio_st BIO;
    typedef struct bio_method_st BIO_METHOD;
    typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
    typedef struct ossl_param_st OSSL_PARAM;
    typedef int pem_password_cb(char *buf, int size, int rwflag, void *userdata);

    unsigned long OpenSSL_version_num(void);
    const char *OpenSSL_version(int type);

    unsigned long ERR_get_error(void);
    void ERR_error_string_n(unsigned long e, char *buf, size_t len);
    void ERR_clear_error(void);

    EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name,
                                             const char *propquery);
    EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, void *e);
    EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
                                             const char *propquery);
    void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_generate(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
    int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);

    void EVP_PKEY_free(EVP_PKEY *pkey);
    int EVP_PKEY_up_ref(EVP_PKEY *pkey);
    int EVP_PKEY_get_bn_param(const EVP_PKEY *pkey, const char *key_name, void **bn);
    int EVP_PKEY_get_octet_string_param(const EVP_PKEY *pkey, const char *key_name,
                                        unsigned char *buf, size_t max_buf_sz,
                                        size_t *out_len);
    int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
    int EVP_PKEY_get_id(const EVP_PKEY *pkey);
    int EVP_PKEY_set_type(EVP_PKEY *pkey, int type);

    EVP_PKEY *d2i_PrivateKey(int type, EVP_PKEY **a, const unsigned char **pp, long length);
    EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **a, const unsigned char **pp, long length);
    EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);
    int i2d_PUBKEY(const EVP_PKEY *a, unsigned char **pp);
    int i2d_PrivateKey(const EVP_PKEY *a, unsigned char **pp);

    typedef struct pkcs8_priv_key_info_st PKCS8_PRIV_KEY_INFO;
    PKCS8_PRIV_KEY_INFO *EVP_PKEY2PKCS8(const EVP_PKEY *pkey);
    EVP_PKEY *EVP_PKCS82PKEY(const PKCS8_PRIV_KEY_INFO *p8);
    int i2d_PKCS8_PRIV_KEY_INFO(const PKCS8_PRIV_KEY_INFO *a, unsigned char **pp);
    PKCS8_PRIV_KEY_INFO *d2i_PKCS8_PRIV_KEY_INFO(PKCS8_PRIV_KEY_INFO **a,
                                                 const unsigned char **pp, long length);
    void PKCS8_PRIV_KEY_INFO_free(PKCS8_PRIV_KEY_INFO *a);

    EVP_MD_CTX *EVP_MD_CTX_new(void);
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
    void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
    const EVP_MD *EVP_sm3(void);
    int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                           void *e, EVP_PKEY *pkey);
    int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                       const unsigned char *tbs, size_t tbslen);
    int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                             void *e, EVP_PKEY *pkey);
    int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                         const unsigned char *tbs, size_t tbslen);

    int EVP_PKEY_sign_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_sign(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
                      const unsigned char *tbs, size_t tbslen);
    int EVP_PKEY_verify_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_verify(EVP_PKEY_CTX *ctx, const unsigned char *sig, size_t siglen,
                        const unsigned char *tbs, size_t tbslen);
    int EVP_PKEY_encrypt_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_encrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                         const unsigned char *in, size_t inlen);
    int EVP_PKEY_decrypt_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_decrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                         const unsigned char *in, size_t inlen);

    int EVP_PKEY_fromdata_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_fromdata(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey, int selection,
                          OSSL_PARAM params[]);

    typedef struct ossl_param_bld_st OSSL_PARAM_BLD;
    typedef struct bignum_st BIGNUM;
    OSSL_PARAM_BLD *OSSL_PARAM_BLD_new(void);
    int OSSL_PARAM_BLD_push_utf8_string(OSSL_PARAM_BLD *bld, const char *key,
                                        const char *buf, size_t bsize);
    int OSSL_PARAM_BLD_push_octet_string(OSSL_PARAM_BLD *bld, const char *key,
                                         const void *buf, size_t bsize);
    int OSSL_PARAM_BLD_push_BN(OSSL_PARAM_BLD *bld, const char *key, const BIGNUM *bn);
    OSSL_PARAM *OSSL_PARAM_BLD_to_param(OSSL_PARAM_BLD *bld);
    void OSSL_PARAM_BLD_free(OSSL_PARAM_BLD *bld);
    void OSSL_PARAM_free(OSSL_PARAM *params);
    BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
    int BN_bn2binpad(const BIGNUM *a, unsigned char *to, int tolen);
    void BN_clear_free(BIGNUM *a);

    void CRYPTO_free(void *ptr, const char *file, int line);

    const BIO_METHOD *BIO_s_mem(void);
    BIO *BIO_new(const BIO_METHOD *type);
    BIO *BIO_new_mem_buf(const void *buf, int len);
    long BIO_ctrl(BIO *bp, int cmd, long larg, void *parg);
    int BIO_free(BIO *a);
    const EVP_CIPHER *EVP_aes_256_cbc(void);
    int PEM_write_bio_PKCS8PrivateKey(BIO *bp, const EVP_PKEY *x, const EVP_CIPHER *enc,
                                      const char *kstr, int klen, pem_password_cb *cb,
                                      void *u);
    int i2d_PKCS8PrivateKey_bio(BIO *bp, const EVP_PKEY *x, const EVP_CIPHER *enc,
                                const char *kstr, int klen, pem_password_cb *cb, void *u);
    EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u);
    EVP_PKEY *d2i_PKCS8PrivateKey_bio(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u);
    """
)

_path = ctypes.util.find_library("crypto") or "libcrypto.so.3"
lib: Any = ffi.dlopen(_path)

if lib.OpenSSL_version_num() < 0x30000000:
    raise ImportError(
        f"SM2 needs OpenSSL 3 libcrypto; found {ffi.string(lib.OpenSSL_version(0)).decode()}"
    )

EVP_PKEY_KEYPAIR = 0x87  # OSSL_KEYMGMT_SELECT_KEYPAIR | DOMAIN_PARAMETERS
EVP_PKEY_PUBLIC_KEY = 0x86


BIO_CTRL_INFO = 3


def bio_bytes(bio: Any) -> bytes:
    """The contents of a memory BIO."""
    pp = ffi.new("char **")
    n = lib.BIO_ctrl(bio, BIO_CTRL_INFO, 0, pp)
    return bytes(ffi.buffer(pp[0], n))


def version() -> str:
    return str(ffi.string(lib.OpenSSL_version(0)).decode())


def last_error() -> str:
    """Drain OpenSSL's error queue into one message (the newest reason last)."""
    messages = []
    buf = ffi.new("char[256]")
    while True:
        code = lib.ERR_get_error()
        if not code:
            break
        lib.ERR_error_string_n(code, buf, 256)
        messages.append(ffi.string(buf).decode(errors="replace"))
    return "; ".join(messages) or "unknown OpenSSL error"


def openssl_free(ptr: Any) -> None:
    lib.CRYPTO_free(ptr, ffi.NULL, 0)


def pkey_from_pkcs8(der: bytes, error: type[Exception]) -> Any:
    """An owned EVP_PKEY from unencrypted PKCS#8 DER; ``error`` is raised with the reason."""
    buf = ffi.new("unsigned char[]", der)
    pp = ffi.new("const unsigned char **", buf)
    p8 = lib.d2i_PKCS8_PRIV_KEY_INFO(ffi.NULL, pp, len(der))
    if p8 == ffi.NULL:
        raise error(f"not a PKCS#8 private key: {last_error()}")
    try:
        pkey = lib.EVP_PKCS82PKEY(p8)
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)
    if pkey == ffi.NULL:
        raise error(f"PKCS#8 holds no usable key: {last_error()}")
    return ffi.gc(pkey, lib.EVP_PKEY_free)


def pkcs8_from_pkey(pkey: Any, error: type[Exception]) -> bytes:
    """Unencrypted PKCS#8 DER of an EVP_PKEY, as OpenSSL encodes it."""
    p8 = lib.EVP_PKEY2PKCS8(pkey)
    if p8 == ffi.NULL:
        raise error(f"cannot encode key: {last_error()}")
    try:
        out = ffi.new("unsigned char **")
        n = lib.i2d_PKCS8_PRIV_KEY_INFO(p8, out)
        if n <= 0:
            raise error(f"cannot encode key: {last_error()}")
        der = bytes(ffi.buffer(out[0], n))
        openssl_free(out[0])
        return der
    finally:
        lib.PKCS8_PRIV_KEY_INFO_free(p8)
