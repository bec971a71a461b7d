"""The C declarations of sscard.crypto._libcrypto, and the builder of its compiled form.

cffi's ABI mode parses C declarations with pycparser when ``cdef`` is called: about a third of
a command's start-up. So the declarations are compiled once, ahead of time, into
``_libcrypto_ffi.py`` (cffi's out-of-line ABI mode: plain Python, no compiler, no pycparser at
run time), which is committed; after changing ``CDEF`` run

    python -m sscard.crypto._libcrypto_cdef

and commit the regenerated module (tests/crypto/test_libcrypto_ffi.py holds the two together).
"""

from __future__ import annotations

from pathlib import Path

CDEF = """
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

MODULE = "sscard.crypto._libcrypto_ffi"
TARGET = Path(__file__).with_name("_libcrypto_ffi.py")


def emit(target: Path = TARGET) -> None:
    """Write the compiled declarations to ``target`` (cffi's out-of-line ABI module)."""
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE, None)
    builder.emit_python_code(str(target))
    generated = target.read_text()
    target.write_text("# ruff: noqa  (generated by python -m sscard.crypto._libcrypto_cdef)\n"
                      + generated)


if __name__ == "__main__":
    emit()
