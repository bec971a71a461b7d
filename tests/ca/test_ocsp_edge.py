"""OCSP at the edge: ``sscard ca ocsp-publish`` writes pre-signed answers, the real nginx serves
them with the shipped configuration (deploy/nginx/ocsp.conf), and the OpenSSL 3 command line is
the independent client: good, then revoked at once after ``sscard ca revoke``; POSTs and
requests without a file reach the live responder (``sscard ca ocsp-serve``) through the same
nginx."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from asn1crypto import ocsp as asn1ocsp

from bench._common import stop_group, wait_until_up
from bench.peers import nginx_conf, shipped_nginx_site
from ca.authority import CertificateAuthority
from ca.ocsp_publish import EdgePublisher, canonical_request, request_paths
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import pem_blocks
from tests.ca.test_service_cli import (
    SSCARD,
    Running,
    config_text,
    free_port,
    leaf_serial,
    openssl,
    serve,
    sscard,
)


def nginx() -> str:
    path = shutil.which("nginx")
    if path is None:
        pytest.fail("nginx is missing: run scripts/system-deps.sh (Debian nginx)")
    return path


@dataclass
class Edge:
    service: Running
    url: str
    published: Path

    def get(self, request_der: bytes, quote: bool = True) -> requests.Response:
        text = base64.b64encode(request_der).decode()
        path = urllib.parse.quote(text, safe="") if quote else text
        return requests.get(f"{self.url}/ocsp/{path}", timeout=10)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    nginx_exe = nginx()
    tmp = tmp_path_factory.mktemp("edge")
    service_run = serve(tmp, "ec-p256", "ocsp-serve", "/health")  # the upstream it names
    service = next(service_run)
    published = tmp / "published"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log = tmp / "publish.log"
        with log.open("wb") as out:
            publisher = subprocess.Popen(
                [SSCARD, "--home", str(service.home), "ca", "ocsp-publish", "--dir",
                 str(published), "--watch", "--interval", "0.2"],
                stdout=out, stderr=subprocess.STDOUT, process_group=0)
        procs.append(publisher)
        wait_until_up("ocsp-publish", lambda: (published / "ocsp").is_dir(), publisher, log)

        port = free_port()
        conf_dir = tmp / "nginx"
        conf_dir.mkdir()
        (conf_dir / "sscard-ocsp.conf").write_text(
            shipped_nginx_site(f"127.0.0.1:{port}", published,
                               service.url.removeprefix("http://")))
        # the http block a distribution's nginx.conf provides (the bench's, paths under tmp)
        conf = nginx_conf(conf_dir, f"    include {conf_dir}/sscard-ocsp.conf;", workers=2)
        nginx_log = conf_dir / "stderr.log"
        with nginx_log.open("wb") as out:
            server = subprocess.Popen([nginx_exe, "-c", str(conf),
                                       "-p", str(conf_dir)], stdout=out,
                                      stderr=subprocess.STDOUT, process_group=0)
        procs.append(server)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                requests.get(url + "/", timeout=1)
                return True
            except requests.ConnectionError:
                return False

        wait_until_up("nginx", up, server, nginx_log)
        yield Edge(service, url, published)
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        service_run.close()


def leaf_request(edge: Edge) -> bytes:
    files = edge.service.files
    issuer = pem_blocks(files["issuer"].read_bytes())[0][1]
    from asn1crypto import x509 as asn1x509

    return canonical_request(asn1x509.Certificate.load(issuer), int(leaf_serial(edge.service), 16))


def openssl_respin(edge: Edge, response: bytes, name: str) -> subprocess.CompletedProcess[str]:
    files = edge.service.files
    path = files["dir"] / name
    path.write_bytes(response)
    return subprocess.run(
        [openssl(), "ocsp", "-respin", str(path), "-issuer", str(files["issuer"]),
         "-cert", str(files["leaf"]), "-CAfile", str(files["chain"]), "-no_nonce"],
        capture_output=True, text=True, timeout=60)


def openssl_url(edge: Edge) -> subprocess.CompletedProcess[str]:
    files = edge.service.files
    return subprocess.run(
        [openssl(), "ocsp", "-issuer", str(files["issuer"]), "-cert", str(files["leaf"]),
         "-url", f"{edge.url}/ocsp", "-CAfile", str(files["chain"])],
        capture_output=True, text=True, timeout=60)


def test_canonical_request_is_the_bytes_openssl_sends(edge: Edge) -> None:
    files = edge.service.files
    out = files["dir"] / "openssl-request.der"
    subprocess.run([openssl(), "ocsp", "-issuer", str(files["issuer"]), "-cert",
                    str(files["leaf"]), "-no_nonce", "-reqout", str(out)],
                   check=True, capture_output=True)
    assert leaf_request(edge) == out.read_bytes()


def test_nginx_serves_the_published_answer_good_then_revoked_at_once(edge: Edge) -> None:
    leaf = str(edge.service.files["leaf"])
    request = leaf_request(edge)
    file = edge.published / request_paths(request)[0]
    answer = edge.get(request)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/ocsp-response"
    assert "max-age=" in answer.headers["Cache-Control"] and "Expires" in answer.headers
    assert answer.content == file.read_bytes()  # the file, not the live responder
    checked = openssl_respin(edge, answer.content, "edge-good.der")
    assert checked.returncode == 0, checked.stderr
    assert "Response verify OK" in checked.stderr and f"{leaf}: good" in checked.stdout
    # the same file under the other spellings of the path: "/" unescaped, base64url
    assert edge.get(request, quote=False).content == answer.content
    url_safe = base64.urlsafe_b64encode(request).decode()
    assert requests.get(f"{edge.url}/ocsp/{url_safe}", timeout=10).content == answer.content
    # and the live responder, through the same nginx, by POST (openssl's way)
    live = openssl_url(edge)
    assert live.returncode == 0, live.stderr
    assert "Response verify OK" in live.stderr and f"{leaf}: good" in live.stdout

    sscard(edge.service.home, "ca", "revoke", leaf_serial(edge.service), "--reason",
           "keyCompromise")
    deadline = time.monotonic() + 30
    while file.read_bytes() == answer.content:
        assert time.monotonic() < deadline, "the published file did not change on revocation"
        time.sleep(0.1)

    after = edge.get(request)
    assert after.content == file.read_bytes() != answer.content
    revoked = openssl_respin(edge, after.content, "edge-revoked.der")
    assert revoked.returncode == 0, revoked.stderr
    assert "Response verify OK" in revoked.stderr and f"{leaf}: revoked" in revoked.stdout
    assert "Reason: keyCompromise" in revoked.stdout
    live_after = openssl_url(edge)
    assert f"{leaf}: revoked" in live_after.stdout, live_after.stdout + live_after.stderr


def test_every_base64_spelling_finds_its_file_through_nginx(edge: Edge) -> None:
    """Base64 with "//", "+" and a final "/" (one request in 64 ends so) maps to one file."""
    files = edge.service.files
    from asn1crypto import x509 as asn1x509

    issuer = asn1x509.Certificate.load(pem_blocks(files["issuer"].read_bytes())[0][1])
    wanted = {"ends in /": lambda t: t.endswith("/"), "has //": lambda t: "//" in t,
              "has +": lambda t: "+" in t}
    found: dict[str, bytes] = {}
    base = 0x40 << 152  # 20 octets, as the CA draws them: a request of 87 octets, no padding
    for serial in range(base, base + 50_000):
        request = canonical_request(issuer, serial)
        text = base64.b64encode(request).decode()
        for name, test in wanted.items():
            if name not in found and test(text):
                found[name] = request
        if len(found) == len(wanted):
            break
    assert len(found) == len(wanted), found.keys()
    for name, request in found.items():
        body = f"published for a request that {name}".encode()
        for path in request_paths(request):
            target = edge.published / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        assert edge.get(request).content == body, name
        assert edge.get(request, quote=False).content == body, name
        url_safe = base64.urlsafe_b64encode(request).decode()
        assert requests.get(f"{edge.url}/ocsp/{url_safe}", timeout=10).content == body, name


def test_a_request_without_a_file_goes_to_the_live_responder(edge: Edge) -> None:
    files = edge.service.files
    from asn1crypto import x509 as asn1x509

    issuer = asn1x509.Certificate.load(pem_blocks(files["issuer"].read_bytes())[0][1])
    never_issued = canonical_request(issuer, 0x1234567890ABCDEF)
    assert not (edge.published / request_paths(never_issued)[0]).exists()
    answer = edge.get(never_issued)
    assert answer.status_code == 200
    response = asn1ocsp.OCSPResponse.load(answer.content)
    assert response["response_status"].native == "successful"
    single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
    assert single["cert_status"].name == "unknown"


# -- the publisher in process -------------------------------------------------------------


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[CertificateAuthority]:
    (tmp_path / "ca.toml").write_text(config_text("ec-p256"), encoding="utf-8")
    home = tmp_path / "home"
    ca = CertificateAuthority.init(home, tmp_path / "ca.toml", audit=AuditLog.at_home(home))
    try:
        yield ca
    finally:
        ca.close()


def _issue(authority: CertificateAuthority, name: str) -> int:
    key = SoftwareKey.generate("ec-p256")
    csr = CsrBuilder().subject(parse_name(f"CN={name},O=人社厅,C=CN")).sign(key)
    return int(authority.issue_from_csr(csr, "business-system").serial)


def _status_in(directory: Path, authority: CertificateAuthority, serial: int) -> str:
    path = directory / request_paths(canonical_request(authority.certificate, serial))[0]
    response = asn1ocsp.OCSPResponse.load(path.read_bytes())
    single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def test_publisher_refresh_signs_only_what_changed(authority: CertificateAuthority,
                                                   tmp_path: Path) -> None:
    first, second = _issue(authority, "One"), _issue(authority, "Two")
    out = tmp_path / "edge"
    publisher = EdgePublisher(authority, out)
    signed = publisher.publish_all()
    assert signed >= 2  # the leaves, and the responder's own certificate
    assert _status_in(out, authority, first) == "good"
    assert publisher.refresh() == 0  # nothing changed, nothing due

    authority.revoke(first, "keyCompromise")
    third = _issue(authority, "Three")
    assert publisher.refresh() == 2  # the revoked one and the new one, nothing else
    assert _status_in(out, authority, first) == "revoked"
    assert _status_in(out, authority, second) == "good"
    assert _status_in(out, authority, third) == "good"


def test_publisher_signs_again_before_next_update(authority: CertificateAuthority,
                                                  tmp_path: Path) -> None:
    serial = _issue(authority, "Due")
    out = tmp_path / "edge"
    publisher = EdgePublisher(authority, out, validity=timedelta(hours=2))
    now = datetime.now(UTC).replace(microsecond=0)
    publisher.publish_all(now)
    path = out / request_paths(canonical_request(authority.certificate, serial))[0]
    before = path.read_bytes()
    assert publisher.refresh(now + timedelta(minutes=59)) == 0
    assert publisher.refresh(now + timedelta(minutes=61)) > 0  # past half of the validity
    single = asn1ocsp.OCSPResponse.load(path.read_bytes()).basic_ocsp_response[
        "tbs_response_data"]["responses"][0]
    assert path.read_bytes() != before
    assert single["this_update"].native == now + timedelta(minutes=61)
    assert single["next_update"].native == now + timedelta(minutes=181)


def test_publisher_refuses_a_validity_of_nothing(authority: CertificateAuthority,
                                                 tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        EdgePublisher(authority, tmp_path, validity=timedelta(0))
