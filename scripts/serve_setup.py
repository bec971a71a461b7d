"""The first start of `make serve`: every zone's data directory, made on one machine.

`make serve` runs the CA, KMC, RA and gateway as separate processes (scripts/serve.py), each
reading only its own directory (docs/architecture.md, "zones"):

    serve-data/                 CA and KMC, the protected zone (`sscard --home serve-data ca|kmc`)
      ca/ kmc.db audit.sqlite   the CA's keys and database, the KMC's database, their audit log
      secrets/key-passphrase    the CA's key passphrase
      secrets/officers/NAME     RA officers' first passwords; secrets/ra-station.token
      ra/                       the RA's zone: ra.db, audit.sqlite, its service identity
                                (ra-service.pem, ra-service.key.pem, secrets/service-key.pass)
                                and its own KMC caller key (secrets/kmc-ra.key); its officers'
                                card login through the provider: ra-card-login.toml and its
                                client secret at the provider (secrets/ra-idp.secret); no CA
                                key, no KMC share, no storage key
      gateway/                  the gateway's zone: gateway.toml (edit it, restart serve),
                                root.pem and issuing-ca.pem, the keys it holds (hr-sign, the
                                business system's decryption key employment-enc), audit.sqlite
      business-system/          what the business system `employment` keeps: its signing key and
                                certificate, its encryption certificate, its passphrase file
      idp/                      the OpenID Connect provider's zone: idp.toml, root.pem and
                                issuing-ca.pem (the cardholder CA it trusts), idp.sqlite (its
                                ID-token signing keys, clients, sessions, login nonces),
                                audit.sqlite, its service identity (idp-service.pem,
                                idp-service.key.pem, secrets/service-key.pass: it signs its
                                card-number lookups at the RA with it); no CA key, no card data
      sample-rp/                the sample business system's zone: sample-rp.toml, client.id and
                                secrets/client.secret (from `sscard idp client add`, run by the
                                provider's administrator at set-up), secrets/session.key
      agent/                    the browser agent's files, as on a holder's PC: allow.toml (the
                                provider's origin), consent.json once the holder consents
      export/                   root.pem, chain.pem, issuing-ca.pem for clients
      card/                     the emulated card (card.json) and its PIN (pin, mode 0600)
      logs/                     each service's output
      ports.json                the services' ports (written last: a finished set-up)
    serve-data.custody/         the KMC custodians' shares and passphrases, kept OUT of the data
                                directory (docs/operations-guide.md): serve reads two of them at
                                each start to unseal the KMC, as custodians would bring them

Every secret goes to a 0600 file; nothing secret is printed except the demo card's PIN.
"""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import allinone

from ca.authority import CertificateAuthority
from sscard.gateway.config import fingerprint
from sscard.x509.names import format_name
from sscard.x509.parse import load_certificate

SETUP_ACTOR = "serve set-up"
#: the batch officer li pre-authorises at set-up for the first card
FIRST_CARD_BATCH = "serve: first card"
#: the batch officer li pre-authorises at set-up for practising at the counter
#: (docs/card-issuing-guide.md §4): any cardholder, this station only, for 31 days
TRAINING_BATCH = "serve: training"
TRAINING_BATCH_CARDS = 20
#: the business system's encryption key, held by the gateway, which decrypts for the system
SYSTEM_ENC_KEY_ID = f"{allinone.SYSTEM_NAME}-enc"


@dataclass(frozen=True)
class Layout:
    """Where each zone's files are (``home`` absolute: pcscd and the children get it)."""

    home: Path

    @property
    def custody(self) -> Path:
        return self.home.parent / f"{self.home.name}.custody"

    @property
    def ca_passphrase(self) -> Path:
        return allinone.secrets_dir(self.home) / "key-passphrase"

    @property
    def ra(self) -> Path:
        return self.home / "ra"

    @property
    def ra_kmc_key(self) -> Path:
        return self.ra / "secrets" / "kmc-ra.key"

    @property
    def ra_service_key(self) -> Path:
        return self.ra / "ra-service.key.pem"

    @property
    def ra_service_passphrase(self) -> Path:
        return self.ra / "secrets" / "service-key.pass"

    @property
    def ra_service_certificate(self) -> Path:
        return self.ra / "ra-service.pem"

    @property
    def ra_card_login(self) -> Path:
        """The RA's officers' card login through the provider (``ra serve --card-login``)."""
        return self.ra / "ra-card-login.toml"

    @property
    def ra_idp_secret(self) -> Path:
        """The RA's client secret at the provider: in the RA's zone, not the provider's."""
        return self.ra / "secrets" / "ra-idp.secret"

    @property
    def gateway(self) -> Path:
        return self.home / "gateway"

    @property
    def gateway_config(self) -> Path:
        return self.gateway / "gateway.toml"

    @property
    def gateway_passphrase(self) -> Path:
        return self.gateway / "secrets" / "key-passphrase"

    @property
    def business(self) -> Path:
        return self.home / "business-system"

    def business_file(self, suffix: str) -> Path:
        return self.business / f"{allinone.SYSTEM_NAME}{suffix}"

    @property
    def idp(self) -> Path:
        return self.home / "idp"

    @property
    def idp_config(self) -> Path:
        return self.idp / "idp.toml"

    @property
    def card_number_reader(self) -> Path:
        """In the RA's directory: the provider's service certificate, the one caller that may
        look card numbers up."""
        return self.ra / "card-number-readers" / "idp.pem"

    @property
    def sample_rp(self) -> Path:
        return self.home / "sample-rp"

    @property
    def sample_rp_config(self) -> Path:
        return self.sample_rp / "sample-rp.toml"

    @property
    def agent(self) -> Path:
        return self.home / "agent"

    @property
    def export(self) -> Path:
        return self.home / "export"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def card(self) -> Path:
        return self.home / "card" / "card.json"

    @property
    def card_pin(self) -> Path:
        return self.home / "card" / "pin"

    @property
    def card_certificate(self) -> Path:
        """The demo card's signing (login) certificate, read from the card: public."""
        return self.home / "card" / "sign.pem"

    def share_arguments(self, present: tuple[str, ...]) -> list[str]:
        """``--share F --share-passphrase-file P`` for each custodian present."""
        args: list[str] = []
        for name in present:
            found = sorted(self.custody.glob(f"share-*-{name}.json"))
            if len(found) != 1:
                raise RuntimeError(f"no single share file for custodian {name} in "
                                   f"{self.custody}")
            args += ["--share", str(found[0]),
                     "--share-passphrase-file", str(self.custody / f"{name}.pass")]
        return args


def new_passphrase(path: Path) -> bytes:
    return allinone.write_secret(path, secrets.token_urlsafe(24)).read_text().strip().encode()


def set_up_zones(layout: Layout, ca_url: str, say: Callable[[str], None]) -> None:
    """The CA hierarchy, the KMC ceremony and callers, the RA's accounts and service identity,
    the gateway's and the business system's credentials, each zone's files in its directory.
    Runs in this process before any service starts (the services then read only files)."""
    from keymgmt import ceremony
    from keymgmt.service import KeyManagementCentre
    from keymgmt.service import Role as KmcRole
    from ra import store
    from ra.service import RegistrationAuthority
    from sscard.audit.log import AuditLog

    home = layout.home
    passphrase = allinone.init_data_directory(home)
    ca = allinone.init_ca(home, passphrase, ca_url)
    say(f"CA: {format_name(ca.chain()[-1].subject)} -> {format_name(ca.certificate.subject)}")
    ca.close()

    layout.custody.mkdir(mode=0o700, exist_ok=True)
    custodians = []
    for name in allinone.CUSTODIANS:
        phrase = allinone.write_secret(layout.custody / f"{name}.pass",
                                       secrets.token_urlsafe(18)).read_text().strip()
        custodians.append(ceremony.Custodian(name, phrase.encode()))
    audit = AuditLog.at_home(home)
    try:
        result = ceremony.run_ceremony(home, custodians, allinone.THRESHOLD, layout.custody,
                                       officiant="demo administrator", audit=audit)
        say(f"KMC ceremony {result.ceremony_id}: {allinone.THRESHOLD}-of-"
            f"{len(allinone.CUSTODIANS)} custodian shares and passphrases in {layout.custody} "
            "(out of the data directory)")
        kmc = KeyManagementCentre.open(f"sqlite:///{home / 'kmc.db'}", None, audit=audit)
        try:
            allinone.write_secret(layout.ra_kmc_key,
                                  kmc.add_caller("ra", KmcRole.RA, by=SETUP_ACTOR))
        finally:
            kmc.close()
        with CertificateAuthority.open(home, passphrase, audit=audit) as authority:
            issue_ra_identity(layout, authority)
            issue_business_credentials(layout, authority)
            chain = authority.chain()
    finally:
        audit.engine.dispose()

    layout.ra.mkdir(mode=0o700, exist_ok=True)
    ra_audit = AuditLog.at_home(layout.ra)
    ra = RegistrationAuthority.open(store.default_url(layout.ra), ra_audit)
    try:
        allinone.add_officers(home, ra)
        allinone.add_station(home, ra)
        # the first card comes through a batch officer li pre-authorises for the station and
        # this cardholder only: the served RA then issues at once, through the CA and the KMC
        li = ra.authenticate("li", allinone.read_secret_file(
            allinone.secrets_dir(home) / "officers" / "li"))
        ra.authorise_batch(li, FIRST_CARD_BATCH, 1, station=allinone.STATION,
                           cardholders=[allinone.holder_zhang_san().ssn])
        ra.authorise_batch(li, TRAINING_BATCH, TRAINING_BATCH_CARDS, station=allinone.STATION,
                           valid_for=dt.timedelta(days=31))
    finally:
        ra.close()
        ra_audit.engine.dispose()
    say(f"RA: its own directory {layout.ra} (officers, station, service certificate, KMC "
        "caller key)")

    layout.export.mkdir(exist_ok=True)
    allinone.write_pem(layout.export / "root.pem", chain[-1])
    allinone.write_pem(layout.export / "chain.pem", *chain)
    allinone.write_pem(layout.export / "issuing-ca.pem", chain[0])
    allinone.write_pem(layout.gateway / "root.pem", chain[-1])
    allinone.write_pem(layout.gateway / "issuing-ca.pem", *chain[:-1])
    layout.gateway_config.write_text(gateway_toml(layout, ca_url), encoding="utf-8")
    say(f"gateway: configuration {layout.gateway_config} (edit it and restart serve)")


def issue_ra_identity(layout: Layout, authority: CertificateAuthority) -> None:
    """The RA's service certificate (profile service) in the RA's directory, under the RA's
    own passphrase, registered as the CA API principal ``ra`` (the RA's profiles only)."""
    layout.ra.mkdir(mode=0o700, parents=True, exist_ok=True)
    allinone.register_ra_principal(layout.home, authority,
                                   new_passphrase(layout.ra_service_passphrase), layout.ra)


def issue_business_credentials(layout: Layout, authority: CertificateAuthority) -> None:
    """In the gateway's directory, the keys the gateway holds: its document-signing key
    (profile business-system) and the business system's decryption key (profile
    business-system-encrypt), under the gateway's own passphrase. In the business system's
    directory, the system's signing key and certificate (it calls the gateway with them) and a
    copy of its encryption certificate (for whoever envelopes documents to it)."""
    layout.gateway.mkdir(mode=0o700, parents=True, exist_ok=True)
    gateway_passphrase = new_passphrase(layout.gateway_passphrase)
    for key_id, subject, profile in (
            (allinone.GATEWAY_KEY_ID, allinone.GATEWAY_KEY_SUBJECT, "business-system"),
            (SYSTEM_ENC_KEY_ID, allinone.SYSTEM_SUBJECT, "business-system-encrypt")):
        allinone.issue_key(authority, subject, profile, layout.gateway / f"{key_id}.key.pem",
                           layout.gateway / f"{key_id}.pem", gateway_passphrase)
    layout.business.mkdir(mode=0o700, exist_ok=True)
    allinone.issue_key(authority, allinone.SYSTEM_SUBJECT, "business-system",
                       layout.business_file(".key.pem"), layout.business_file(".pem"),
                       new_passphrase(layout.business_file(".pass")))
    layout.business_file("-enc.pem").write_bytes(
        (layout.gateway / f"{SYSTEM_ENC_KEY_ID}.pem").read_bytes())


def gateway_toml(layout: Layout, ca_url: str) -> str:
    """The gateway's configuration: file names relative to it, databases in its directory."""
    system_cert = load_certificate(layout.business_file(".pem").read_bytes())
    gw = layout.gateway
    return f"""\
# The gateway of `make serve` (scripts/serve.py wrote it at the first start). Edit it and
# restart serve; the keys are described in sscard/gateway/config.py and the integration guide.
trust_anchors = ["root.pem"]
intermediates = ["issuing-ca.pem"]
# revocation from the OCSP responder each certificate names; no validation cache, so a
# revocation shows at the next call
fetch_revocation = true
validation_cache_seconds = 0
tsa_url = "{ca_url}/tsa"
audit_url = "sqlite:///{gw / 'audit.sqlite'}"
database_url = "sqlite:///{gw / 'gateway.sqlite'}"

[keys.{allinone.GATEWAY_KEY_ID}]                 # the department's document-signing key
key = "{allinone.GATEWAY_KEY_ID}.key.pem"
passphrase_file = "secrets/key-passphrase"
certificate = "{allinone.GATEWAY_KEY_ID}.pem"
chain = ["issuing-ca.pem"]

# {allinone.SYSTEM_NAME}'s decryption key (profile business-system-encrypt): POST /v1/decrypt
[keys.{SYSTEM_ENC_KEY_ID}]
key = "{SYSTEM_ENC_KEY_ID}.key.pem"
passphrase_file = "secrets/key-passphrase"
certificate = "{SYSTEM_ENC_KEY_ID}.pem"
chain = ["issuing-ca.pem"]

[systems.{allinone.SYSTEM_NAME}]
# {format_name(system_cert.subject)}: {layout.business_file('.pem')}
certificates = ["{fingerprint(system_cert)}"]
operations = ["sign", "verify", "encrypt", "decrypt", "status", "cardholder"]
signing_keys = ["{allinone.GATEWAY_KEY_ID}"]
decryption_key = "{SYSTEM_ENC_KEY_ID}"
"""



def personalise_card(layout: Layout, ra_url: str, say: Callable[[str], None]) -> None:
    """The demo card, personalised by the reader tool over the served RA's enrollment API in
    the batch officer li pre-authorised: the RA process has the CA process issue both
    certificates and the KMC process generate and escrow the encryption key."""
    outcome = allinone.personalise_card_at(
        ra_url, allinone.read_secret_file(allinone.secrets_dir(layout.home) / "ra-station.token"),
        None, layout.card, say, batch=FIRST_CARD_BATCH)
    if outcome.status != "done":
        raise RuntimeError(f"card personalisation ended {outcome.status}")
    say(f"officer li's pre-authorised batch '{FIRST_CARD_BATCH}': the RA issued at once "
        f"(signing certificate {outcome.sign_serial}, encryption certificate "
        f"{outcome.enc_serial}, its key escrowed by the KMC)")
    say(f"officer li's batch '{TRAINING_BATCH}' takes {TRAINING_BATCH_CARDS} more cards from "
        "the station (practice at the counter: docs/card-issuing-guide.md section 4)")
    allinone.write_secret(layout.card_pin, allinone.PIN)


#: the sample business system's name at the provider (shown on the consent page)
SAMPLE_RP_NAME = "社保业务系统（示例）"


def set_up_login(layout: Layout, urls: dict[str, str], say: Callable[[str], None]) -> None:
    """The card-login zones: the provider's (its configuration and the CA certificates it
    trusts; its keys are made by its first start), the sample business system's (registered at
    the provider by the administrator's CLI, as a real one would be) and the agent's allow-list.
    ``urls``: the provider's (``idp``), the sample page's (``sample-rp``) and the agent's.
    Also run on a later start of a data directory set up before these zones existed."""
    idp, rp = layout.idp, layout.sample_rp
    for zone in (idp, rp, layout.agent):
        zone.mkdir(mode=0o700, exist_ok=True)
    issue_idp_identity(layout)
    # the cardholder CA: the provider validates the card's certificate to it, with revocation
    # from the OCSP responder the certificate names
    (idp / "root.pem").write_bytes((layout.export / "root.pem").read_bytes())
    (idp / "issuing-ca.pem").write_bytes((layout.export / "issuing-ca.pem").read_bytes())
    layout.idp_config.write_text(f"""\
# The identity provider of `make serve` (scripts/serve.py wrote it); see sscard/idp/wsgi.py.
issuer = "{urls['idp']}"
agent_url = "{urls['agent']}"
trust_anchors = ["root.pem"]
intermediates = ["issuing-ca.pem"]
fetch_revocation = true
# the verified card-number claim: the RA's registry, asked with the provider's service identity
card_number_ra_url = "{urls['ra']}"
card_number_service_key = "idp-service.key.pem"
card_number_service_key_passphrase_file = "secrets/service-key.pass"
card_number_service_certificate = "idp-service.pem"
""", encoding="utf-8")
    client_id = register_client(layout, SAMPLE_RP_NAME, urls["sample-rp"] + "/callback",
                                urls["sample-rp"] + "/", rp / "secrets" / "client.secret")
    (rp / "client.id").write_text(client_id + "\n", encoding="utf-8")
    allinone.write_secret(rp / "secrets" / "session.key", secrets.token_urlsafe(32))
    layout.sample_rp_config.write_text(f"""\
# The sample business system of `make serve`; see sscard/idp/sample_rp.py.
issuer = "{urls['idp']}"
url = "{urls['sample-rp']}"
client_id_file = "client.id"
client_secret_file = "secrets/client.secret"
session_key_file = "secrets/session.key"
""", encoding="utf-8")
    origin = urls["idp"]
    (layout.agent / "allow.toml").write_text(f'origins = ["{origin}"]\n', encoding="utf-8")
    say(f"identity provider: its own directory {idp}; the sample business system "
        f"'{SAMPLE_RP_NAME}' registered there as client {client_id} (sscard idp client add)")


def issue_idp_identity(layout: Layout) -> None:
    """The provider's service certificate (profile service; key under the provider's own
    passphrase, in its directory), registered at the RA as a signed API client and named in
    the RA's directory as the one certificate that may look card numbers up
    (``ra serve --card-number-reader``)."""
    from ra import store
    from ra.service import RegistrationAuthority
    from sscard.audit.log import AuditLog
    from sscard.gateway.config import fingerprint

    passphrase = allinone.read_secret_file(layout.ca_passphrase).encode()
    audit = AuditLog.at_home(layout.home)
    try:
        with CertificateAuthority.open(layout.home, passphrase, audit=audit) as authority:
            der = allinone.issue_key(authority, "CN=idp-service,C=CN", "service",
                                     layout.idp / "idp-service.key.pem",
                                     layout.idp / "idp-service.pem",
                                     new_passphrase(layout.idp / "secrets" / "service-key.pass"))
    finally:
        audit.engine.dispose()
    ra_audit = AuditLog.at_home(layout.ra)
    ra = RegistrationAuthority.open(store.default_url(layout.ra), ra_audit)
    try:
        # named after the certificate: a set-up started again registers its new one apart
        ra.add_signing_client(None, f"idp-{fingerprint(der)[:12]}", der)
    finally:
        ra.close()
        ra_audit.engine.dispose()
    layout.card_number_reader.parent.mkdir(exist_ok=True)
    layout.card_number_reader.write_bytes((layout.idp / "idp-service.pem").read_bytes())


def register_client(layout: Layout, name: str, redirect_uri: str, post_logout_uri: str,
                    secret: Path, *options: str) -> str:
    """A client registered at the provider by its administrator's CLI (``sscard idp client
    add``), as a real business system would be; its secret written to ``secret`` (0600, in
    the client's own zone). Returns the client id."""
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    secret.unlink(missing_ok=True)  # a set-up stopped half-way: the CLI never overwrites
    added = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(layout.idp), "idp", "client", "add",
         "--name", name, "--redirect-uri", redirect_uri,
         "--post-logout-redirect-uri", post_logout_uri, "--secret-file", str(secret),
         *options],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if added.returncode != 0:
        raise RuntimeError(f"registering {name} at the identity provider failed: "
                           f"{added.stderr}")
    return added.stdout.strip()


#: the RA's name at the provider (shown on the consent page)
RA_CLIENT_NAME = "注册审核系统"
#: the demo card's holder is also a demo RA officer, a counter operator, who logs in to the RA
#: with that card through the provider (the least of the roles: a demo card whose PIN is
#: printed should not approve anything)
CARD_OFFICER = "zhangsan"
CARD_OFFICER_DISPLAY = "张三 (counter operator; logs in with the demo card)"


def set_up_ra_card_login(layout: Layout, urls: dict[str, str], say: Callable[[str], None]
                         ) -> None:
    """The RA's officers' card login through the provider, before the RA starts: the RA
    registered at the provider with the certificate scope (its secret in the RA's zone), its
    ra-card-login.toml, and the demo card's holder as an RA account (person = the card's
    social security number, a password like the others' too). The provider already trusts the
    CA that issues the officers' cards (the cardholder CA) and the agent its origin; the
    card's certificate is registered once the card has it (``register_card_officer``).
    Also run on a later start of a data directory set up before the card login of the RA."""
    from ra import store
    from ra.errors import Conflict
    from ra.models import Role
    from ra.service import RegistrationAuthority
    from sscard.audit.log import AuditLog

    ra_url = urls["ra"]
    client_id = register_client(layout, RA_CLIENT_NAME, ra_url + "/login/card/callback",
                                ra_url + "/login", layout.ra_idp_secret,
                                "--grant-scope", "sscard:cert")
    ra_audit = AuditLog.at_home(layout.ra)
    ra = RegistrationAuthority.open(store.default_url(layout.ra), ra_audit)
    try:
        password = secrets.token_urlsafe(15)
        try:
            ra.add_officer(None, CARD_OFFICER, CARD_OFFICER_DISPLAY, password,
                           frozenset({Role.OPERATOR}),
                           person_id=allinone.holder_zhang_san().ssn)
            allinone.write_secret(allinone.secrets_dir(layout.home) / "officers" / CARD_OFFICER,
                                  password)
        except Conflict:
            pass  # a set-up stopped half-way made the account: its password file is there
    finally:
        ra.close()
        ra_audit.engine.dispose()
    # written last: its presence means the RA's card login is set up
    layout.ra_card_login.write_text(f"""\
# The RA's officers' card login of `make serve` (scripts/serve.py wrote it); see ra/cardlogin.py.
issuer = "{urls['idp']}"
client_id = "{client_id}"
client_secret_file = "secrets/ra-idp.secret"
ra_url = "{ra_url}"
""", encoding="utf-8")
    say(f"RA: registered at the identity provider as '{RA_CLIENT_NAME}' (client {client_id}, "
        f"scope sscard:cert); officer '{CARD_OFFICER}' is the demo card's holder")


def register_card_officer(layout: Layout, say: Callable[[str], None]) -> None:
    """The demo card's signing certificate (the one it logs in with), read from the card,
    registered for the RA account ``CARD_OFFICER`` by the RA's console command, as an
    administrator registers an officer's card (``sscard ra officer-cert``)."""
    from sscard.x509.pem import der_to_pem

    with allinone.card_in_reader(layout.card) as (client, _psam):
        der = client.read_certificate("sign")
    if der is None:
        raise RuntimeError(f"the demo card {layout.card} holds no signing certificate")
    layout.card_certificate.write_bytes(der_to_pem(der, "CERTIFICATE"))
    done = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "--home", str(layout.ra), "ra", "officer-cert",
         CARD_OFFICER, str(layout.card_certificate)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"registering the demo card for RA officer {CARD_OFFICER} failed: "
                           f"{done.stderr}")
    say(f"the demo card's certificate ({layout.card_certificate}) registered for RA officer "
        f"'{CARD_OFFICER}' (sscard ra officer-cert)")
