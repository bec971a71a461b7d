"""Fuzz sscard.x509.parse.load_certificate (PEM or DER from anywhere: uploads, cards, CMS).

Allowed: X509ParseError. A certificate that loads must be fully usable: its native form, its
subject as text, and its public key (or a CryptoError naming why the key is unusable)."""

from __future__ import annotations

import _common

with _common.instrumented():
    import _pki

    from sscard.crypto.asymmetric import PublicKey
    from sscard.crypto.errors import CryptoError
    from sscard.x509.errors import X509ParseError
    from sscard.x509.names import format_name
    from sscard.x509.parse import load_certificate
    from sscard.x509.pem import der_to_pem


def test_one_input(data: bytes) -> None:
    try:
        cert = load_certificate(data)
    except X509ParseError:
        return
    cert.native  # noqa: B018
    format_name(cert.subject)
    format_name(cert.issuer)
    try:
        PublicKey.from_spki(cert.public_key.dump())
    except (CryptoError, ValueError):
        pass


def seeds() -> list[bytes]:
    p = _pki.pki()
    return [p.ca_cert.dump(), p.leaf_cert.dump(), p.tsa_cert.dump(),
            der_to_pem(p.leaf_cert.dump(), "CERTIFICATE")]


if __name__ == "__main__":
    _common.main(test_one_input, seeds)
