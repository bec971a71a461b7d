"""Fuzz sscard.x509.parse.load_crl (CRLs fetched from distribution points) and the CRL
signature check. Allowed: X509ParseError; X509Error/CryptoError from the signature check."""

from __future__ import annotations

import _common

with _common.instrumented():
    import _pki

    from sscard.crypto.errors import CryptoError
    from sscard.x509.errors import X509Error, X509ParseError
    from sscard.x509.parse import load_crl
    from sscard.x509.verify import verify_crl_signature


def test_one_input(data: bytes) -> None:
    try:
        crl = load_crl(data)
    except X509ParseError:
        return
    crl.native  # noqa: B018
    try:
        verify_crl_signature(crl, _pki.pki().ca_cert)
    except (X509Error, CryptoError):
        pass


def seeds() -> list[bytes]:
    return [_pki.pki().crl_der]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
