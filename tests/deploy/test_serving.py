"""Every service as deployed: ``sscard ca|kmc|ra|gateway serve`` under gunicorn with two
workers, over HTTP and over HTTPS (an encrypted TLS key whose passphrase comes from a file),
mutual TLS, and no werkzeug development server anywhere. One data directory holds a CA (``ca
init``) and a KMC (ceremony, callers) that all four services are started on in turn."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bench._common import stop_group
from tests.deploy.tlsfiles import TlsFiles, free_port, make_tls_files

SERVE_TIMEOUT = 90
WERKZEUG_WARNING = "development server"

CA_CONFIG = """\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=Serving Test Root,O=人社厅,C=CN"
algorithm = "sm2"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=Serving Test Issuing,O=人社厅,C=CN"
algorithm = "sm2"
validity_days = 1825
path_length = 0
"""


def sscard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sscard.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"sscard {' '.join(args)}: {done.stderr}"
    return done


@dataclass
class Site:
    """A data directory with a CA and a KMC, and the files each service's command needs."""

    home: Path
    tmp: Path
    tls: TlsFiles

    def shares(self) -> list[str]:
        args: list[str] = []
        for name in ("zhang", "li"):
            share = next((self.tmp / "shares").glob(f"share-*-{name}.json"))
            args += ["--share", str(share), "--share-passphrase-file",
                     str(self.tmp / f"{name}.pass")]
        return args

    def command(self, service: str) -> tuple[list[str], str]:
        """The serve command line (without listening options) and a path that answers 200."""
        if service == "ca":
            return ["ca", "serve"], "/certs/chain.pem"
        if service == "kmc":
            return ["kmc", "serve", *self.shares()], "/health"
        if service == "ra":
            return ["ra", "serve", *self.shares(), "--kmc-ra-key-file",
                    str(self.tmp / "ra.key")], "/login"
        assert service == "gateway"
        return ["gateway", "serve", "--config", str(self.tmp / "gateway.toml")], "/health"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    tmp = tmp_path_factory.mktemp("site")
    home = tmp / "home"
    (tmp / "ca.toml").write_text(CA_CONFIG, encoding="utf-8")
    sscard(home, "ca", "init", "--config", str(tmp / "ca.toml"))
    sscard(home, "ca", "certs", "--out", str(tmp / "chain.pem"))
    args = ["kmc", "ceremony", "--threshold", "2", "--shares-dir", str(tmp / "shares"),
            "--officiant", "test"]
    for name in ("zhang", "li", "wang"):
        (tmp / f"{name}.pass").write_text(f"{name} passphrase 1\n")
        (tmp / f"{name}.pass").chmod(0o600)  # secret files are refused when others can read
        args += ["--custodian", name, "--custodian-passphrase-file", str(tmp / f"{name}.pass")]
    sscard(home, *args)
    for name, role in (("ra", "ra"), ("ca", "ca")):
        sscard(home, "kmc", "caller", "add", name, "--role", role, "--key-out",
               str(tmp / f"{name}.key"))
    (tmp / "gateway.toml").write_text(
        f'trust_anchors = ["chain.pem"]\naudit_url = "sqlite:///{tmp / "gateway-audit.db"}"\n',
        encoding="utf-8")
    return Site(home, tmp, make_tls_files(tmp / "tls"))


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    user_home: Path  # $HOME of the service's user

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, verify: str | bool,
          cert: tuple[str, str] | None) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {log.read_text()}")
        try:
            if requests.get(url, timeout=2, verify=verify, cert=cert).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # a loaded machine: try again
            pass
        time.sleep(0.2)
    raise AssertionError(f"did not come up: {log.read_text()}")


Start = Callable[..., Served]


@pytest.fixture
def serve(site: Site, tmp_path: Path) -> Iterator[Start]:
    running: list[subprocess.Popen[bytes]] = []

    def start(service: str, *listen: str, client: bool = False) -> Served:
        args, path = site.command(service)
        port = free_port()
        log = tmp_path / f"{service}-{port}.log"
        user_home = tmp_path / f"user-{service}-{port}"
        user_home.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sscard.cli", "--home", str(site.home), *args,
                 "--port", str(port), "--workers", "2", *listen],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**env, "HOME": str(user_home)})
        running.append(proc)
        tls = "--tls-cert" in listen
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        _wait(proc, url + path, log, str(site.tls.ca) if tls else True,
              site.tls.client_pair if client else None)
        return Served(proc, url + path, log, user_home)

    yield start
    for proc in running:
        stop_group(proc)


def _workers(master: int, expected: int = 2, wait: float = 30.0) -> list[int]:
    """The gunicorn master's worker processes (its children, from /proc), once ``expected`` of
    them have booted or ``wait`` seconds have passed (one worker may answer before the other
    has booted on a loaded machine)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    deadline = time.monotonic() + wait
    while True:
        found = [int(p) for p in children.read_text().split()] if children.exists() else []
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _tls_args(site: Site) -> list[str]:
    return ["--tls-cert", str(site.tls.server_cert), "--tls-key", str(site.tls.server_key),
            "--tls-key-passphrase-file", str(site.tls.server_passphrase)]


@pytest.mark.parametrize("service", ["ca", "kmc", "ra", "gateway"])
def test_served_by_gunicorn_over_http_and_https(site: Site, serve: Start,
                                                service: str) -> None:
    start = serve
    plain = start(service)
    assert requests.get(plain.url, timeout=10).status_code == 200
    assert len(_workers(plain.proc.pid)) == 2, plain.stderr()

    secure = start(service, *_tls_args(site))
    answer = requests.get(secure.url, timeout=10, verify=str(site.tls.ca))
    assert answer.status_code == 200
    assert len(_workers(secure.proc.pid)) == 2, secure.stderr()
    # the HTTPS port speaks only TLS, and the certificate is the configured one
    with pytest.raises(requests.ConnectionError):
        requests.get(secure.url.replace("https:", "http:"), timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(secure.url, timeout=5, verify=True)  # not a public CA's

    for served in (plain, secure):
        text = served.stderr()
        assert "Booting worker" in text and "gunicorn" in text.lower()
        assert WERKZEUG_WARNING not in text and "werkzeug" not in text.lower(), text
        # the TLS key's passphrase is never printed
        assert site.tls.passphrase not in text
        # no gunicorn control socket: it would let any process of the same user stop or
        # reconfigure the service, and two services would take each other's socket
        assert list(served.user_home.rglob("*")) == [], list(served.user_home.rglob("*"))
    # both workers of both processes recorded (service keys, unsealing) into one audit log
    # and one ceremony log at once: each is still one intact chain
    sscard(site.home, "audit", "verify")  # exit 0: intact
    assert "chain intact" in sscard(site.home, "kmc", "ceremony-log").stdout


def test_mutual_tls_requires_a_client_certificate(site: Site, serve: Start) -> None:
    served = serve("gateway", *_tls_args(site), "--tls-client-ca",
                   str(site.tls.ca), client=True)
    answer = requests.get(served.url, timeout=10, verify=str(site.tls.ca),
                          cert=site.tls.client_pair)
    assert answer.status_code == 200
    with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
        requests.get(served.url, timeout=10, verify=str(site.tls.ca))


def test_session_is_valid_at_every_worker(site: Site, serve: Start, tmp_path: Path) -> None:
    """The RA's session-cookie key is made once, by the master: a log-in at one worker holds at
    the other (each request on a new connection, so both workers answer)."""
    password = tmp_path / "pw"
    password.write_text("a long enough password\n")
    password.chmod(0o600)
    sscard(site.home, "ra", "add-officer", "serving-officer", "--role", "officer",
           "--person-id", "110101198001010033", "--password-file", str(password))
    served = serve("ra", "--insecure-http")
    base = served.url.removesuffix("/login")
    page = requests.get(base + "/login", timeout=10)
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    login = requests.post(base + "/login", timeout=10, allow_redirects=False,
                          cookies=page.cookies,
                          data={"csrf_token": csrf, "username": "serving-officer",
                                "password": "a long enough password"})
    assert login.status_code == 302 and "/login" not in login.headers["Location"], login.text
    for _ in range(12):
        home = requests.get(base + "/", timeout=10, cookies=login.cookies,
                            allow_redirects=False, headers={"Connection": "close"})
        assert home.status_code == 200, home.headers


Edit = Callable[[list[str]], list[str]]


@pytest.mark.parametrize("edit,message", [
    (lambda a: [*a[:5], str(Path(a[5]).with_name("wrong.pass"))], "wrong passphrase"),
    (lambda a: a[:2], "--tls-cert and --tls-key go together"),
    (lambda a: a[:4], "an encrypted key needs --tls-key-passphrase-file"),
    (lambda a: [a[0], a[3], a[2], a[1], *a[4:]], "a key that does not match"),  # swapped
    (lambda a: ["--tls-client-ca", a[1]], "need --tls-cert"),
])
def test_bad_tls_options_are_named_and_nothing_is_served(site: Site, edit: Edit,
                                                         message: str) -> None:
    (site.tls.server_passphrase.with_name("wrong.pass")).write_text("not it\n")
    (site.tls.server_passphrase.with_name("wrong.pass")).chmod(0o600)
    args = edit(_tls_args(site))
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(site.home), "ca", "serve",
         "--port", str(port), *args], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert site.tls.passphrase not in done.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_tls_context_verifies_the_client_certificate(site: Site) -> None:
    """The helper's context, directly: the client CA makes client certificates required."""
    from sscard.serving import ServeOptions, tls_context

    passphrase = site.tls.server_passphrase.read_text().strip().encode()
    context = tls_context(ServeOptions(tls_cert=site.tls.server_cert,
                                       tls_key=site.tls.server_key,
                                       tls_key_passphrase=passphrase,
                                       tls_client_ca=site.tls.ca))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert passphrase.decode() not in repr(ServeOptions(
        tls_cert=site.tls.server_cert, tls_key=site.tls.server_key,
        tls_key_passphrase=passphrase))


def _append_many(path: str, worker: int) -> None:
    from keymgmt import ceremony_log

    for i in range(15):
        ceremony_log.append(Path(path), "unseal.ok", actor=f"worker-{worker}", n=i)


def test_workers_unsealing_together_keep_one_ceremony_chain(tmp_path: Path) -> None:
    """Each KMC (and RA) worker unseals after the fork and appends to the ceremony log: appends
    from several processes at once must stay one hash chain, not fork it."""
    import multiprocessing

    from keymgmt import ceremony_log

    path = tmp_path / "ceremony.log"
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_append_many, args=(str(path), w)) for w in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert ceremony_log.verify(path) == 6 * 15


def test_bad_gateway_configuration_is_named_before_serving(site: Site, tmp_path: Path) -> None:
    bad = tmp_path / "gateway.toml"
    bad.write_text('trust_anchors = ["missing-root.pem"]\n', encoding="utf-8")
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(site.home), "gateway", "serve",
         "--config", str(bad), "--port", str(port)], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert "missing-root.pem" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_plain_http_on_a_public_address_is_warned_about(site: Site, serve: Start) -> None:
    served = serve("gateway", "--host", "0.0.0.0")
    assert "serves plain HTTP on 0.0.0.0" in served.stderr()
    quiet = serve("gateway")  # 127.0.0.1
    assert "plain HTTP" not in quiet.stderr()


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """One TLS handshake over a socket pair; None when it succeeds, else the server's error."""
    import socket
    import threading

    left, right = socket.socketpair()
    errors: list[str] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as conn:
                conn.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"x")
            conn.recv(1)
    except (ssl.SSLError, OSError):
        pass
    thread.join(timeout=10)
    return errors[0] if errors else None


def test_mutual_tls_trusts_only_the_given_client_ca(site: Site, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With --tls-client-ca, the handshake accepts client certificates under that CA alone,
    never under the system's public CAs (which a default context would also trust)."""
    from sscard.serving import ServeOptions, tls_context
    from tests.deploy.tlsfiles import make_foreign_client

    public_ca, foreign = make_foreign_client(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(public_ca))  # the "system store" holds it
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    passphrase = site.tls.server_passphrase.read_text().strip().encode()
    server = tls_context(ServeOptions(tls_cert=site.tls.server_cert,
                                      tls_key=site.tls.server_key,
                                      tls_key_passphrase=passphrase,
                                      tls_client_ca=site.tls.ca))

    def client(pair: tuple[str, str]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(site.tls.ca))
        context.load_cert_chain(*pair)
        return context

    assert _handshake(server, client(site.tls.client_pair)) is None
    refused = _handshake(server, client(foreign))
    assert refused is not None and "certificate" in refused.lower(), refused


def test_ipv6_addresses_are_bracketed() -> None:
    from sscard.serving import ServeOptions

    assert ServeOptions(host="::1", port=8443).address == "[::1]:8443"
    assert ServeOptions(host="::", port=80).url == "http://[::]:80"
    assert ServeOptions(host="127.0.0.1", port=80).address == "127.0.0.1:80"


def test_reload_serves_a_renewed_certificate(site: Site, serve: Start, tmp_path: Path) -> None:
    """``systemctl reload`` (SIGHUP to the master): new workers read the certificate files
    again, so a renewed certificate is served without a restart."""
    from tests.deploy.tlsfiles import make_tls_files

    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.pem", "server.key", "server.pass"):
        shutil.copy(getattr(site.tls, {"server.pem": "server_cert", "server.key": "server_key",
                                       "server.pass": "server_passphrase"}[name]), live / name)
    served = serve("gateway", "--tls-cert", str(live / "server.pem"), "--tls-key",
                   str(live / "server.key"), "--tls-key-passphrase-file",
                   str(live / "server.pass"))
    renewed = make_tls_files(tmp_path / "renewed")  # another CA, same passphrase
    assert requests.get(served.url, timeout=10, verify=str(site.tls.ca)).ok
    shutil.copy(renewed.server_cert, live / "server.pem")
    shutil.copy(renewed.server_key, live / "server.key")
    os.kill(served.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(served.url, timeout=5, verify=str(renewed.ca),
                            headers={"Connection": "close"}).ok:
                break
        except (requests.ConnectionError, requests.Timeout):
            pass  # an old worker, still finishing or being stopped (SSLError is among these)
        assert time.monotonic() < deadline, served.stderr()
        time.sleep(0.3)
    with pytest.raises(requests.exceptions.SSLError):
        for _ in range(6):
            requests.get(served.url, timeout=5, verify=str(site.tls.ca),
                         headers={"Connection": "close"})


@pytest.mark.parametrize("service", ["ca", "kmc", "ra", "gateway"])
def test_an_audit_key_that_does_not_load_is_named_before_serving(
        site: Site, tmp_path: Path, service: str) -> None:
    """The data directory's audit signing key, passphrase and certificate are read by the
    service's own process before any worker starts: a passphrase that does not open the key
    ends the command with the files named, and nothing is served or replaced."""
    from sscard.audit.scheduled import KEY_FILE, PASS_FILE, home_audit_key

    home = tmp_path / "home"
    shutil.copytree(site.home, home)
    home_audit_key(home)  # made, as a first serve would
    key_before = (home / KEY_FILE).read_bytes()
    (home / PASS_FILE).write_text("another passphrase\n")
    args, _ = site.command(service)
    done = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(home), *args, "--port",
         str(free_port()), "--workers", "2"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "audit signing key" in done.stderr and str(home / PASS_FILE) in done.stderr, \
        done.stderr
    assert "wrong passphrase" in done.stderr and "Traceback" not in done.stderr
    assert "serving" not in done.stderr
    assert (home / KEY_FILE).read_bytes() == key_before
