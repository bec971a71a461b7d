"""The gateway test rig: an SM2 PKI for signers, cardholders and business systems, an EC PKI
for the TLS side (Python's ssl does not do SM2 TLS), the project's TSA in-process, and the
gateway served by a real threaded HTTP server (plain, and with mutual TLS) on free ports."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from ca.tsa import FileSerialCounter, TimeStampAuthority
from sscard.gateway.audit import MemoryRecorder
from sscard.gateway.client import GatewayClient
from sscard.gateway.config import (
    BUSINESS_SYSTEM_POLICY,
    CARDHOLDER_ENCRYPT_POLICY,
    CARDHOLDER_SIGN_POLICY,
    GatewayConfig,
    GatewayKey,
    SystemPolicy,
    fingerprint,
)
from sscard.gateway.service import create_app
from sscard.x509.pem import der_to_pem
from tests.cms.pki import NOW, Issued, Pki, make_ca, make_crl, make_leaf, make_pki

CLIENT_EKU = ["client_auth"]


def policies(*oids: str) -> list[tuple[str, Any, bool]]:
    """The certificatePolicies extension, as make_leaf's ``extra`` takes it."""
    return [("certificate_policies", [{"policy_identifier": o} for o in oids], False)]


def business_system(subject: str, issuer: Issued, algorithm: str = "sm2",
                    eku: list[str] | None = CLIENT_EKU) -> Issued:
    """A certificate of the business-system profile (policy and clientAuth)."""
    return make_leaf(subject, issuer, algorithm, eku=eku, extra=policies(BUSINESS_SYSTEM_POLICY))


def cardholder(subject: str, issuer: Issued, ssn: str) -> Issued:
    return make_leaf(subject, issuer, ssn=ssn, extra=policies(CARDHOLDER_SIGN_POLICY))


def cardholder_encryption(issuer: Issued) -> Issued:
    return make_leaf("CN=张三,serialNumber=350102199001011234,C=CN", issuer,
                     key_usage=("key_encipherment", "data_encipherment"),
                     ssn="350102199001011234", extra=policies(CARDHOLDER_ENCRYPT_POLICY))
#: the apps the rig serves (tests reach the live challenge store through them)
LIVE_APPS: list[Flask] = []


@dataclass
class Rig:
    pki: Pki
    tls_root: Issued
    systems: dict[str, Issued]
    extra: dict[str, Issued]
    hr_sign: Issued
    employment_enc: Issued
    revoked_person: Issued
    cardholder: Issued
    revoked_system: Issued
    outsider: Issued
    tsa: TimeStampAuthority
    config: GatewayConfig
    recorder: MemoryRecorder
    url: str
    tls_url: str
    files: Path

    def client(self, system: str = "employment") -> GatewayClient:
        s = self.systems[system]
        return GatewayClient(self.url, key=s.key, certificate=s.cert)


class ServerThread:
    def __init__(self, app: object, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app,  # type: ignore[arg-type]
                                                  threaded=True, ssl_context=ssl_context)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _pem(path: Path, *certs: Issued) -> Path:
    path.write_bytes(b"".join(der_to_pem(c.cert.dump(), "CERTIFICATE") for c in certs))
    return path


def _key_pem(path: Path, issued: Issued) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(issued.key.private_key.raw.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    files = tmp_path_factory.mktemp("gateway")
    pki = make_pki("sm2")
    ca = pki.ca
    systems = {
        "employment": business_system("CN=employment,O=就业登记系统,C=CN", ca),
        "fund": business_system("CN=fund,O=基金监管系统,C=CN", ca),
        "unregistered": business_system("CN=unregistered,O=x,C=CN", ca),
        "no-client-eku": business_system("CN=employment,O=wrong eku,C=CN", ca,
                                         eku=["email_protection"]),
    }
    # registered for 'employment' (fingerprints), each wrong or right in another way
    extra = {
        "employment-no-policy": make_leaf("CN=employment,O=no policy,C=CN", ca,
                                          eku=CLIENT_EKU),
        "employment-no-eku": business_system("CN=employment,O=no eku,C=CN", ca, eku=None),
        "employment-renamed": business_system("CN=就业登记系统二号机,O=x,C=CN", ca),
        # the integration guide's examples sign with it by hand (ECDSA)
        "employment-p256": business_system("CN=employment,O=就业登记系统,C=CN", ca, "ec-p256"),
    }
    revoked_system = business_system("CN=employment,O=revoked,C=CN", ca)
    revoked_person = cardholder("CN=赵六,serialNumber=350102199505055678,C=CN", ca,
                                "350102199505055678")
    person = cardholder("CN=张三,serialNumber=350102199001011234,O=人社厅,C=CN", ca,
                        "350102199001011234")
    outsider_root = make_ca("CN=Outsider Root,C=CN")
    outsider = business_system("CN=employment,O=outsider,C=CN", outsider_root)
    hr_sign = make_leaf("CN=人社厅业务签名,O=人社厅,C=CN", ca)
    employment_enc = make_leaf("CN=employment-enc,O=就业登记系统,C=CN", ca,
                               key_usage=("key_encipherment", "data_encipherment"))
    tsa_leaf = make_leaf("CN=Gateway Test TSA,C=CN", ca, key_usage=("digital_signature",),
                         eku=["time_stamping"], critical_eku=True)
    tsa = TimeStampAuthority(tsa_leaf.key, tsa_leaf.cert, FileSerialCounter(files / "serial"),
                             chain=(ca.cert,))

    # the TLS side: EC root -> EC CA -> server (127.0.0.1) and a client for 'employment'
    tls_root = make_ca("CN=Gateway TLS Root,C=CN", algorithm="ec-p256")
    tls_ca = make_ca("CN=Gateway TLS CA,C=CN", tls_root, algorithm="ec-p256")
    server = _tls_server_cert(tls_ca)
    tls_client = business_system("CN=employment,O=TLS,C=CN", tls_ca, "ec-p256")

    crls = [make_crl(ca, [(revoked_person.cert, NOW - timedelta(hours=1)),
                          (revoked_system.cert, NOW - timedelta(hours=1))]),
            make_crl(pki.root), make_crl(tls_ca), make_crl(tls_root)]
    config = GatewayConfig(
        trust_anchors=[pki.root.cert, tls_root.cert],
        intermediates=[ca.cert, tls_ca.cert],
        crls=crls,
        systems={
            "employment": SystemPolicy(
                frozenset({"sign", "verify", "encrypt", "decrypt", "status", "cardholder"}),
                frozenset({"hr-sign"}), "employment-enc", frozenset(fingerprint(c.cert) for c in (
                    systems["employment"], systems["no-client-eku"], revoked_system, tls_client,
                    *extra.values()))),
            "fund": SystemPolicy(frozenset({"verify", "status"}),
                                 certificates=frozenset({fingerprint(systems["fund"].cert)})),
        },
        keys={"hr-sign": GatewayKey(hr_sign.key, hr_sign.cert, (ca.cert,)),
              "employment-enc": GatewayKey(employment_enc.key, employment_enc.cert)},
        timestamp_fetcher=tsa.respond,
        max_request_bytes=256 * 1024,
        max_batch_items=50,
    )
    recorder = MemoryRecorder()
    app = create_app(config, recorder=recorder)
    LIVE_APPS.append(app)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(_pem(files / "server.pem", server, tls_ca),
                            _key_pem(files / "server.key", server))
    context.load_verify_locations(_pem(files / "tls-roots.pem", tls_root))
    context.verify_mode = ssl.CERT_REQUIRED
    _pem(files / "tls-client.pem", tls_client, tls_ca)
    _key_pem(files / "tls-client.key", tls_client)
    with ServerThread(app) as plain, ServerThread(app, context) as tls:
        yield Rig(pki, tls_root, systems, extra, hr_sign, employment_enc, revoked_person,
                  person, revoked_system, outsider, tsa, config, recorder,
                  f"http://127.0.0.1:{plain.port}", f"https://127.0.0.1:{tls.port}", files)


def _tls_server_cert(issuer: Issued) -> Issued:
    import ipaddress
    import secrets

    from asn1crypto import x509

    from sscard.keys.software import SoftwareKey
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.extensions import key_identifier
    from sscard.x509.names import parse_name

    key = SoftwareKey.generate("ec-p256")
    cert = (
        CertificateBuilder()
        .subject(parse_name("CN=127.0.0.1,C=CN"))
        .issuer(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(63))
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension("key_identifier", key_identifier(key.public_key()))
        .add_extension("authority_key_identifier", {"key_identifier": issuer.ski})
        .add_extension("key_usage", {"digital_signature"}, True)
        .add_extension("extended_key_usage", ["server_auth"])
        .add_extension("subject_alt_name", [x509.GeneralName(
            name="ip_address", value=str(ipaddress.ip_address("127.0.0.1")))])
        .sign(issuer.key)
    )
    return Issued(cert, key)
