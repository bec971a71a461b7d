"""Revocation from the sources the certificates name, fetched over HTTP: OCSP from the
project's responder (ca.ocsp), falling back to the CRL distribution point when the OCSP
responder cannot be reached."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asn1crypto import x509

from ca.ocsp import OcspResponder
from ca.records import CertificateStatus, RevocationReason, Status
from sscard.cms import TrustConfig, Verifier, sign
from tests.cms.pki import NOW, Issued, make_ca, make_crl, make_leaf

DOC = "异地就医备案".encode()


class Http:
    """A small HTTP server answering OCSP POSTs and CRL GETs."""

    def __init__(self) -> None:
        self.ocsp: OcspResponder | None = None
        self.crl: bytes = b""
        self.root_crl: bytes = b""
        self.ocsp_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.ocsp_requests += 1
                assert outer.ocsp is not None
                self._send(outer.ocsp.respond(body), "application/ocsp-response")

            def do_GET(self) -> None:
                self._send(outer.root_crl if self.path == "/root.crl" else outer.crl,
                           "application/pkix-crl")

            def _send(self, data: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    server = Http()
    yield server
    server.close()


def _uri(value: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=value)


def _sources(ocsp_url: str | None, crl_url: str) -> list[tuple[str, object, bool]]:
    ext: list[tuple[str, object, bool]] = [
        ("crl_distribution_points", [{"distribution_point": {"full_name": [_uri(crl_url)]}}],
         False)]
    if ocsp_url:
        ext.append(("authority_information_access",
                    [{"access_method": "ocsp", "access_location": _uri(ocsp_url)}], False))
    return ext


@pytest.fixture(scope="module")
def chain(http: Http) -> tuple[Issued, Issued, dict[int, datetime]]:
    root = make_ca("CN=Revocation Root,C=CN")
    ca = make_ca("CN=Revocation CA,C=CN", root,
                 extra=_sources(None, http.url + "/root.crl"))
    revoked: dict[int, datetime] = {}

    def lookup(serial: int) -> CertificateStatus:
        if serial in revoked:
            return CertificateStatus(serial, Status.REVOKED, revoked[serial],
                                     RevocationReason.keyCompromise)
        return CertificateStatus(serial, Status.GOOD)

    http.ocsp = OcspResponder(ca.key, ca.cert, ca.cert, lookup)
    http.root_crl = make_crl(root).dump()
    return root, ca, revoked


def _signed(leaf: Issued, ca: Issued) -> bytes:
    return sign(DOC, leaf.key, leaf.cert, chain=[ca.cert])


def test_ocsp_from_the_responder_the_certificate_names(http: Http, chain) -> None:
    root, ca, revoked = chain
    good = make_leaf("CN=钱一,C=CN", ca, extra=_sources(http.url + "/ocsp", http.url + "/ca.crl"))
    bad = make_leaf("CN=钱二,C=CN", ca, extra=_sources(http.url + "/ocsp", http.url + "/ca.crl"))
    when = NOW - timedelta(hours=2)
    revoked[bad.cert.serial_number] = when
    http.crl = make_crl(ca).dump()  # the CRL says nothing: only OCSP knows of the revocation
    verifier = Verifier(TrustConfig([root.cert], fetch_revocation=True))
    before = http.ocsp_requests
    assert verifier.verify(_signed(good, ca)).valid
    report = verifier.verify(_signed(bad, ca))
    assert [p.code.value for p in report.problems] == ["REVOKED"]
    assert report.problems[0].at == when
    assert http.ocsp_requests > before


def test_falls_back_to_the_crl_when_ocsp_is_down(http: Http, chain) -> None:
    root, ca, _revoked = chain
    dead = "http://127.0.0.1:9/ocsp"  # nothing listens on the discard port
    leaf = make_leaf("CN=钱三,C=CN", ca, extra=_sources(dead, http.url + "/ca.crl"))
    other = make_leaf("CN=钱四,C=CN", ca, extra=_sources(dead, http.url + "/ca.crl"))
    when = NOW - timedelta(hours=1)
    http.crl = make_crl(ca, [(leaf.cert, when)], number=2).dump()
    verifier = Verifier(TrustConfig([root.cert], fetch_revocation=True))
    report = verifier.verify(_signed(leaf, ca))
    assert [p.code.value for p in report.problems] == ["REVOKED"]
    assert report.problems[0].at == when
    assert verifier.verify(_signed(other, ca)).valid
