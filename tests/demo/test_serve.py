"""`make serve`: scripts/serve.py started as a subprocess on a temporary data directory given as
a relative path (in a directory whose name has a space: every path handed to a shell or to
pcscd must survive it); each service is its own gunicorn process and answers on its printed
port (the RA's first officer logs in with the password from the 0600 file; a business system
calls the gateway with the credentials the set-up issued, and has the gateway decrypt what was
enveloped to its encryption certificate); the RA's directory and command line hold no CA key,
no KMC share and no storage key; the custodians' shares are outside the data directory;
Ctrl-C and SIGTERM stop every process; a service that dies ends serve naming it; a second start
reuses the data and the ports; unusable starts are refused with the reason. The card login: the
identity provider and the sample business system answer, each in its own zone holding only its
own secrets, and a holder logs in to the sample page in headless Chromium with the demo card in
pcscd's reader through the agent serve started (consent and PIN on serve's standard input); the
same card logs in to the RA's web UI as the demo officer its holder is, through the same
provider, while the officers' password login still works."""

from __future__ import annotations

import json
import os
import re
import shlex
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
from typing import Any

import pytest
import requests
from asn1crypto.x509 import Certificate

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
        found = dict(re.findall(
            r"^ {3}(ca|kmc|ra|gateway|idp|sample-rp) +(http://127\.0\.0\.1:\d+)",
            self.output, re.MULTILINE))
        assert set(found) == {"ca", "kmc", "ra", "gateway", "idp", "sample-rp"}, self.output
        return found

    def stop(self, how: signal.Signals = signal.SIGINT) -> int:
        self.proc.send_signal(how)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def start(home: Path, *extra: str, wait: bool = True) -> Running:
    # relative, as `make serve` gives it (the default ./serve-data)
    # stdin a pipe: the agent serve starts for the demo card reads consent and PIN from it
    proc = subprocess.Popen([sys.executable, str(SERVE), "--home", home.name, *extra],
                            cwd=home.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
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


def service_processes(home: Path) -> dict[int, list[str]]:
    """pid -> argv of every `python -m sscard.cli --home <home or a zone under it>` process
    (gunicorn masters and workers)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "sscard.cli" in argv and "--home" in argv:
            where = Path(argv[argv.index("--home") + 1])
            if where == home or home in where.parents:
                found[int(entry.name)] = argv
    return found


def command_lines(home: Path) -> dict[str, list[str]]:
    """service name -> argv of its processes (the word after --home DIR; the sample business
    system is ``idp sample-rp``)."""
    return {"sample-rp" if "sample-rp" in argv else argv[argv.index("--home") + 2]: argv
            for argv in service_processes(home).values()}


def none_left(home: Path) -> bool:
    """No service process of ``home`` is left (polled: a process group takes a moment to go)."""
    deadline = time.monotonic() + 60
    while service_processes(home):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("serve") / "a place" / "serve-data"
    home.parent.mkdir()
    running = start(home, "--any-ports")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


def test_the_ocsp_responder_runs_apart_under_granian(served: Running) -> None:
    found = re.search(r"^ {3}ocsp +(http://127\.0\.0\.1:\d+)/ocsp", served.output, re.MULTILINE)
    assert found is not None, served.output
    assert requests.get(f"{found[1]}/health", timeout=10).json()["service"] == "ca-ocsp"
    garbage = requests.post(f"{found[1]}/ocsp", data=b"\x30\x00", timeout=10,
                            headers={"Content-Type": "application/ocsp-request"})
    assert garbage.status_code == 200  # an OCSP malformedRequest, never an HTTP error
    assert garbage.content == b"\x30\x03\x0a\x01\x01"
    processes = [argv for argv in service_processes(served.home).values()
                 if "ocsp-serve" in argv]
    assert processes, "no ca ocsp-serve process"


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


def business_system(home: Path) -> tuple[SoftwareKey, Certificate]:
    """The business system's own credentials (outside the gateway's directory)."""
    where = home / "business-system"
    passphrase = (where / "employment.pass").read_text().strip().encode()
    return (SoftwareKey.load(where / "employment.key.pem", passphrase),
            load_certificate((where / "employment.pem").read_bytes()))


def test_business_system_calls_the_gateway(served: Running) -> None:
    key, cert = business_system(served.home)
    assert str(served.home / "business-system" / "employment.pass") in served.output
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


def test_business_system_decrypts_at_the_gateway(served: Running) -> None:
    """Its encryption certificate (profile business-system-encrypt: keyEncipherment, no EKU)
    is what documents are enveloped to; the gateway holds the key and opens them for it, and
    for no other caller; the encryption certificate never authenticates a caller."""
    key, cert = business_system(served.home)
    enc = load_certificate((served.home / "business-system" / "employment-enc.pem").read_bytes())
    assert enc.key_usage_value.native == {"key_encipherment", "data_encipherment"}
    assert enc.extended_key_usage_value is None
    client = GatewayClient(served.urls()["gateway"], key=key, certificate=cert)
    envelope = client.encrypt("社保 business document".encode(), [enc])
    assert client.decrypt(envelope) == "社保 business document".encode()
    config = (served.home / "gateway" / "gateway.toml").read_text()
    assert 'decryption_key = "employment-enc"' in config and '"decrypt"' in config


def test_zones_hold_only_their_own_secrets(served: Running) -> None:
    """The RA's directory: its database, audit log, service identity and KMC caller key, and
    nothing of the CA's or the KMC's; its command line names no share and no CA key. The
    gateway's directory: its configuration, the CA's chain and the keys it holds. The
    custodians' shares and passphrases: beside the data directory, not in it."""
    home = served.home
    ra = {str(p.relative_to(home / "ra")) for p in (home / "ra").rglob("*") if p.is_file()}
    ra -= {n for n in ra if n.startswith("audit.sqlite") or n.startswith("ra.db")}
    assert ra == {"ra-service.pem", "ra-service.key.pem", "secrets/service-key.pass",
                  "secrets/kmc-ra.key", "audit/audit-key.pem", "audit/audit-cert.pem",
                  "secrets/audit.pass", "card-number-readers/idp.pem",
                  "ra-card-login.toml", "secrets/ra-idp.secret"}, ra
    # the RA's client secret at the provider: in the RA's zone only (the provider keeps a
    # hash of it), 0600, never printed
    ra_secret = home / "ra" / "secrets" / "ra-idp.secret"
    assert stat.S_IMODE(ra_secret.stat().st_mode) == 0o600
    secret = ra_secret.read_text().strip().encode()
    assert secret.decode() not in served.output
    for path in home.rglob("*"):
        if path.is_file() and not path.is_socket() and path != ra_secret:
            assert secret not in path.read_bytes(), path
    ca_passphrase = (home / "secrets" / "key-passphrase").read_text().strip()
    for path in (home / "ra").rglob("*"):
        if path.is_file():
            assert ca_passphrase.encode() not in path.read_bytes(), path
    ra_command = " ".join(command_lines(home)["ra"])
    assert "--share" not in ra_command and ".custody" not in ra_command
    assert str(home / "secrets" / "key-passphrase") not in ra_command  # the CA's
    assert f"--home {home / 'ra'} " in ra_command and "--ca-url" in ra_command
    assert f"--card-login {home / 'ra' / 'ra-card-login.toml'}" in ra_command
    gateway = {p.name for p in (home / "gateway").iterdir() if p.is_file()}
    assert {"gateway.toml", "root.pem", "issuing-ca.pem", "hr-sign.key.pem",
            "employment-enc.key.pem"} <= gateway
    assert not list(home.rglob("share-*.json")) and not (home / "kmc-shares").exists()
    custody = home.parent / "serve-data.custody"
    assert len(list(custody.glob("share-*.json"))) == 3
    phrases = []
    for name in ("zhang", "li", "wang"):
        assert stat.S_IMODE((custody / f"{name}.pass").stat().st_mode) == 0o600
        phrases.append((custody / f"{name}.pass").read_text().strip().encode())
    for path in home.rglob("*"):  # a backup of the data directory carries none of them
        if path.is_file() and not path.is_socket():
            content = path.read_bytes()
            assert not any(p in content for p in phrases), path
    assert str(custody) in served.output
    assert set(command_lines(home)) == {"ca", "kmc", "ra", "gateway", "idp", "sample-rp"}


def test_the_card_pin_is_printed_and_in_a_private_file(served: Running) -> None:
    pin_file = served.home / "card" / "pin"
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    pin = pin_file.read_text().strip()
    assert f"PIN {pin} (a demo card; also in {pin_file})" in served.output


def test_sscard_command_is_named(served: Running) -> None:
    assert f"the sscard command is {Path(sys.executable).parent / 'sscard'}" in served.output


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
from pathlib import Path
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import PcscTransport
from sscard.emulator.pcscd import CARD_READER
from asn1crypto.x509 import Certificate

from sscard.gateway.client import GatewayClient
from sscard.keys.software import SoftwareKey
from sscard.x509.parse import load_certificate

home, gateway = Path(sys.argv[2]), sys.argv[3]
where = home / "business-system"
system_key = SoftwareKey.load(where / "employment.key.pem",
                              (where / "employment.pass").read_text().strip().encode())
system_cert = load_certificate((where / "employment.pem").read_bytes())
pin = (home / "card" / "pin").read_text().strip()
client = CardClient(PcscTransport(CARD_READER))
client.connect()
info = client.read_info()
print("holder", info.holder.name, info.holder.ssn)
cert = client.read_certificate("sign")
answer = GatewayClient(gateway, key=system_key, certificate=system_cert
                       ).authenticate_cardholder(CardKey(client, lambda: pin), cert)
print("authenticated", answer["authenticated"], answer["cardholder"]["common_name"],
      answer["reasons"])
client.close()
"""


def test_cardholder_authenticates_over_pcsc(served: Running) -> None:
    match = re.search(r"export (PCSCLITE_CSOCK_NAME=.+)$", served.output, re.MULTILINE)
    if match is None:
        assert os.environ.get("CI") != "true", served.output
        pytest.skip("no pcscd here: the serve's card is in-process only")
    # the line as a shell reads it (the path has a space, so it is quoted)
    (assignment,) = shlex.split(match.group(1))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=assignment.split("=", 1)[1])
    result = subprocess.run([sys.executable, "-c", PCSC_CLIENT, str(ROOT / "scripts"),
                             str(served.home), served.urls()["gateway"]], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "holder 张三 639900199001011234" in result.stdout
    assert "authenticated True 张三 []" in result.stdout


def test_the_provider_and_the_sample_page_answer(served: Running) -> None:
    urls = served.urls()
    idp, sample = urls["idp"], urls["sample-rp"]
    meta = requests.get(idp + "/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == idp and meta["code_challenge_methods_supported"] == ["S256"]
    assert f"Try a card login: open {sample}/ in a browser" in served.output
    assert 'id="login"' in requests.get(sample + "/", timeout=10).text
    start = requests.get(sample + "/login", timeout=10, allow_redirects=False)
    assert start.status_code == 302 and start.headers["Location"].startswith(idp + "/authorize?")
    client_id = (served.home / "sample-rp" / "client.id").read_text().strip()
    assert f"client_id={client_id}" in start.headers["Location"]
    assert "code_challenge_method=S256" in start.headers["Location"]
    # the registration was the administrator's CLI at set-up: in the provider's audit log
    from click.testing import CliRunner

    from sscard.cli import cli

    shown = CliRunner().invoke(cli, ["--home", str(served.home / "idp"), "audit", "show",
                                     "--action", "idp.client.add", "--format", "json"])
    assert shown.exit_code == 0 and client_id in shown.output, shown.output


def test_login_zones_hold_only_their_own_secrets(served: Running) -> None:
    """The provider's directory: its configuration, the CA certificates it trusts and its own
    database (its ID-token keys); the sample business system's: its client id and secret and
    its session key (0600), nothing of the provider's. No CA key or passphrase in either."""
    home = served.home
    idp = {str(p.relative_to(home / "idp")) for p in (home / "idp").rglob("*") if p.is_file()}
    idp = {n for n in idp if not n.startswith(("idp.sqlite", "audit.sqlite"))}
    assert {"idp.toml", "root.pem", "issuing-ca.pem", "idp-service.pem", "idp-service.key.pem",
            "secrets/service-key.pass"} <= idp <= {
        "idp.toml", "root.pem", "issuing-ca.pem", "idp-service.pem", "idp-service.key.pem",
        "secrets/service-key.pass", "audit/audit-key.pem", "audit/audit-cert.pem",
        "secrets/audit.pass"}, idp
    # the RA names the provider's service certificate as its one card-number reader
    assert (home / "ra" / "card-number-readers" / "idp.pem").read_bytes() == \
        (home / "idp" / "idp-service.pem").read_bytes()
    rp = {str(p.relative_to(home / "sample-rp")) for p in (home / "sample-rp").rglob("*")
          if p.is_file()}
    assert rp == {"sample-rp.toml", "client.id", "secrets/client.secret",
                  "secrets/session.key"}, rp
    for name in ("secrets/client.secret", "secrets/session.key"):
        path = home / "sample-rp" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() not in served.output
    ca_passphrase = (home / "secrets" / "key-passphrase").read_text().strip().encode()
    for zone in ("idp", "sample-rp", "agent"):
        for path in (home / zone).rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert ca_passphrase not in content, path
                # the private keys: the provider's own (audit checkpoints, service identity)
                assert b"PRIVATE KEY-----" not in content or path.name in (
                    "audit-key.pem", "idp-service.key.pem"), path
    lines = command_lines(home)
    for name in ("idp", "sample-rp"):
        command = " ".join(lines[name])
        assert f"--home {home / name} " in command and ".custody" not in command
        assert "key-passphrase" not in command and "--share" not in command


def log_in_with_the_demo_card(served: Running, browser: Any, start: str, button: str) -> str:
    """From the page ``start``, its button ``button`` -> the provider's login page -> the agent
    serve started -> the demo card in pcscd's reader (PIN verified by the card) -> the
    provider's consent page, allowed. Consent (once for the provider's origin) and PIN reach
    the agent on serve's standard input, never the page. Returns the consent page's client
    name."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.idp.test_login_e2e import consent_page_or_refusal

    idp = served.urls()["idp"]
    pin = (served.home / "card" / "pin").read_text().strip()
    agent_log = served.home / "logs" / "agent.log"
    consents = served.home / "agent" / "consent.json"
    assert served.proc.stdin is not None
    wait = WebDriverWait(browser, 90)
    browser.get(start)
    browser.find_element(By.ID, button).click()
    wait.until(lambda d: d.find_elements(By.ID, "sscard-login"))
    assert browser.current_url.startswith(idp + "/login?")
    if not consents.exists() or idp not in consents.read_text():
        served.proc.stdin.write("yes\n")  # the holder allows the provider's origin, once
        served.proc.stdin.flush()
    asked = agent_log.read_text().count("PIN asked")
    browser.find_element(By.ID, "sscard-login").click()
    deadline = time.monotonic() + 60  # the agent says when it waits for the PIN
    while agent_log.read_text().count("PIN asked") <= asked:
        assert time.monotonic() < deadline, agent_log.read_text()
        time.sleep(0.1)
    served.proc.stdin.write(pin + "\n")
    served.proc.stdin.flush()
    name = consent_page_or_refusal(wait)
    if not name.startswith("refused"):
        browser.find_element(By.CSS_SELECTOR, 'button[value="allow"]').click()
    assert pin not in agent_log.read_text()
    return name


def needs_the_agent(served: Running) -> None:
    if "the browser agent for the demo card listens on" not in served.output:
        assert os.environ.get("CI") != "true", served.output
        pytest.skip("no pcscd here: serve starts no agent")


def test_a_holder_logs_in_to_the_sample_page_in_chromium(served: Running) -> None:
    """The sample page -> the provider -> the agent -> the demo card -> consent -> the sample
    page shows the holder, with the card number the provider had from the RA."""
    needs_the_agent(served)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.ra.browser import chromium

    urls = served.urls()
    for opened in chromium():
        browser: Any = opened  # a selenium WebDriver
        assert log_in_with_the_demo_card(served, browser, urls["sample-rp"] + "/",
                                         "login") == "社保业务系统（示例）"
        WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.ID, "holder"))
        assert browser.current_url == urls["sample-rp"] + "/"
        assert browser.find_element(By.ID, "name").text == "张三"
        assert browser.find_element(By.ID, "ssn").text == "639900199001011234"
        # verified at the RA's registry (the card number is not in the certificate)
        assert browser.find_element(By.ID, "card-number").text == "D63990001"


def test_an_officer_logs_in_to_the_ra_with_the_demo_card_in_chromium(served: Running) -> None:
    """The RA's log-in page -> "log in with my card" -> the same provider and agent -> the
    demo card -> consent for the RA (registered at the provider with the certificate scope)
    -> the officer's page of zhangsan, the account whose registered certificate is the card's
    and whose person is its holder; the role (operator) is the RA database's. Then log-out
    through the provider back to the RA's log-in page."""
    needs_the_agent(served)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.ra.browser import chromium

    ra = served.urls()["ra"]
    assert f"RA card login: open {ra}/login" in served.output
    assert "the demo card logs in as officer 'zhangsan'" in served.output
    for opened in chromium():
        browser: Any = opened  # a selenium WebDriver
        wait = WebDriverWait(browser, 90)
        assert log_in_with_the_demo_card(served, browser, ra + "/login",
                                         "card-login") == "注册审核系统"
        wait.until(lambda d: d.find_elements(By.ID, "logout"))
        assert browser.current_url == ra + "/", browser.current_url
        assert browser.find_element(By.ID, "whoami").text.startswith("zhangsan")
        browser.get(ra + "/batches")  # an officer's page: zhangsan is a counter operator
        assert browser.find_element(By.ID, "status-code").text == "403"
        browser.get(ra + "/")
        browser.find_element(By.ID, "logout").click()
        wait.until(lambda d: d.current_url.startswith(ra + "/login"))
        browser.get(ra + "/")
        assert browser.current_url.startswith(ra + "/login")


def test_the_demo_card_officer_also_has_a_password(served: Running) -> None:
    """The card login is an addition: zhangsan's password (a 0600 file beside the others')
    logs in too, and no other officer's certificate is registered."""
    password_file = served.home / "secrets" / "officers" / "zhangsan"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert password not in served.output
    ra = served.urls()["ra"]
    session = requests.Session()
    form = session.get(f"{ra}/login", timeout=10)
    assert 'id="card-login"' in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    ok = session.post(f"{ra}/login", data={"csrf_token": token.group(1), "username": "zhangsan",
                                           "password": password}, timeout=30,
                      allow_redirects=False)
    assert ok.status_code == 302, ok.text[:500]


def test_ctrl_c_stops_and_a_second_start_reuses_the_data(served: Running) -> None:
    urls = served.urls()
    root = (served.home / "export" / "root.pem").read_bytes()
    assert served.stop() == 0
    assert "Stopping" in served.output
    assert none_left(served.home)  # every service's process group, workers too
    assert not any(answers(u) for u in urls.values())

    again = start(served.home)
    try:
        assert "Reusing the all-in-one system" in again.output
        assert again.urls() == urls  # the CA's URL is in its certificates: same ports
        assert (served.home / "export" / "root.pem").read_bytes() == root
        assert requests.get(urls["kmc"] + "/health", timeout=10).json()["sealed"] is False
    finally:
        assert again.stop(signal.SIGTERM) == 0
    assert none_left(served.home)
    # a closed terminal (SIGHUP) stops everything too
    third = start(served.home, "--no-pcscd")
    assert third.stop(signal.SIGHUP) == 0
    assert none_left(served.home)


def test_a_directory_set_up_before_gets_the_ra_card_login(served: Running) -> None:
    """A data directory of a `make serve` from before the RA's card login (no
    ra-card-login.toml, no RA secret at the provider): the next start registers the RA at the
    provider, writes both into the RA's zone, registers the demo card's certificate for the
    officer, and starts the RA with --card-login; its card button leads to the provider with the
    new client id."""
    if served.proc.poll() is None:
        served.stop()
    ra_zone = served.home / "ra"
    old = (ra_zone / "ra-card-login.toml").read_text()
    for name in ("ra-card-login.toml", "secrets/ra-idp.secret"):
        (ra_zone / name).unlink()
    (served.home / "card" / "sign.pem").unlink()
    again = start(served.home, "--no-pcscd")
    try:
        assert "Adding the RA officers' card login" in again.output
        assert "registered for RA officer 'zhangsan'" in again.output
        config = (ra_zone / "ra-card-login.toml").read_text()
        client_id = re.search(r'^client_id = "([^"]+)"$', config, re.MULTILINE)
        assert client_id is not None and config != old
        assert stat.S_IMODE((ra_zone / "secrets" / "ra-idp.secret").stat().st_mode) == 0o600
        assert "--card-login" in command_lines(served.home)["ra"]
        urls = again.urls()
        to_idp = requests.get(urls["ra"] + "/login/card", timeout=30, allow_redirects=False)
        assert to_idp.status_code == 302, to_idp.text[:500]
        assert to_idp.headers["Location"].startswith(urls["idp"] + "/authorize?")
        assert f"client_id={client_id[1]}" in to_idp.headers["Location"]
    finally:
        assert again.stop() == 0
    assert none_left(served.home)


def test_a_service_that_dies_ends_serve_naming_it(served: Running) -> None:
    if served.proc.poll() is None:
        served.stop()
    again = start(served.home)
    try:
        kmc = next(pid for pid, argv in service_processes(served.home).items()
                   if "kmc" in argv and os.getpgid(pid) == pid)  # the gunicorn master
        os.killpg(kmc, signal.SIGKILL)
        assert again.proc.wait(timeout=60) == 1
    finally:
        if again.proc.poll() is None:
            again.stop()
    time.sleep(0.2)
    assert re.search(r"the kmc service \(pid \d+\) exited with code -9", again.output), \
        again.output
    assert "stopping the others" in again.output
    assert none_left(served.home)


def test_killed_serve_takes_its_services_with_it(served: Running) -> None:
    """Even SIGKILL, which serve cannot catch, leaves no service running (each child asked
    the kernel for SIGTERM when its parent dies)."""
    if served.proc.poll() is None:
        served.stop()
    again = start(served.home, "--no-pcscd")  # a killed serve cannot stop its pcscd
    assert len(command_lines(served.home)) == 6
    again.proc.kill()
    again.proc.wait(timeout=30)
    assert none_left(served.home)


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
    """Each service's audit log (the CA's and KMC's, the RA's, the gateway's) holds signed
    checkpoints (made at each start over what came before, and on a timer) and verifies
    against its own directory's audit certificate with `sscard audit verify`. Runs after the
    restarts above, so that the gateway's calls of the first run are under a checkpoint."""
    from click.testing import CliRunner

    from sscard.audit.scheduled import CERT_FILE
    from sscard.cli import cli

    if served.proc.poll() is None:
        served.stop()
    for zone in (served.home, served.home / "ra", served.home / "gateway"):
        result = CliRunner().invoke(cli, ["--home", str(zone), "audit", "verify", "--cert",
                                          str(zone / CERT_FILE), "--json"])
        assert result.exit_code == 0, (zone, result.output)
        report = json.loads(result.output)
        assert report["intact"] and report["checkpoints"] >= 1 and report["records"] > 0, \
            (zone, report)
    shown = CliRunner().invoke(cli, ["--home", str(served.home), "audit", "show", "--action",
                                     "ca.hierarchy.init", "--format", "json"])
    assert shown.exit_code == 0 and '"outcome": "success"' in shown.output
    # the card's certificates were issued by the CA process for the RA's service identity
    # (principal ra), its encryption key generated by the KMC process for the RA's caller
    for action, profile in (("ca.certificate.issue", "profile:cardholder-sign"),
                            ("ca.certificate.issue", "profile:cardholder-encrypt"),
                            ("kmc.escrow.generate", None)):
        shown = CliRunner().invoke(cli, ["--home", str(served.home), "audit", "show",
                                         "--action", action, "--format", "json"])
        records = [json.loads(line) for line in shown.output.splitlines()]
        assert any(r["actor"] == "ra" and r["outcome"] == "success"
                   and profile in (None, r["object"]) for r in records), shown.output
    shown = CliRunner().invoke(cli, ["--home", str(served.home / "gateway"), "audit", "show",
                                     "--action", "gateway.decrypt", "--format", "json"])
    assert shown.exit_code == 0 and '"actor": "employment"' in shown.output, shown.output


def test_a_home_of_the_one_process_serve_is_refused(tmp_path: Path) -> None:
    """A data directory set up by the earlier one-process `make serve` (no RA or gateway
    directory of their own) is named, not half-used."""
    home = tmp_path / "serve-data"
    home.mkdir()
    (home / "ports.json").write_text('{"ca": 1, "kmc": 2, "ra": 3, "gateway": 4}\n')
    (home / "ra.db").write_text("")
    refused = start(home, wait=False)
    assert refused.proc.wait(timeout=60) == 2
    time.sleep(0.2)
    assert "ran everything in one process" in refused.output
    assert sorted(p.name for p in home.iterdir()) == ["ports.json", "ra.db"]


def test_custody_of_another_set_up_is_refused(tmp_path: Path) -> None:
    """A first start never mixes its shares with another set-up's left in DIR.custody."""
    custody = tmp_path / "serve-data.custody"
    custody.mkdir()
    (custody / "share-01-zhang.json").write_text("{}")
    refused = start(tmp_path / "serve-data", "--any-ports", wait=False)
    assert refused.proc.wait(timeout=60) == 2
    time.sleep(0.2)
    assert "custodians' shares of another set-up" in refused.output
    assert not (tmp_path / "serve-data").exists()
    assert [p.name for p in custody.iterdir()] == ["share-01-zhang.json"]


def test_sigterm_during_the_first_start_leaves_no_process(tmp_path: Path) -> None:
    """Stopped while its services are starting: every one started so far is stopped, and the
    half-made directory is refused at the next start."""
    home = tmp_path / "serve-data"
    starting = start(home, "--any-ports", "--no-pcscd", wait=False)
    try:
        deadline = time.monotonic() + 120
        while not service_processes(home):
            assert starting.proc.poll() is None, starting.output
            assert time.monotonic() < deadline, starting.output
            time.sleep(0.1)
        starting.proc.send_signal(signal.SIGTERM)
        assert starting.proc.wait(timeout=60) == 130
    finally:
        if starting.proc.poll() is None:
            starting.proc.kill()
    assert none_left(home)
    time.sleep(0.2)
    assert "Interrupted: stopping" in starting.output
    again = start(home, wait=False)
    assert again.proc.wait(timeout=60) == 2
