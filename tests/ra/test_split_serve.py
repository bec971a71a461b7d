"""The trust zones as separate processes (issue 11 items 1, 2, 8): ``sscard ca serve``,
``sscard kmc serve``, ``sscard ra serve --ca-url --kmc-url`` and ``sscard gateway serve`` each
under gunicorn. The RA has
its own data directory without the CA's key or any KMC share; it signs its CA calls with its
service certificate and reaches the KMC with its KMC caller key. A station's pre-authorised
enrollment through the RA's API comes back issued: both certificates from the CA process, the
encryption key escrowed in the KMC process."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ca.authority import CertificateAuthority
from ca.records import Status
from ra import store
from ra.models import Role
from ra.service import Actor, RegistrationAuthority
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem
from sscard.x509.values import Serial
from tests.ca.test_service_cli import free_port
from tests.deploy.test_serving import CA_CONFIG, sscard
from tests.issuance.cards import holder
from tests.pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

BATCH = "split zones batch"


def _shares(tmp: Path) -> list[str]:
    args: list[str] = []
    for name in ("zhang", "li"):
        share = next((tmp / "shares").glob(f"share-*-{name}.json"))
        args += ["--share", str(share), "--share-passphrase-file", str(tmp / f"{name}.pass")]
    return args


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., str]]:
    running: list[subprocess.Popen[bytes]] = []

    def run(name: str, home: Path, args: list[str], ready: str,
            env: dict[str, str] | None = None) -> str:
        port = free_port()
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sscard.cli", "--home", str(home), *args,
                 "--port", str(port), "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})})
        running.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited: {log.read_text()[-3000:]}")
            try:
                if requests.get(url + ready, timeout=2).status_code == 200:
                    return url
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not come up: {log.read_text()[-3000:]}")
            time.sleep(0.2)

    yield run
    for proc in running:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("ra_database", ["sqlite", "postgresql"])
def test_ca_kmc_ra_gateway_as_separate_gunicorn_processes(
        tmp_path: Path, start: Callable[..., str], ra_database: str,
        request: pytest.FixtureRequest) -> None:
    ra_db_url = (str(request.getfixturevalue("pg_url")) if ra_database == "postgresql"
                 else store.default_url(tmp_path / "ra-home"))
    # the protected zone: CA and KMC on one data directory
    home, ra_home = tmp_path / "home", tmp_path / "ra-home"
    (tmp_path / "ca.toml").write_text(CA_CONFIG, encoding="utf-8")
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
    # the RA's service identity: issued by the CA (profile service), registered as principal ra
    key = SoftwareKey.generate("sm2")
    (tmp_path / "service.pass").write_bytes(b"ra service passphrase")
    (tmp_path / "service.pass").chmod(0o600)
    key.store(tmp_path / "service.key", b"ra service passphrase")
    (tmp_path / "service.key").chmod(0o600)
    csr = CsrBuilder().subject(parse_name("CN=ra-service,C=CN")).sign(key).dump()
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        cert = ca.issue_from_csr(csr, "service")
    (tmp_path / "service.pem").write_bytes(der_to_pem(cert.der, "CERTIFICATE"))
    sscard(home, "ca", "principal", "add", "ra", "--ra", "--certificate",
           str(tmp_path / "service.pem"))
    # the RA zone: its own database, an officer, a station and a pre-authorised batch
    ra_home.mkdir()
    ra = RegistrationAuthority.open(ra_db_url, AuditLog.at_home(ra_home))
    try:
        ra.add_officer(None, "officer1", "Officer", "correct horse battery", {Role.OFFICER},
                       person_id="110101198001010001")
        token = ra.add_api_client(None, "station-1")
        ra.authorise_batch(Actor("officer1", frozenset({Role.OFFICER})), BATCH, 10,
                           station="station-1")
    finally:
        ra.close()

    ca_url = start("ca", home, ["ca", "serve", "--no-tsa"], "/ready")
    kmc_url = start("kmc", home, ["kmc", "serve", *_shares(tmp_path)], "/health")
    ra_url = start("ra", ra_home, [
        "ra", "serve", "--ca-url", ca_url, "--kmc-url", kmc_url, "--insecure-http",
        "--kmc-ra-key-file", str(tmp_path / "ra.key"),
        "--service-key", str(tmp_path / "service.key"),
        "--service-key-passphrase-file", str(tmp_path / "service.pass"),
        "--service-certificate", str(tmp_path / "service.pem")], "/login",
        env={"SSCARD_RA_DB_URL": ra_db_url})  # database URLs never on a command line
    # the gateway's zone: only the CA's chain as trust anchors
    gateway_home = tmp_path / "gateway-home"
    gateway_home.mkdir()
    sscard(home, "ca", "certs", "--out", str(gateway_home / "chain.pem"))
    (gateway_home / "gateway.toml").write_text(
        'trust_anchors = ["chain.pem"]\n'
        f'audit_url = "sqlite:///{gateway_home / "audit.db"}"\n', encoding="utf-8")
    start("gateway", gateway_home, ["gateway", "serve", "--config",
                                    str(gateway_home / "gateway.toml")], "/ready")
    # nothing of the protected zone in the RA's directory
    assert not (ra_home / "ca").exists() and not (ra_home / "kmc.db").exists()

    who = holder(4242)
    card_key = SoftwareKey.generate("sm2")
    card_csr = CsrBuilder().subject(parse_name(
        f"CN={who.name},serialNumber={who.ssn},C=CN")).sign(card_key).dump()
    body = {"cardholder": {k: getattr(who, k) for k in ("ssn", "name", "sex", "ethnicity",
                                                         "birthplace", "birth_date")},
            "card": {"card_id": secrets.token_hex(16).upper(), "card_number": "S00004242"},
            "csr": base64.b64encode(card_csr).decode(), "batch": BATCH}
    answer = requests.post(ra_url + "/api/v1/enrollments", json=body, timeout=60,
                           headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    info = answer.json()
    assert info["state"] == "done", info
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        for use in ("sign_serial", "enc_serial"):
            assert ca.status(Serial.parse(info["card"][use])).status == Status.GOOD
    assert info["enveloped_key_blob"]  # escrowed by the KMC process, for the card
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
