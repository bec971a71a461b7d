"""The trust zones as separate processes (issue 11 items 1, 2, 8): ``sscard ca serve``,
``sscard kmc serve``, ``sscard ra serve --ca-url --kmc-url`` and ``sscard gateway serve`` each
under gunicorn, on SQLite and again with the RA on PostgreSQL. The RA has its own data
directory and names no CA key, no KMC share, no storage key and no CA credential at the KMC: it
signs its CA calls with its service certificate and reaches the KMC with its own KMC caller key,
over mutual TLS (the KMC asks for client certificates, the RA shows its own).

The whole flow across them: a blank emulated card in pcscd's virtual reader is personalised by
``sscard card personalize`` (its own process) through the RA's enrollment API; the enrollment
waits for an officer, who approves it in the RA's web UI; the run resumes and the card gets both
certificates from the CA process and the encryption key escrowed by the KMC process. A business
system registered at the gateway by fingerprint signs there; the card authenticates its holder
at the gateway; an operator and two officers revoke the card through the RA, which reaches the
CA, and the gateway's next check of the card's signature says revoked (OCSP from the CA
process)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from asn1crypto import x509

from bench._common import stop_group
from ca.authority import CertificateAuthority
from ca.records import Status
from ra import store
from ra.models import Role
from ra.service import RegistrationAuthority
from sscard.audit import AuditLog
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscTransport
from sscard.gateway.client import GatewayClient
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from sscard.x509.values import Serial
from tests.ca.test_service_cli import free_port
from tests.card.conftest import CARD_READER, EmulatorProcess, PcscRig
from tests.deploy.test_serving import CA_CONFIG, sscard
from tests.deploy.tlsfiles import TlsFiles, encrypted_client_key, make_tls_files
from tests.issuance.cards import new_blank_card
from tests.issuance.test_pcsc import PIN, order_json
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

PASSWORD = "correct horse battery"
DOC = "就业登记表 2026-12".encode()


def _shares(tmp: Path) -> list[str]:
    args: list[str] = []
    for name in ("zhang", "li"):
        share = next((tmp / "shares").glob(f"share-*-{name}.json"))
        args += ["--share", str(share), "--share-passphrase-file", str(tmp / f"{name}.pass")]
    return args


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts a service (``sscard ... serve``) and waits until it answers ``ready``; a
    service started again under the same name replaces the stopped one (``run.stop``)."""
    running: dict[str, subprocess.Popen[bytes]] = {}

    def run(name: str, home: Path, args: list[str], ready: str,
            env: dict[str, str] | None = None, port: int | None = None,
            tls: TlsFiles | None = None) -> str:
        """``tls``: serve HTTPS asking for client certificates under its CA."""
        port = port or free_port()
        log = tmp_path / f"{name}.log"
        listen = [] if tls is None else [
            "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key),
            "--tls-key-passphrase-file", str(tls.server_passphrase),
            "--tls-client-ca", str(tls.ca)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sscard.cli", "--home", str(home), *args,
                 "--port", str(port), "--workers", "1", *listen],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})})
        running[name] = proc
        url = f"{'http' if tls is None else 'https'}://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited: {log.read_text()[-3000:]}")
            try:
                if requests.get(url + ready, timeout=2, **({} if tls is None else {
                        "verify": str(tls.ca), "cert": tls.client_pair})).status_code == 200:
                    return url
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not come up: {log.read_text()[-3000:]}")
            time.sleep(0.2)

    run.stop = lambda name: stop_group(running[name])  # type: ignore[attr-defined]
    yield run
    for proc in running.values():
        stop_group(proc)


class Officer:
    """An RA officer at the RA's web UI over HTTP (a browser's form posts, its CSRF token)."""

    def __init__(self, url: str, username: str) -> None:
        self.url, self.http = url, requests.Session()
        self.token = self._csrf("/login")
        answer = self.http.post(url + "/login", timeout=30, allow_redirects=False, data={
            "csrf_token": self.token, "username": username, "password": PASSWORD})
        assert answer.status_code == 302, answer.text[-2000:]
        self.token = self._csrf("/")

    def _csrf(self, path: str) -> str:
        page = self.http.get(self.url + path, timeout=30)
        assert page.status_code == 200, page.text[-2000:]
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text[-2000:]
        return found.group(1)

    def post(self, path: str, expect: int = 302, **form: str) -> requests.Response:
        answer = self.http.post(self.url + path, data={"csrf_token": self.token, **form},
                                timeout=120, allow_redirects=False)
        assert answer.status_code == expect, answer.text[-3000:]
        return answer

    def approve(self, request_id: str, expect: int = 302) -> requests.Response:
        return self.post(f"/requests/{request_id}/decide", expect, action="approve",
                         reason="checked")


def _protected_zone(tmp_path: Path, home: Path, ca_port: int) -> None:
    """The CA (its OCSP and CRL URLs at ``ca_port``) and the KMC (ceremony, the RA's caller)."""
    (tmp_path / "ca.toml").write_text(CA_CONFIG.replace(
        "http://127.0.0.1:8080", f"http://127.0.0.1:{ca_port}"), encoding="utf-8")
    sscard(home, "ca", "init", "--config", str(tmp_path / "ca.toml"))
    args = ["kmc", "ceremony", "--threshold", "2", "--shares-dir", str(tmp_path / "shares"),
            "--officiant", "test"]
    for name in ("zhang", "li", "wang"):
        (tmp_path / f"{name}.pass").write_text(f"{name} passphrase 1\n")
        (tmp_path / f"{name}.pass").chmod(0o600)
        args += ["--custodian", name, "--custodian-passphrase-file",
                 str(tmp_path / f"{name}.pass")]
    sscard(home, *args)
    sscard(home, "kmc", "caller", "add", "ra", "--role", "ra", "--key-out",
           str(tmp_path / "ra.key"))  # the RA's own KMC caller, and no CA credential


def _issue(home: Path, subject: str, profile: str) -> tuple[SoftwareKey, bytes]:
    """A key and its certificate from the CA (the administrator's path, before serving)."""
    key = SoftwareKey.generate("sm2")
    csr = CsrBuilder().subject(parse_name(subject)).sign(key).dump()
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        return key, ca.issue_from_csr(csr, profile).der


def _gateway_zone(home: Path, gateway_home: Path, system_cert: bytes) -> Path:
    """Only the CA's chain as trust anchors, its own signing key, one business system
    registered by fingerprint, revocation fetched from the CA (OCSP)."""
    gateway_home.mkdir()
    sscard(home, "ca", "certs", "--out", str(gateway_home / "chain.pem"))
    key, cert = _issue(home, "CN=人社厅签章,O=人社厅,C=CN", "business-system")
    (gateway_home / "pass").write_text("gateway pass\n")
    (gateway_home / "pass").chmod(0o600)
    key.store(gateway_home / "hr-sign.key", b"gateway pass")
    (gateway_home / "hr-sign.pem").write_bytes(der_to_pem(cert, "CERTIFICATE"))
    (gateway_home / "gateway.toml").write_text(f"""
trust_anchors = ["chain.pem"]
fetch_revocation = true
audit_url = "sqlite:///{gateway_home / "audit.db"}"
database_url = "sqlite:///{gateway_home / "gateway.db"}"

[keys.hr-sign]
key = "hr-sign.key"
passphrase_file = "pass"
certificate = "hr-sign.pem"

[systems.employment]
certificates = ["{hashlib.sha256(system_cert).hexdigest()}"]
operations = ["sign", "verify", "cardholder"]
signing_keys = ["hr-sign"]
""", encoding="utf-8")
    return gateway_home / "gateway.toml"


def _personalize(pcsc: PcscRig, ra_url: str, work: Path, token: str,
                 data: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, value in (("token", token), ("pin", PIN)):
        (work / name).write_text(value + "\n")
        (work / name).chmod(0o600)
    (work / "holder.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "reader_tools.issuance_cli", "personalize", "--ra-url", ra_url,
         "--token-file", str(work / "token"), "--journal-dir", str(work / "journal"),
         "--data", str(work / "holder.json"), "--pin-file", str(work / "pin")],
        env=dict(pcsc.env, SSCARD_READER=CARD_READER), capture_output=True, text=True,
        timeout=300, stdin=subprocess.DEVNULL)


def _cardholder_check(gateway: GatewayClient) -> dict[str, object]:
    """The card in the reader authenticates its holder at the gateway (signs its challenge)."""
    with CardClient(PcscTransport(CARD_READER)) as client:
        certificate = client.read_certificate("sign")
        assert certificate is not None
        return gateway.authenticate_cardholder(CardKey(client, lambda: PIN), certificate)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("ra_database", ["sqlite", "postgresql"])
def test_zones_as_separate_gunicorn_processes_whole_flow(
        tmp_path: Path, start: Callable[..., str], ra_database: str, pcsc_rig: PcscRig,
        request: pytest.FixtureRequest) -> None:
    ra_db_url = (str(request.getfixturevalue("pg_url")) if ra_database == "postgresql"
                 else store.default_url(tmp_path / "ra-home"))
    home, ra_home = tmp_path / "home", tmp_path / "ra-home"
    ca_port = free_port()
    _protected_zone(tmp_path, home, ca_port)
    # the RA's service identity: issued by the CA (profile service), registered as principal ra
    key, cert = _issue(home, "CN=ra-service,C=CN", "service")
    (tmp_path / "service.pass").write_bytes(b"ra service passphrase")
    (tmp_path / "service.pass").chmod(0o600)
    key.store(tmp_path / "service.key", b"ra service passphrase")
    (tmp_path / "service.pem").write_bytes(der_to_pem(cert, "CERTIFICATE"))
    sscard(home, "ca", "principal", "add", "ra", "--ra", "--certificate",
           str(tmp_path / "service.pem"))
    # the RA zone: its own database, an operator, two officers (two people), a station
    ra_home.mkdir()
    ra = RegistrationAuthority.open(ra_db_url, AuditLog.at_home(ra_home))
    try:
        for i, (name, role) in enumerate((("operator1", Role.OPERATOR),
                                          ("officer1", Role.OFFICER),
                                          ("officer2", Role.OFFICER))):
            ra.add_officer(None, name, name.title(), PASSWORD, {role},
                           person_id=f"11010119800101{i:03d}X")
        token = ra.add_api_client(None, "station-1")
    finally:
        ra.close()
    system_key, system_cert = _issue(home, "CN=就业登记系统,O=人社厅,C=CN", "business-system")
    gateway_config = _gateway_zone(home, tmp_path / "gateway-home", system_cert)

    ca_url = start("ca", home, ["ca", "serve", "--no-tsa"], "/ready", port=ca_port)
    ca_serve = ["ca", "serve", "--no-tsa"]
    # the KMC asks for TLS client certificates (as deploy/ runs it): the RA shows its own, its
    # key encrypted at rest
    tls = make_tls_files(tmp_path / "tls")
    kmc_tls_key, kmc_tls_pass = encrypted_client_key(tls, tmp_path / "tls")
    kmc_url = start("kmc", home, ["kmc", "serve", *_shares(tmp_path)], "/health", tls=tls)
    ra_url = start("ra", ra_home, [
        "ra", "serve", "--ca-url", ca_url, "--kmc-url", kmc_url, "--insecure-http",
        "--kmc-ra-key-file", str(tmp_path / "ra.key"),
        "--kmc-ca-file", str(tls.ca), "--kmc-tls-cert", str(tls.client_cert),
        "--kmc-tls-key", str(kmc_tls_key), "--kmc-tls-key-passphrase-file", str(kmc_tls_pass),
        "--service-key", str(tmp_path / "service.key"),
        "--service-key-passphrase-file", str(tmp_path / "service.pass"),
        "--service-certificate", str(tmp_path / "service.pem"),
        "--resume-every", "1"], "/login",
        env={"SSCARD_RA_DB_URL": ra_db_url})  # database URLs never on a command line
    gateway_url = start("gateway", gateway_config.parent,
                        ["gateway", "serve", "--config", str(gateway_config)], "/ready")
    # nothing of the protected zone in the RA's directory or on its command line
    assert not (ra_home / "ca").exists() and not (ra_home / "kmc.db").exists()
    assert not list(ra_home.glob("**/*share*"))

    # personalisation over PC/SC: the enrollment waits for an officer's approval
    card = EmulatorProcess(pcsc_rig, new_blank_card(tmp_path / "card.json"))
    card.start()
    try:
        data = {k: v for k, v in order_json(4242).items() if k != "batch"}
        work = tmp_path / "station"
        work.mkdir()
        waiting = _personalize(pcsc_rig, ra_url, work, token, data)
        assert waiting.returncode == 11, waiting.stdout + waiting.stderr  # EXIT_WAITING
        found = re.search(r"enrollment (\S+) waits for an officer", waiting.stderr)
        assert found, waiting.stderr
        Officer(ra_url, "officer1").approve(found.group(1))
        done = _personalize(pcsc_rig, ra_url, work, token, data)
        assert done.returncode == 0 and "issued" in done.stdout, done.stdout + done.stderr
        with CardClient(PcscTransport(CARD_READER)) as client:
            on_card = [x509.Certificate.load(client.read_certificate(which) or b"")
                       for which in ("sign", "enc")]
        with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
            for issued in on_card:  # both from the CA process
                assert ca.status(Serial(issued.serial_number)).status == Status.GOOD

        # a business system, registered at the gateway by fingerprint, signs and verifies
        gateway = GatewayClient(gateway_url, key=system_key,
                                certificate=x509.Certificate.load(system_cert), timeout=120)
        signed = gateway.sign(DOC, key_id="hr-sign")
        report = gateway.verify(signed)
        assert report["valid"] is True, report
        # the card authenticates its holder at the gateway (status good, from the CA's OCSP)
        before = _cardholder_check(gateway)
        assert before["authenticated"] is True, before

        # revocation through the RA (lost card): an operator asks, two officers approve, the
        # RA carries it to the CA process; the CA is down at the second approval: the request
        # waits, says why, and the RA carries it on by itself once the CA is back
        asked = Officer(ra_url, "operator1").post(
            "/revoke", card_number=data["card_number"], reason_code="keyCompromise",
            reason="card lost")
        revocation = asked.headers["Location"].rstrip("/").rsplit("/", 1)[-1]  # its page
        Officer(ra_url, "officer1").approve(revocation)
        start.stop("ca")  # type: ignore[attr-defined]
        down = Officer(ra_url, "officer2").approve(revocation, expect=503)
        assert "CA" in down.text
        shown = Officer(ra_url, "officer1").http.get(f"{ra_url}/requests/{revocation}",
                                                     timeout=30).text
        assert "waiting for the CA" in shown
        start("ca", home, ca_serve, "/ready", port=ca_port)
        deadline = time.monotonic() + 120
        while True:  # the RA's timer (--resume-every 1) carries the revocation on
            with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
                states = {ca.status(Serial(c.serial_number)).status for c in on_card}
            if states == {Status.REVOKED} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert states == {Status.REVOKED}
        # the gateway's next check of the card's signature: revoked
        after = _cardholder_check(gateway)
        assert after["authenticated"] is False, after
        assert "REVOKED" in {r["code"] for r in after["reasons"]}, after  # type: ignore[attr-defined]
        # ... as the CA process's OCSP responder told it
        metrics = requests.get(ca_url + "/metrics", timeout=30).text.splitlines()
        assert any(line.startswith("sscard_http_requests_total") and "ocsp" in line
                   and not line.endswith(" 0.0") for line in metrics), metrics
    finally:
        card.stop()
    assert (ra_home / "ra.db").exists() == (ra_database == "sqlite")  # the RA's own database


@pytest.mark.parametrize(("extra", "refusal"), [
    (["--ca-url", "http://127.0.0.1:9"], "give --ca-url and --kmc-url together"),
    (["--ca-url", "http://127.0.0.1:9", "--kmc-url", "http://127.0.0.1:9", "--share", "x"],
     "the RA holds no KMC share"),
    (["--ca-url", "http://127.0.0.1:9", "--kmc-url", "http://127.0.0.1:9"],
     "needs the RA's service identity"),
])
def test_bad_split_serve_options_are_named(tmp_path: Path, extra: list[str],
                                           refusal: str) -> None:
    (tmp_path / "ra.key").write_text("k\n")
    (tmp_path / "ra.key").chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(tmp_path / "ra-home"), "ra", "serve",
         "--port", str(free_port()), "--kmc-ra-key-file", str(tmp_path / "ra.key"), *extra],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and refusal in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "ra-home").exists()  # refused before anything was made
