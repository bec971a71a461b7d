"""A revocation publication point over real HTTP for the tests: the project's OCSP responder
(ca.ocsp) answering POSTs and the CRLs answering GETs, and a CA whose certificates name it.
Shared by the CMS revocation tests and the login-token tests (tests/idp)."""

from __future__ import annotations

import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from asn1crypto import x509

from ca.ocsp import OcspResponder
from ca.records import CertificateStatus, RevocationReason, Status
from tests.cms.pki import Issued, make_ca, make_crl


class Http:
    """A small HTTP server answering OCSP POSTs and CRL GETs."""

    def __init__(self) -> None:
        self.ocsp: OcspResponder | None = None
        self.crl: bytes = b""
        self.root_crl: bytes = b""
        self.ocsp_requests = 0
        self.gets: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.ocsp_requests += 1
                assert outer.ocsp is not None
                self._send(outer.ocsp.respond(body), "application/ocsp-response")

            def do_GET(self) -> None:
                outer.gets.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", outer.url + "/ca.crl")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
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

    def __enter__(self) -> Http:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _uri(value: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=value)


def sources(ocsp_url: str | None, crl_url: str) -> list[tuple[str, object, bool]]:
    """The extensions that name a certificate's revocation sources: its CRL distribution
    point and, if given, its OCSP responder."""
    ext: list[tuple[str, object, bool]] = [
        ("crl_distribution_points", [{"distribution_point": {"full_name": [_uri(crl_url)]}}],
         False)]
    if ocsp_url:
        ext.append(("authority_information_access",
                    [{"access_method": "ocsp", "access_location": _uri(ocsp_url)}], False))
    return ext


def ocsp_chain(http: Http, root_subject: str,
               ca_subject: str) -> tuple[Issued, Issued, dict[int, datetime]]:
    """A root and a CA under it whose revocations ``http`` publishes: the root's CRL at
    ``/root.crl`` (named by the CA's certificate), and the CA's OCSP responder, which says
    revoked for each serial in the returned dict (serial: when) and good for any other."""
    root = make_ca(root_subject)
    ca = make_ca(ca_subject, root, extra=sources(None, http.url + "/root.crl"))
    revoked: dict[int, datetime] = {}

    def lookup(serial: int) -> CertificateStatus:
        if serial in revoked:
            return CertificateStatus(serial, Status.REVOKED, revoked[serial],
                                     RevocationReason.keyCompromise)
        return CertificateStatus(serial, Status.GOOD)

    http.ocsp = OcspResponder(ca.key, ca.cert, ca.cert, lookup)
    http.root_crl = make_crl(root).dump()
    return root, ca, revoked
