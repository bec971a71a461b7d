"""A small SM2 PKI made once per harness process, to seed corpora and to answer requests."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from functools import cache

from asn1crypto import algos, core, ocsp, tsp, x509

from sscard.crypto.hashes import sm3
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder, CrlBuilder, CsrBuilder
from sscard.x509.names import parse_name

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Pki:
    ca_key: SoftwareKey
    ca_cert: x509.Certificate
    leaf_key: SoftwareKey
    leaf_cert: x509.Certificate
    tsa_key: SoftwareKey
    tsa_cert: x509.Certificate
    csr_der: bytes
    crl_der: bytes


@cache
def pki() -> Pki:
    ca_key = SoftwareKey.generate("sm2")
    ca_name = parse_name("CN=Fuzz CA,O=sscard,C=CN")
    ca_cert = (CertificateBuilder().subject(ca_name).issuer(ca_name)
               .public_key(ca_key.public_key()).serial_number(1)
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=3650))
               .add_extension("basic_constraints", {"ca": True}, critical=True)
               .add_extension("key_usage", {"key_cert_sign", "crl_sign", "digital_signature"},
                              critical=True)
               .sign(ca_key))

    def leaf(subject: str, serial: int, key: SoftwareKey, eku: str | None) -> x509.Certificate:
        b = (CertificateBuilder().subject(parse_name(subject)).issuer(ca_name)
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(NOW - dt.timedelta(days=1))
             .not_valid_after(NOW + dt.timedelta(days=365))
             .add_extension("key_usage", {"digital_signature", "non_repudiation"},
                            critical=True))
        if eku:
            b = b.add_extension("extended_key_usage", [eku], critical=True)
        return b.sign(ca_key)

    leaf_key = SoftwareKey.generate("sm2")
    leaf_cert = leaf("CN=张三,serialNumber=350102199001011234,O=某市社保中心,C=CN", 2, leaf_key,
                     None)
    tsa_key = SoftwareKey.generate("sm2")
    tsa_cert = leaf("CN=Fuzz TSA,O=sscard,C=CN", 3, tsa_key, "time_stamping")
    csr = CsrBuilder().subject(parse_name("CN=李四,serialNumber=350102199001015678,C=CN")) \
        .sign(leaf_key)
    crl = (CrlBuilder().issuer(ca_name).this_update(NOW).next_update(NOW + dt.timedelta(days=1))
           .crl_number(7).add_revoked(2, NOW - dt.timedelta(hours=1), reason="key_compromise")
           .add_revoked(99, NOW - dt.timedelta(hours=2)).sign(ca_key))
    return Pki(ca_key, ca_cert, leaf_key, leaf_cert, tsa_key, tsa_cert, csr.dump(), crl.dump())


def ocsp_request(serials: tuple[int, ...] = (2,), nonce: bool = True) -> bytes:
    p = pki()
    name_hash = hashlib.sha1(p.ca_cert.subject.dump()).digest()  # noqa: S324 (OCSP CertID)
    key_hash = hashlib.sha1(p.ca_cert.public_key["public_key"].contents[1:]).digest()  # noqa: S324
    requests = [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha1"}, "issuer_name_hash": name_hash,
        "issuer_key_hash": key_hash, "serial_number": s}} for s in serials]
    tbs: dict[str, object] = {"request_list": requests}
    if nonce:
        tbs["request_extensions"] = [{"extn_id": "nonce",
                                      "extn_value": core.OctetString(secrets.token_bytes(16))}]
    return ocsp.OCSPRequest({"tbs_request": tbs}).dump()


def ts_request(hash_name: str = "sm3", nonce: bool = True, cert_req: bool = True) -> bytes:
    digest = sm3(b"document") if hash_name == "sm3" else hashlib.new(hash_name,
                                                                      b"document").digest()
    req: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_name}),
                            "hashed_message": digest},
        "cert_req": cert_req,
    }
    if nonce:
        req["nonce"] = secrets.randbits(63)
    return tsp.TimeStampReq(req).dump()
