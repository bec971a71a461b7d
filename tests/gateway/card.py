"""An emulated social security card with an on-card SM2 key and a certificate from the test CA,
reachable in-process or through pcscd (vpcd), for the cardholder-authentication tests."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from asn1crypto import x509

from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.transport import Transport
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.sm2 import SM2PublicKey
from sscard.emulator.testkeys import KeyId
from sscard.gateway.config import CARDHOLDER_SIGN_POLICY
from sscard.x509.builder import CertificateBuilder
from sscard.x509.extensions import key_identifier
from sscard.x509.names import parse_name
from tests.cms.pki import NOW, Issued

PIN = "123456"
HOLDER_SSN = "111111198101011110"  # the emulator's sample holder, 张三


def personalise(card: Transport, psam: Transport, ca: Issued,
                extra: Sequence[tuple[str, Any, bool]] = ()) -> x509.Certificate:
    """Generate the card's signing key (after external authentication, as issuing staff do),
    certify it (with ``extra`` extensions, e.g. where its revocation is published) and write
    the certificate to the card; returns the certificate."""
    client = CardClient(card)
    client.connect()
    psam.connect()
    try:
        client.external_authenticate(KeyId.UPDATE, PsamAuthenticator(psam))
        point = client.generate_signing_key()
        public = PublicKey(SM2PublicKey.from_point(point))
        builder = (
            CertificateBuilder()
            .subject(parse_name(f"CN=张三,serialNumber={HOLDER_SSN},O=人社厅,C=CN"))
            .issuer(ca.cert.subject)
            .public_key(public)
            .serial_number(secrets.randbits(63))
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=365))
            .add_extension("key_identifier", key_identifier(public))
            .add_extension("authority_key_identifier", {"key_identifier": ca.ski})
            .add_extension("key_usage", {"digital_signature", "non_repudiation"}, True)
            .add_extension("social_insurance_number", HOLDER_SSN)
            .add_extension("certificate_policies",
                           [{"policy_identifier": CARDHOLDER_SIGN_POLICY}])
        )
        for name, value, critical in extra:
            builder = builder.add_extension(name, value, critical)
        cert = builder.sign(ca.key)
        client.write_certificate("sign", cert.dump())
        return cert
    finally:
        client.close()
        psam.disconnect()
