"""The all-in-one system on the embedded default (``make demo``), and the helpers that
``make serve`` (scripts/serve.py, scripts/serve_setup.py) shares with it.

``make demo``: one process, one data directory: the CA (SM2 root and issuing CA, OCSP/CRL/TSA
service), the KMC (key ceremony with M-of-N custodian shares, unsealed by M of them), the RA
(officers, web UI, enrollment API) and the gateway, each with its own SQLite database, all
writing to one audit log; software keys encrypted under a passphrase kept in a 0600 file.

The services answer real HTTP on 127.0.0.1 (werkzeug, one thread per request). Real HTTP rather
than Flask test clients because the parts find each other the way they do in production: the
gateway checks revocation by asking the OCSP responder named in each certificate's AIA, the
reader tool talks to the RA's enrollment API, business systems use ``GatewayClient``. A server
is bound before the CA exists (its port goes into the certificates' AIA and CRL URLs) and is
given its application once that is built (``LateApp``).

Secrets set up here (custodian passphrases, officer passwords, API tokens) go to 0600 files in
the data directory, never to the terminal: ``make demo`` is a demonstration on one machine,
where the custodians' shares and their passphrases sit side by side in a directory it deletes
at its next run; a real KMC never keeps them so (``make serve`` keeps them out of its data
directory, in DIR.custody).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import x509
from werkzeug.serving import BaseWSGIServer, make_server

from ca.authority import CertificateAuthority
from ca.authorization import (
    RA_PROFILES,
    ApiOperation,
    CertificateIdentity,
    Principal,
    access_path,
    certificate_fingerprint,
    load_access,
    save_access,
)
from ca.config import default_config_text
from ca.ports_inprocess import ra_port
from ca.service import ServiceConfig
from ca.service import create_app as create_ca_app
from keymgmt import ceremony
from keymgmt.ports_inprocess import InProcessKmc
from keymgmt.service import KeyManagementCentre, KmcConfig
from keymgmt.service import Role as KmcRole
from keymgmt.web import create_app as create_kmc_app
from ra.models import Role
from ra.service import Actor, RegistrationAuthority
from ra.web import WebConfig
from ra.web import create_app as create_ra_app
from reader_tools.issuance_client import RestBackend
from reader_tools.personalize import AwaitingApproval, CardOrder, Outcome, Personalizer
from sscard.audit.log import AuditLog, default_url
from sscard.audit.scheduled import open_served_log
from sscard.card.auth import PsamAuthenticator
from sscard.card.client import CardClient
from sscard.card.records import HolderData
from sscard.emulator.inprocess import card_in_reader as emulated_card_in_reader
from sscard.emulator.sample import CardProfile, blank_card
from sscard.gateway.config import GatewayConfig, GatewayKey, SystemPolicy, fingerprint
from sscard.gateway.service import create_app as create_gateway_app
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name
from sscard.x509.pem import der_to_pem

Say = Callable[[str], None]


SERVICES = ("ca", "kmc", "ra", "gateway")


#: the key ceremony: three custodians, any two of them open the KMC's storage key
CUSTODIANS = ("zhang", "li", "wang")
THRESHOLD = 2

#: RA accounts: user name -> (display name, roles); "admin" is the first login printed by serve
OFFICERS: dict[str, tuple[str, frozenset[Role]]] = {
    "admin": ("系统管理员 Administrator", frozenset({Role.ADMINISTRATOR})),
    "wang": ("王芳 (counter operator)", frozenset({Role.OPERATOR, Role.OFFICER})),
    "li": ("李明 (RA officer)", frozenset({Role.OFFICER})),
    "zhao": ("赵强 (RA officer)", frozenset({Role.OFFICER})),
    "auditor": ("审计员 Auditor", frozenset({Role.AUDITOR})),
}

#: the gateway's signing key (department seal) and the business system that calls it
GATEWAY_KEY_ID = "hr-sign"
GATEWAY_KEY_SUBJECT = "CN=人社厅业务签名,O=某省人力资源和社会保障厅,C=CN"
SYSTEM_NAME = "employment"
SYSTEM_SUBJECT = "CN=employment,O=就业登记系统,C=CN"

#: the emulated card's region (its PSAM carries that region's test keys), PIN and number
REGION = "639900"
PIN = "246810"
CARD_NUMBER = "D63990001"
#: the card-issuing station's name at the RA's enrollment API
STATION = "counter-station-1"


# -- small file helpers ------------------------------------------------------------------------

def write_secret(path: Path, text: str) -> Path:
    """Write ``text`` to a new file only the owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def read_secret_file(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise RuntimeError(f"{path} is empty")
    return lines[0]


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(der_to_pem(c.dump(), "CERTIFICATE") for c in certs))
    return path


# -- HTTP servers in threads -------------------------------------------------------------------

class LateApp:
    """A WSGI app that answers 503 until the real one is attached."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{self.name} is starting\n".encode()]
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class ServerThread:
    """A threaded werkzeug server on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, name: str, port: int = 0) -> None:
        # one access-log line per request would bury the narration; errors still show
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.name = name
        self.late = LateApp(name)
        # werkzeug reports a busy port by printing and exiting; ask first to say which service
        if port and not port_is_free(port):
            raise RuntimeError(f"cannot listen for the {name} service on 127.0.0.1:{port}: "
                               "the port is in use")
        try:
            self.server: BaseWSGIServer = make_server("127.0.0.1", port, self.late,
                                                      threaded=True)
        except (OSError, SystemExit) as exc:
            raise RuntimeError(f"cannot listen for the {name} service on 127.0.0.1:{port}: "
                               f"{exc}") from None
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"http-{name}",
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def attach(self, app: Any) -> None:
        self.late.app = app

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@dataclass
class Servers:
    by_name: dict[str, ServerThread] = field(default_factory=dict)

    @classmethod
    def bind(cls, ports: dict[str, int] | None = None) -> Servers:
        servers = cls()
        try:
            for name in SERVICES:
                servers.by_name[name] = ServerThread(name, (ports or {}).get(name, 0))
        except BaseException:
            servers.stop()
            raise
        return servers

    def __getitem__(self, name: str) -> ServerThread:
        return self.by_name[name]

    def ports(self) -> dict[str, int]:
        return {name: s.port for name, s in self.by_name.items()}

    def stop(self) -> None:
        for server in self.by_name.values():
            server.stop()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # as the servers do: a closed server's connections in TIME_WAIT do not count as busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the system --------------------------------------------------------------------------------

@dataclass
class System:
    """Everything opened, in this process."""

    home: Path
    passphrase: bytes
    audit: AuditLog
    ca: CertificateAuthority
    root: CertificateAuthority
    kmc: KeyManagementCentre
    ra: RegistrationAuthority
    ra_token: str
    gateway: GatewayConfig
    system_key: SoftwareKey
    system_cert: x509.Certificate
    servers: Servers

    def officer(self, username: str) -> Actor:
        """Log in as an RA officer with the password from the data directory."""
        password = read_secret_file(self.home / "secrets" / "officers" / username)
        return self.ra.authenticate(username, password)

    def url(self, service: str) -> str:
        return self.servers[service].url

    def close(self) -> None:
        self.servers.stop()
        self.ra.close()
        self.kmc.close()
        self.root.close()
        self.ca.close()
        self.audit.engine.dispose()


def sscard_command() -> Path:
    """The venv's ``sscard`` (``make`` installs it there, not on PATH)."""
    return Path(sys.executable).parent / "sscard"


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def init_data_directory(home: Path) -> bytes:
    """The passphrase that encrypts every software key of this data directory (0600 file)."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    return write_secret(secrets_dir(home) / "key-passphrase",
                        secrets.token_urlsafe(24)).read_text().strip().encode()


def init_ca(home: Path, passphrase: bytes, base_url: str) -> CertificateAuthority:
    """SM2 root and issuing CA; the service URLs in the certificates point at ``base_url``."""
    config = home / "ca-hierarchy.toml"
    config.write_text(default_config_text(base_url), encoding="utf-8")
    return CertificateAuthority.init(home, config, passphrase=passphrase,
                                     audit=AuditLog.at_home(home))


def run_key_ceremony(home: Path) -> ceremony.CeremonyResult:
    """M-of-N custodians; each custodian's passphrase goes to a 0600 file beside the shares."""
    custodians = []
    for name in CUSTODIANS:
        phrase = secrets.token_urlsafe(18)
        write_secret(secrets_dir(home) / "custodians" / f"{name}.pass", phrase)
        custodians.append(ceremony.Custodian(name, phrase.encode()))
    audit = AuditLog.at_home(home)
    try:
        return ceremony.run_ceremony(home, custodians, THRESHOLD, home / "kmc-shares",
                                     officiant="demo administrator", audit=audit)
    finally:
        audit.engine.dispose()


def share_files(home: Path, names: Iterable[str]) -> list[tuple[Path, bytes]]:
    """(share file, passphrase) for the named custodians."""
    out = []
    for name in names:
        found = sorted((home / "kmc-shares").glob(f"share-*-{name}.json"))
        if len(found) != 1:
            raise RuntimeError(f"no single share file for custodian {name} in "
                               f"{home / 'kmc-shares'}")
        out.append((found[0], read_secret_file(secrets_dir(home) / "custodians" /
                                               f"{name}.pass").encode()))
    return out


def open_kmc(home: Path, audit: AuditLog, present: Iterable[str]) -> KeyManagementCentre:
    """Open the KMC database and unseal its storage key with the shares of ``present``."""
    storage_key = ceremony.unseal_from_files(home, share_files(home, present), audit=audit)
    return KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}", storage_key,
                                    KmcConfig(required_approvals=2), audit=audit)


def kmc_link(home: Path, kmc: KeyManagementCentre) -> InProcessKmc:
    """The RA's KMC principal (it also binds the certificates of its own escrows); its API key
    registered once, kept in a 0600 file."""
    path = secrets_dir(home) / "kmc-callers" / f"{KmcRole.RA.value}.key"
    if not path.exists():
        write_secret(path, kmc.add_caller(KmcRole.RA.value, KmcRole.RA, by="demo administrator"))
    return InProcessKmc(kmc, kmc.authenticate(read_secret_file(path)))


def add_officers(home: Path, ra: RegistrationAuthority) -> dict[str, Path]:
    """Create the RA accounts with generated passwords (0600 files); returns where they are."""
    out = {}
    for n, (username, (display, roles)) in enumerate(OFFICERS.items()):
        password = secrets.token_urlsafe(15)
        # each demo account is a distinct (made-up) person: approvals count people
        ra.add_officer(None, username, display, password, roles,
                       person_id=f"DEMO{n:014d}")
        out[username] = write_secret(secrets_dir(home) / "officers" / username, password)
    return out


def add_station(home: Path, ra: RegistrationAuthority) -> str:
    """The card-issuing station's enrollment API token (0600 file)."""
    token = ra.add_api_client(None, STATION)
    write_secret(secrets_dir(home) / "ra-station.token", token)
    return token


def issue_key(ca: CertificateAuthority, subject: str, profile: str, key_path: Path,
              cert_path: Path, passphrase: bytes) -> bytes:
    """A new SM2 key, stored encrypted at ``key_path``, and its certificate from ``ca``
    (``profile``) at ``cert_path``; returns the certificate's DER."""
    key = SoftwareKey.generate("sm2", label=key_path.name.split(".")[0])
    issued = ca.issue_from_csr(CsrBuilder().subject(parse_name(subject)).sign(key), profile)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key.store(key_path, passphrase)
    write_pem(cert_path, issued.certificate)
    return issued.der


def issue_business_credentials(home: Path, ca: CertificateAuthority, passphrase: bytes
                               ) -> dict[str, tuple[Path, Path]]:
    """The gateway's signing key and the business system's key, each with a certificate from
    our CA (profile business-system); keys stored encrypted. Returns name -> (key, cert)."""
    out = {}
    directory = home / "gateway"
    for name, subject in ((GATEWAY_KEY_ID, GATEWAY_KEY_SUBJECT), (SYSTEM_NAME, SYSTEM_SUBJECT)):
        key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.pem"
        issue_key(ca, subject, "business-system", key_path, cert_path, passphrase)
        out[name] = (key_path, cert_path)
    return out


def register_ra_principal(home: Path, ca: CertificateAuthority, passphrase: bytes,
                          directory: Path | None = None) -> Path:
    """The RA's service identity (profile service, issued here on the CA's home; key and
    certificate in ``directory``, default <home>/ra) and its principal in the CA's access
    file: issue, revoke and status for the cardholder and business-system profiles only
    (issue 12 finding 1). Returns the certificate's path."""
    directory = directory or home / "ra"
    cert_path = directory / "ra-service.pem"
    der = issue_key(ca, "CN=ra-service,C=CN", "service", directory / "ra-service.key.pem",
                    cert_path, passphrase)
    access = load_access(access_path(home))
    save_access(access_path(home), access.with_principal(Principal(
        "ra", frozenset(ApiOperation), frozenset(RA_PROFILES), frozenset({ca.name}),
        certificate=CertificateIdentity("service", certificate_fingerprint(der)))))
    return cert_path


def load_pem_certificate(path: Path) -> x509.Certificate:
    from sscard.x509.parse import load_certificate

    return load_certificate(path.read_bytes())


def gateway_config(home: Path, ca: CertificateAuthority, passphrase: bytes,
                   audit_url: str, tsa_url: str) -> GatewayConfig:
    """The gateway trusts our root; revocation from the OCSP responder that each certificate
    names (no validation cache, so a revocation shows at once)."""
    chain = ca.chain()
    directory = home / "gateway"
    key = SoftwareKey.load(directory / f"{GATEWAY_KEY_ID}.key.pem", passphrase)
    cert = load_pem_certificate(directory / f"{GATEWAY_KEY_ID}.pem")
    return GatewayConfig(
        trust_anchors=[chain[-1]],
        intermediates=chain[:-1],
        systems={SYSTEM_NAME: SystemPolicy(
            frozenset({"sign", "verify", "encrypt", "status", "cardholder"}),
            frozenset({GATEWAY_KEY_ID}), certificates=frozenset({fingerprint(
                load_pem_certificate(directory / f"{SYSTEM_NAME}.pem"))}))},
        keys={GATEWAY_KEY_ID: GatewayKey(key, cert, tuple(chain[:-1]))},
        fetch_revocation=True,
        validation_cache_seconds=0.0,
        tsa_url=tsa_url,
        audit_url=audit_url,
    )


def start_ca_service(system_home: Path, ca: CertificateAuthority, root: CertificateAuthority,
                     audit: AuditLog, server: ServerThread) -> None:
    ca.ocsp_signer()  # the responder and TSA keys exist before the first request
    ca.tsa_signer()
    root.ocsp_signer()
    server.attach(create_ca_app(ServiceConfig(
        authority=ca, other_authorities=(root,), audit_log=audit,
        access=load_access(access_path(system_home), ca.profiles),
        tsa_serial_file=system_home / "ca" / f"tsa-serial-{ca.name}")))


def open_system(home: Path, servers: Servers, say: Say, present: Iterable[str]) -> System:
    """Open an initialised data directory and attach every service to its server."""
    passphrase = read_secret_file(secrets_dir(home) / "key-passphrase").encode()
    audit = open_served_log(default_url(home), home)  # signed checkpoints on a schedule
    ca = CertificateAuthority.open(home, passphrase, audit=audit, actor="ca-service")
    root = CertificateAuthority.open(home, passphrase, name=ca.config.root.name, audit=audit,
                                     actor="ca-service")
    start_ca_service(home, ca, root, audit, servers["ca"])
    kmc = open_kmc(home, audit, present)
    servers["kmc"].attach(create_kmc_app(kmc))
    # the embedded RA holds the CA only through its principal: what the RA's service
    # identity may do over HTTP, it may do in process, and no more
    ra = RegistrationAuthority.open(f"sqlite:///{home / 'ra.db'}", audit, ra_port(ca, home),
                                    kmc_link(home, kmc))
    servers["ra"].attach(create_ra_app(ra, WebConfig(secrets.token_bytes(32),
                                                     secure_cookies=False)))
    config = gateway_config(home, ca, passphrase, default_url(home),
                            servers["ca"].url + "/tsa")
    servers["gateway"].attach(create_gateway_app(config, recorder=audit))
    system_key = SoftwareKey.load(home / "gateway" / f"{SYSTEM_NAME}.key.pem", passphrase)
    system_cert = load_pem_certificate(home / "gateway" / f"{SYSTEM_NAME}.pem")
    return System(home, passphrase, audit, ca, root, kmc, ra,
                  read_secret_file(secrets_dir(home) / "ra-station.token"), config, system_key,
                  system_cert, servers)


def save_ports(home: Path, ports: dict[str, int]) -> None:
    (home / "ports.json").write_text(json.dumps(ports, indent=2) + "\n", encoding="utf-8")


def load_ports(home: Path) -> dict[str, int]:
    data = json.loads((home / "ports.json").read_text(encoding="utf-8"))
    return {name: int(data[name]) for name in SERVICES}


# -- the emulated card ---------------------------------------------------------------------

def holder_zhang_san() -> HolderData:
    """The demo cardholder, with a social security number whose GB 11643 check digit is right."""
    body = f"{REGION}19900101123"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return HolderData(ssn=body + check, name="张三", sex="1", ethnicity="01",
                      birthplace=REGION, birth_date=body[6:14])


def card_in_reader(path: Path) -> AbstractContextManager[tuple[CardClient, PsamAuthenticator]]:
    """The emulated card whose state is in ``path``, in an in-process reader, with a PSAM."""
    return emulated_card_in_reader(path, REGION)


def personalise_card(system: System, card_path: Path, say: Say) -> Outcome:
    """A blank emulated card personalised by the reader tool over the RA's enrollment API:
    the RA holds the enrollment until officer li approves it, then the run resumes."""
    return personalise_card_at(
        system.url("ra"), system.ra_token,
        lambda request_id: system.ra.approve(system.officer("li"), request_id,
                                             "documents checked at the counter"),
        card_path, say)


def personalise_card_at(ra_url: str, station_token: str,
                        approve: Callable[[str], dict[str, Any]] | None, card_path: Path,
                        say: Say, batch: str | None = None) -> Outcome:
    """The reader tool personalises a blank emulated card through the RA at ``ra_url``: when
    the RA holds the enrollment, ``approve(request_id)`` is officer li's approval; with
    ``batch`` (pre-authorised by an officer) the RA issues at once and ``approve`` is None."""
    card_path.parent.mkdir(parents=True, exist_ok=True)
    blank_card(CardProfile(generation=3, region_code=REGION)).save(card_path)
    order = CardOrder(holder_zhang_san(), CARD_NUMBER, batch=batch)
    backend = RestBackend(ra_url, station_token)
    with card_in_reader(card_path) as (client, psam):
        personalizer = Personalizer(client, psam, backend, card_path.parent / "journal",
                                    lambda name: say(f"step {name}: done"))
        if approve is None:
            return personalizer.personalise(order, PIN)
        try:
            personalizer.personalise(order, PIN)
            raise RuntimeError("the enrollment was issued without an officer's approval")
        except AwaitingApproval as exc:
            say(f"the RA holds the request: {exc}")
        request_id = personalizer.journal().get("request")["request_id"]
        answer = approve(request_id)
        say(f"officer li logged in and approved request {request_id}: {answer['state']} "
            "(the CA issued the signing certificate; the KMC generated and escrowed the "
            "encryption key, wrapped for the card; the CA issued the encryption certificate)")
        return personalizer.personalise(order, PIN)
