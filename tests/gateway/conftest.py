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

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from ca.tsa import FileSerialCounter, TimeStampAuthority
from sscard.gateway.audit import MemoryRecorder
from sscard.gateway.client import GatewayClient
from sscard.gateway.config import GatewayConfig, GatewayKey, SystemPolicy
from sscard.gateway.service import create_app
from sscard.x509.pem import der_to_pem
from tests.cms.pki import NOW, Issued, Pki, make_ca, make_crl, make_leaf, make_pki

CLIENT_EKU = ["client_auth"]
#: the apps the rig serves (tests reach the live challenge store through them)
LIVE_APPS: list[Flask] = []


@dataclass
class Rig:
    pki: Pki
    tls_root: Issued
    systems: dict[str, Issued]
    hr_sign: Issued
    employment_enc: Issued
    revoked_person: Issued
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
        "employment": make_leaf("CN=employment,O=就业登记系统,C=CN", ca, eku=CLIENT_EKU),
        "fund": make_leaf("CN=fund,O=基金监管系统,C=CN", ca, eku=CLIENT_EKU),
        "unregistered": make_leaf("CN=unregistered,O=x,C=CN", ca, eku=CLIENT_EKU),
        "no-client-eku": make_leaf("CN=employment,O=wrong eku,C=CN", ca, eku=["email_protection"]),
    }
    revoked_system = make_leaf("CN=employment,O=revoked,C=CN", ca, eku=CLIENT_EKU)
    revoked_person = make_leaf("CN=赵六,serialNumber=350102199505055678,C=CN", ca,
                               ssn="350102199505055678")
    outsider_root = make_ca("CN=Outsider Root,C=CN")
    outsider = make_leaf("CN=employment,O=outsider,C=CN", outsider_root, eku=CLIENT_EKU)
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
    tls_client = make_leaf("CN=employment,O=TLS,C=CN", tls_ca, "ec-p256", eku=CLIENT_EKU)

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
                frozenset({"hr-sign"}), "employment-enc"),
            "fund": SystemPolicy(frozenset({"verify", "status"})),
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
        yield Rig(pki, tls_root, systems, hr_sign, employment_enc, revoked_person,
                  revoked_system, outsider, tsa, config, recorder,
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
