"""Fuzz sscard.x509.parse.load_csr and the proof-of-possession check the CA and RA run on
every enrollment request.

Allowed: X509ParseError from the parser; X509Error or CryptoError (InvalidSignature,
UnsupportedAlgorithm, InvalidKey) from verify_csr."""

from __future__ import annotations

import _common

with _common.instrumented():
    import _pki

    from sscard.crypto.errors import CryptoError
    from sscard.x509.errors import X509Error, X509ParseError
    from sscard.x509.parse import load_csr
    from sscard.x509.pem import der_to_pem
    from sscard.x509.verify import verify_csr


def test_one_input(data: bytes) -> None:
    try:
        request = load_csr(data)
    except X509ParseError:
        return
    request.native  # noqa: B018
    try:
        verify_csr(request)
    except (X509Error, CryptoError):
        pass


def seeds() -> list[bytes]:
    p = _pki.pki()
    return [p.csr_der, der_to_pem(p.csr_der, "CERTIFICATE REQUEST")]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
