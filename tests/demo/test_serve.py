"""`make serve`: scripts/serve.py started as a subprocess on a temporary data directory; each
service answers on its printed port (the RA's first officer logs in with the password from the
0600 file; a business system calls the gateway with the credentials the set-up issued); Ctrl-C
stops everything; a second start reuses the data and the ports; unusable starts are refused
with the reason."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sscard.gateway.client import GatewayClient
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate, load_crl
from sscard.x509.verify import verify_signature

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "scripts" / "serve.py"
READY = "sscard all-in-one system is up"


@dataclass
class Running:
    proc: subprocess.Popen[str]
    lines: list[str]
    home: Path

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def urls(self) -> dict[str, str]:
        found = dict(re.findall(r"^ {3}(ca|kmc|ra|gateway) +(http://127\.0\.0\.1:\d+)",
                                self.output, re.MULTILINE))
        assert set(found) == {"ca", "kmc", "ra", "gateway"}, self.output
        return found

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def start(home: Path, *extra: str, wait: bool = True) -> Running:
    proc = subprocess.Popen([sys.executable, str(SERVE), "--home", str(home), *extra],
                            cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if READY in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    running = Running(proc, lines, home)
    if wait:
        deadline = time.monotonic() + 90
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    running.stop()
                pytest.fail("serve did not come up:\n" + running.output)
    return running


def answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("serve") / "serve-data"
    running = start(home, "--any-ports")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


def test_ca_publishes_crl_and_certificates(served: Running) -> None:
    ca = served.urls()["ca"]
    issuing = load_certificate((served.home / "export" / "issuing-ca.pem").read_bytes())
    crl = load_crl(requests.get(f"{ca}/crl/issuing.crl", timeout=10).content)
    from sscard.crypto.asymmetric import PublicKey

    verify_signature(PublicKey.from_spki(issuing.public_key.dump()),
                     crl["tbs_cert_list"].dump(), crl["signature"].native,
                     crl["signature_algorithm"])
    answer = requests.get(f"{ca}/certs/issuing.crt", timeout=10)
    assert answer.status_code == 200
    assert load_certificate(answer.content).dump() == issuing.dump()


def test_kmc_is_unsealed(served: Running) -> None:
    health = requests.get(served.urls()["kmc"] + "/health", timeout=10).json()
    assert health == {"status": "ok", "service": "kmc", "sealed": False}
    assert requests.get(served.urls()["kmc"] + "/ready", timeout=10).status_code == 200


def test_first_officer_logs_in_to_the_ra_with_the_password_file(served: Running) -> None:
    password_file = served.home / "secrets" / "officers" / "admin"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert str(password_file) in served.output
    password = password_file.read_text().strip()
    assert password not in served.output
    ra = served.urls()["ra"]
    session = requests.Session()
    form = session.get(f"{ra}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token is not None
    wrong = session.post(f"{ra}/login", data={"csrf_token": token.group(1), "username": "admin",
                                              "password": password + "x"}, timeout=30)
    assert wrong.status_code == 401
    ok = session.post(f"{ra}/login", data={"csrf_token": token.group(1), "username": "admin",
                                           "password": password}, timeout=30,
                      allow_redirects=False)
    assert ok.status_code == 302, ok.text[:500]


def test_business_system_calls_the_gateway(served: Running) -> None:
    gw_dir = served.home / "gateway"
    passphrase = (served.home / "secrets" / "key-passphrase").read_text().strip().encode()
    key = SoftwareKey.load(gw_dir / "employment.key.pem", passphrase)
    cert = load_certificate((gw_dir / "employment.pem").read_bytes())
    gateway = served.urls()["gateway"]
    assert requests.get(f"{gateway}/health", timeout=10).status_code == 200
    client = GatewayClient(gateway, key=key, certificate=cert)
    # the gateway checks the caller and the certificate against the CA's OCSP responder
    status = client.certificate_status(cert)
    assert status["status"] == "good", status
    signed = client.sign(b"make serve", "hr-sign")
    assert client.verify(signed)["valid"] is True
    unsigned = requests.post(f"{gateway}/v1/sign", json={"key": "hr-sign"}, timeout=10)
    assert unsigned.status_code == 401


def test_card_is_attached_to_pcscd_or_said_to_be_in_process(served: Running) -> None:
    attached = "attached to a private pcscd" in served.output
    if os.environ.get("CI") == "true":
        # the CI rig has pcscd and vpcd: the card must be in a reader there
        assert attached, served.output
    else:
        assert attached or "the card is in-process only" in served.output


#: run with PCSCLITE_CSOCK_NAME of the serve's pcscd: the cardholder authenticates at the
#: gateway with the card in the virtual reader (PIN verified by the card over PC/SC)
PCSC_CLIENT = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import allinone
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscTransport
from sscard.emulator.pcscd import CARD_READER
from sscard.gateway.client import GatewayClient
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate

home, gateway = Path(sys.argv[2]), sys.argv[3]
passphrase = (home / "secrets" / "key-passphrase").read_text().strip().encode()
system_key = SoftwareKey.load(home / "gateway" / "employment.key.pem", passphrase)
system_cert = load_certificate((home / "gateway" / "employment.pem").read_bytes())
client = CardClient(PcscTransport(CARD_READER))
client.connect()
info = client.read_info()
print("holder", info.holder.name, info.holder.ssn)
cert = client.read_certificate("sign")
answer = GatewayClient(gateway, key=system_key, certificate=system_cert
                       ).authenticate_cardholder(CardKey(client, lambda: allinone.PIN), cert)
print("authenticated", answer["authenticated"], answer["cardholder"]["common_name"],
      answer["reasons"])
client.close()
"""


def test_cardholder_authenticates_over_pcsc(served: Running) -> None:
    match = re.search(r"export PCSCLITE_CSOCK_NAME=(\S+)", served.output)
    if match is None:
        assert os.environ.get("CI") != "true", served.output
        pytest.skip("no pcscd here: the serve's card is in-process only")
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=match.group(1))
    result = subprocess.run([sys.executable, "-c", PCSC_CLIENT, str(ROOT / "scripts"),
                             str(served.home), served.urls()["gateway"]], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "holder 张三 639900199001011234" in result.stdout
    assert "authenticated True 张三 []" in result.stdout


def test_ctrl_c_stops_and_a_second_start_reuses_the_data(served: Running) -> None:
    urls = served.urls()
    root = (served.home / "export" / "root.pem").read_bytes()
    assert served.stop() == 0
    assert "Stopping" in served.output
    assert not any(answers(u) for u in urls.values())

    again = start(served.home)
    try:
        assert "Reusing the all-in-one system" in again.output
        assert again.urls() == urls  # the CA's URL is in its certificates: same ports
        assert (served.home / "export" / "root.pem").read_bytes() == root
        assert requests.get(urls["kmc"] + "/health", timeout=10).json()["sealed"] is False
    finally:
        assert again.stop() == 0


def test_busy_port_on_restart_is_refused(served: Running) -> None:
    if served.proc.poll() is None:
        served.stop()
    port = int(served.urls()["ca"].rsplit(":", 1)[1])
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        refused = start(served.home, wait=False)
        assert refused.proc.wait(timeout=60) == 2
    time.sleep(0.2)
    assert "cannot listen for the ca service" in refused.output
    assert "another --home" in refused.output


def test_half_set_up_directory_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "serve-data"
    home.mkdir()
    (home / "ca.toml").write_text("from a start that was interrupted")
    refused = start(home, "--any-ports", wait=False)
    assert refused.proc.wait(timeout=60) == 2
    time.sleep(0.2)
    assert "holds no finished set-up" in refused.output
    assert (home / "ca.toml").read_text() == "from a start that was interrupted"


def test_make_serve_signs_audit_checkpoints(served: Running) -> None:
    """The served system's audit log holds signed checkpoints (made at start and on a timer)
    over what the set-up recorded, and verifies against the data directory's audit
    certificate."""
    from click.testing import CliRunner

    from sscard.audit.scheduled import CERT_FILE
    from sscard.cli import cli

    result = CliRunner().invoke(cli, ["--home", str(served.home), "audit", "verify", "--cert",
                                      str(served.home / CERT_FILE), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["intact"] and report["checkpoints"] >= 1 and report["records"] > 0
    shown = CliRunner().invoke(cli, ["--home", str(served.home), "audit", "show", "--action",
                                     "ca.hierarchy.init", "--format", "json"])
    assert shown.exit_code == 0 and '"outcome": "success"' in shown.output
