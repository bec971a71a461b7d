"""Loading certificates, CSRs and CRLs from untrusted bytes: PEM or DER, never a crash.

asn1crypto parses lazily, so a structure that loads may still fail deep inside on first access.
Each loader forces a full parse here so that malformed input fails at the door, with an
``X509ParseError`` naming what was expected and what went wrong.
"""

from __future__ import annotations

from typing import Any, TypeVar

from asn1crypto import core, crl, csr, x509

from sscard import asn1 as _asn1  # noqa: F401  (registers SM OIDs)
from sscard.x509.errors import X509ParseError
from sscard.x509.pem import PemError, first_pem_block, is_pem, pem_blocks

T = TypeVar("T", bound=core.Asn1Value)

_PEM_TYPES = {
    x509.Certificate: ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"),
    csr.CertificationRequest: ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
    crl.CertificateList: ("X509 CRL",),
}
#: the PEM labels a certificate request may come under
CSR_PEM_TYPES = _PEM_TYPES[csr.CertificationRequest]
_WHAT = {x509.Certificate: "certificate", csr.CertificationRequest: "certificate request",
         crl.CertificateList: "CRL"}

#: far beyond any real certificate or CSR (a few KiB); parsing is linear but not free, and a
#: multi-megabyte "certificate" is an attack, not a credential
MAX_DER_BYTES = {x509.Certificate: 256 * 1024, csr.CertificationRequest: 256 * 1024}

# What asn1crypto raises on malformed input, deep inside.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeDecodeError, RecursionError)


def _load(data: bytes, spec: type[T], deep: bool = True) -> T:
    what = _WHAT.get(spec, spec.__name__)
    if not data:
        raise X509ParseError(f"empty input where a {what} was expected")
    try:
        kind, der = first_pem_block(data) if is_pem(data) else (None, data)
    except PemError as exc:
        raise X509ParseError(f"{what}: {exc}") from None
    kinds = _PEM_TYPES.get(spec)
    if kind is not None and kinds and kind not in kinds:
        raise X509ParseError(f"expected a PEM {kinds[0]}, found a PEM {kind}")
    limit = MAX_DER_BYTES.get(spec)
    if limit is not None and len(der) > limit:
        raise X509ParseError(f"a {what} of {len(der)} bytes is larger than any real one "
                             f"(limit {limit} bytes)")
    try:
        obj = spec.load(der, strict=True)
        if deep:
            obj.native  # noqa: B018  (forces the lazy parser over the whole structure)
    except _PARSE_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise X509ParseError(f"malformed {what}: {msg}") from None
    return obj


def load_certificate(data: bytes, *, deep: bool = True) -> x509.Certificate:
    """``deep=False``: every field is parsed except the extension values and the public key,
    which stay raw (a verifier reports a malformed one as why the certificate is invalid)."""
    if deep:
        return _load(data, x509.Certificate)
    cert = _load(data, x509.Certificate, deep=False)
    try:
        tbs = cert["tbs_certificate"]
        for key, *_spec in tbs._fields:
            field = tbs[key]
            if key == "extensions":
                for ext in field or ():
                    ext["extn_id"].native  # noqa: B018
                    ext["critical"].native  # noqa: B018
            elif key == "subject_public_key_info":
                field["algorithm"].native  # noqa: B018  (the key itself is read when used)
            else:
                field.native  # noqa: B018
        cert["signature_algorithm"].native  # noqa: B018
        cert["signature_value"].native  # noqa: B018
    except _PARSE_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise X509ParseError(f"malformed certificate: {msg}") from None
    return cert


def load_certificates(data: bytes, *, deep: bool = True) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one DER certificate (``deep`` as for
    :func:`load_certificate`)."""
    if not is_pem(data):
        return [load_certificate(data, deep=deep)]
    try:
        blocks = pem_blocks(data)
    except PemError as exc:
        raise X509ParseError(str(exc)) from None
    certs = [load_certificate(der, deep=deep) for kind, der in blocks if "CERTIFICATE" in kind]
    if not certs:
        raise X509ParseError("no certificate found in the PEM input")
    return certs


def load_csr(data: bytes) -> csr.CertificationRequest:
    return _load(data, csr.CertificationRequest)


def load_crl(data: bytes, deep: bool = True) -> crl.CertificateList:
    """``deep=False`` skips the full parse for very large CRLs that we produced ourselves.
    After the full parse (the check) a fresh, lazily parsed CRL is returned: asn1crypto walks
    every parsed part of a value for changes each time its encoding is read, and a validator
    reads a CRL's on every validation (a 20,000-entry CRL parsed through: ~8 ms each time)."""
    checked = _load(data, crl.CertificateList, deep=deep)
    if not deep:
        return checked
    return crl.CertificateList.load(bytes(checked.dump()), strict=True)


def load_any(data: bytes) -> x509.Certificate | csr.CertificationRequest | crl.CertificateList:
    """Certificate, CSR or CRL, whichever the input is."""
    errors = []
    specs: tuple[type[Any], ...] = (x509.Certificate, csr.CertificationRequest,
                                    crl.CertificateList)
    if is_pem(data):
        # the PEM type says which it is: the (large) text is decoded once, not three times
        try:
            kind = first_pem_block(data)[0]
        except PemError as exc:
            raise X509ParseError(str(exc)) from None
        specs = tuple(s for s in specs if kind in _PEM_TYPES[s]) or specs
    for spec in specs:
        try:
            return _load(data, spec)
        except X509ParseError as exc:
            errors.append(str(exc))
    raise X509ParseError("not a certificate, CSR or CRL: " + "; ".join(errors))
