"""What an attacker can do to a captured signed request without any key: send the same
certificate in other encodings, and rewrite an ECDSA signature (r, s) as (r, n - s), which
verifies just as well. Shared by the replay tests of every service."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import requests
from asn1crypto import algos, x509

from bench._common import stop_group
from sscard import httpsig

#: the order of the P-256 group
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pem_lines(der: bytes, width: int, newline: str) -> str:
    b64 = base64.b64encode(der).decode()
    body = newline.join(b64[i:i + width] for i in range(0, len(b64), width))
    return f"-----BEGIN CERTIFICATE-----{newline}{body}{newline}-----END CERTIFICATE-----{newline}"


def long_form(der: bytes) -> bytes:
    """The outer SEQUENCE's length in one more octet than DER allows (BER, same content)."""
    assert der[0] == 0x30 and der[1] & 0x80
    n = der[1] & 0x7F
    return bytes([0x30, 0x80 | (n + 1), 0]) + der[2:]


def malleate_ecdsa(signature: bytes, n: int = P256_N) -> bytes:
    sig = algos.DSASignature.load(signature)
    r, s = sig["r"].native, sig["s"].native
    return algos.DSASignature({"r": r, "s": n - s}).dump()


def malleate_certificate(cert: x509.Certificate, n: int = P256_N) -> bytes:
    """The certificate with its issuer's ECDSA signature rewritten: still valid, other DER."""
    tbs = cert["tbs_certificate"].dump()
    sig = malleate_ecdsa(cert["signature_value"].native, n)
    return x509.Certificate({"tbs_certificate": x509.TbsCertificate.load(tbs),
                             "signature_algorithm": cert["signature_algorithm"],
                             "signature_value": sig}).dump()


def certificate_variants(cert: x509.Certificate) -> dict[str, str]:
    """Other ``X-Sscard-Certificate`` values for the same certificate."""
    der = cert.dump()
    return {
        "pem-64-lf": quote(pem_lines(der, 64, "\n"), safe=""),
        "pem-76-crlf": quote(pem_lines(der, 76, "\r\n"), safe=""),
        "pem-one-line-escaped-newlines": pem_lines(der, 10_000, "\\n"),
        "der-long-form-length": base64.b64encode(long_form(der)).decode(),
    }


def captured_variants(headers: dict[str, str], cert: x509.Certificate,
                      ecdsa: bool) -> dict[str, dict[str, str]]:
    """The captured request's headers, and each rewrite an attacker can make of them."""
    out = {"as captured": dict(headers), "again": dict(headers)}
    for name, value in certificate_variants(cert).items():
        out[name] = {**headers, httpsig.CERTIFICATE: value}
    if ecdsa:
        sig = base64.b64decode(headers[httpsig.SIGNATURE])
        out["signature (r, n-s)"] = {
            **headers, httpsig.SIGNATURE: base64.b64encode(malleate_ecdsa(sig)).decode()}
        if "ecdsa" in str(cert["signature_algorithm"]["algorithm"].native):
            out["certificate signature (r, n-s)"] = {
                **headers,
                httpsig.CERTIFICATE: base64.b64encode(malleate_certificate(cert)).decode()}
    return out


@contextmanager
def gunicorn(args: Sequence[str], env: dict[str, str], url: str, log: Path,
             health: str = "/health") -> Iterator[subprocess.Popen[bytes]]:
    """Run gunicorn (or a command that starts it) in its own process group until it answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # until both workers answer (gunicorn boots them after binding)
            try:
                if all(requests.get(url + health, timeout=5).status_code == 200
                       for _ in range(4)):
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        stop_group(proc)

