"""``sscard ra ...``: the registration authority.

The RA keeps its own database (``<home>/ra.db``, or PostgreSQL with ``--db-url``) and writes to
the audit log of the data directory. ``serve`` carries approved requests out through the RA's
ports (ra/ports.py): with ``--ca-url`` and ``--kmc-url`` over the CA's and the KMC's APIs (no
CA key, no KMC share here); without, it opens the CA of the same data directory and the KMC
(unsealed by the custodians' shares) in process.
Passwords and tokens come from files or prompts, never from argv."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sscard.cli import audit_url as resolve_audit_url
from sscard.cli import data_home, db_url_options, open_audit_log
from sscard.secrets_input import read_secret
from sscard.serving import ServeOptions, run, serve_options

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(dir_okay=False, path_type=Path)
ROLE_NAMES = ("operator", "officer", "auditor", "administrator")


def _home(ctx: click.Context) -> Path:
    return data_home(ctx)


def _errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ra.errors import RAError

        try:
            return func(*args, **kwargs)
        except RAError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _open(ctx: click.Context, ca: Any = None, kmc: Any = None) -> Any:
    from ra import store
    from ra.service import RegistrationAuthority

    home = _home(ctx)
    home.mkdir(parents=True, exist_ok=True)
    url = ctx.meta.get("ra_db_url")
    return RegistrationAuthority.open(url or store.default_url(home), open_audit_log(ctx), ca,
                                      kmc)


@click.group("ra")
@db_url_options("SSCARD_RA_DB_URL", "RA database (default: SQLite <home>/ra.db)")
@click.pass_context
def group(ctx: click.Context, db_url: str | None) -> None:
    """Registration authority: cardholders, requests, officers, approvals."""
    ctx.meta["ra_db_url"] = db_url


@group.command("add-officer")
@click.argument("username")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLE_NAMES), required=True,
              help="Repeat for several roles.")
@click.option("--display-name", default="", help="Name shown in the UI.")
@click.option("--person-id", required=True,
              help="The ID number of the person the account belongs to: approvals count "
                   "people, so two accounts of one person never make two approvals.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="First line: the password (default: prompt twice).")
@click.pass_context
@_errors
def add_officer(ctx: click.Context, username: str, roles: tuple[str, ...], display_name: str,
                person_id: str, password_file: Path | None) -> None:
    """Create an officer account (set-up, from the RA machine's console)."""
    from ra.models import Role

    password = read_secret(file=password_file, prompt=f"Password for {username}",
                           confirm=password_file is None).decode()
    ra = _open(ctx)
    try:
        ra.add_officer(None, username, display_name, password, {Role(r) for r in roles},
                       person_id=person_id)
    finally:
        ra.close()
    click.echo(f"officer {username} added ({', '.join(roles)})")


@group.group("officer")
def officer() -> None:
    """Officer accounts, from the RA machine's console."""


@officer.command("unlock")
@click.argument("username")
@click.pass_context
@_errors
def officer_unlock(ctx: click.Context, username: str) -> None:
    """Lift the log-in lock-outs of an account (audited); even the only administrator's."""
    ra = _open(ctx)
    try:
        ra.unlock_officer(None, username)
    finally:
        ra.close()
    click.echo(f"officer {username} unlocked")


@group.command("officer-cert")
@click.argument("username")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@_errors
def officer_cert(ctx: click.Context, username: str, certificate: Path) -> None:
    """Register the certificate (PEM or DER) of an officer's own card for certificate log-in."""
    ra = _open(ctx)
    try:
        ra.set_officer_certificate(None, username, certificate.read_bytes())
    finally:
        ra.close()
    click.echo(f"certificate log-in enabled for {username}")


@group.command("add-client")
@click.argument("name")
@click.option("--token-out", type=_FILE, default=None,
              help="Write the new API token here (mode 0600); it is shown nowhere else.")
@click.option("--certificate", "certificate_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Instead of a token: the client signs its requests with this certificate's "
                   "key (PEM or DER).")
@click.pass_context
@_errors
def add_client(ctx: click.Context, name: str, token_out: Path | None,
               certificate_file: Path | None) -> None:
    """Register a reader tool, kiosk or service for the enrollment API."""
    if (token_out is None) == (certificate_file is None):
        raise click.UsageError("give --token-out (a bearer token) or --certificate (signed "
                               "requests)")
    from sscard.x509.pem import pem_to_der

    ra = _open(ctx)
    try:
        if certificate_file is not None:
            ra.add_signing_client(None, name,
                                  pem_to_der(certificate_file.read_bytes(), "CERTIFICATE"))
        else:
            token = ra.add_api_client(None, name)
    finally:
        ra.close()
    if certificate_file is not None:
        click.echo(f"API client {name} added; it signs its requests with {certificate_file}")
        return
    assert token_out is not None
    fd = os.open(token_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    click.echo(f"API client {name} added; token written to {token_out}")


class _RaAppFactory:
    """Builds the RA app in one gunicorn worker with the CA and the KMC in process (the
    in-process adapters of the RA's ports): its own audit log (scheduled checkpoints), CA, KMC
    unsealed from the shares the master read, and RA database. The session-cookie key comes
    from the master so that a session started at one worker is valid at the others."""

    def __init__(self, home: Path, ra_url: str, kmc_url: str, audit_url: str, given: list[Any],
                 api_key: str, web: Any, resume_every: float) -> None:
        self.home, self.ra_url, self.kmc_url, self.audit_url = home, ra_url, kmc_url, audit_url
        self.given, self.api_key, self.web = given, api_key, web
        self.resume_every = resume_every

    def __call__(self) -> Any:
        from ca import ports_inprocess as ca_ports
        from keymgmt import ports_inprocess as kmc_ports
        from ra.service import RegistrationAuthority
        from ra.web import create_app
        from sscard.audit.scheduled import open_served_log

        audit = open_served_log(self.audit_url, self.home)
        kmc = kmc_ports.open_ra_port(self.kmc_url, self.home, self.given, self.api_key, audit)
        # the RA's permissions only (ca/access.toml), even in process
        ca = ca_ports.open_ra_port(self.home, audit)
        return create_app(_resuming(RegistrationAuthority.open(self.ra_url, audit, ca, kmc),
                                    self.resume_every), self.web)


class _RemoteRaAppFactory:
    """Builds the RA app in one gunicorn worker when the CA and the KMC run in their own zones:
    the RA reaches them over their APIs (ca.client signed with the RA's service certificate,
    ra.kmc_http) and holds no CA key and no KMC share. Key and certificates are read once by
    the master, from files (never from argv)."""

    def __init__(self, home: Path, ra_url: str, audit_url: str, ca_url: str, kmc_url: str,
                 signer: Any, kmc_key: str, officer_keys: dict[str, str],
                 web: Any, resume_every: float, kmc_tls: Any = None) -> None:
        self.home, self.ra_url, self.audit_url = home, ra_url, audit_url
        self.ca_url, self.kmc_url, self.signer = ca_url, kmc_url, signer
        self.kmc_key, self.officer_keys, self.web = kmc_key, officer_keys, web
        self.kmc_tls = kmc_tls  # sscard.tls_client.ClientTls: the KMC asks for client certs
        self.resume_every = resume_every
        self._officers: dict[str, Any] = {}  # one KMC session per officer, per worker

    def officer(self, name: str) -> Any:
        """The officer's own KMC caller, for recovery approvals the KMC sees as theirs."""
        from keymgmt.errors import KmcError
        from ra.kmc_http import kmc_client

        if name not in self._officers:
            key = self.officer_keys.get(name)
            if key is None:
                raise KmcError(f"officer {name} has no KMC credential on this RA "
                               "(--kmc-officer-keys <dir>/<username>.key)")
            self._officers[name] = kmc_client(self.kmc_url, key, self.kmc_tls)
        return self._officers[name]

    def __call__(self) -> Any:
        from ca.client import CaClient
        from ra.kmc_http import HttpKmc, kmc_client
        from ra.service import RegistrationAuthority
        from ra.web import create_app
        from sscard.audit.scheduled import open_served_log

        audit = open_served_log(self.audit_url, self.home)
        ca = CaClient(self.ca_url, signer=self.signer)
        kmc = HttpKmc(kmc_client(self.kmc_url, self.kmc_key, self.kmc_tls), self.officer)
        return create_app(_resuming(RegistrationAuthority.open(self.ra_url, audit, ca, kmc),
                                    self.resume_every), self.web)


def _resuming(ra: Any, every: float) -> Any:
    """The worker's RA, with a timer that carries on the approved requests that waited for the
    CA or the KMC (``RegistrationAuthority.resume_waiting``): a request approved while the CA
    was down is issued once the CA is back, without anyone resubmitting it."""
    from sscard.periodic import Periodic

    if every > 0:
        Periodic(ra.resume_waiting, every, name="ra-resume",
                 what="carrying on requests that waited for the CA or the KMC").start()
    return ra


def _serve_remote(ctx: click.Context, serving: ServeOptions, ca_url: str, kmc_url: str,
                  service_key: Path | None, service_certificate: Path | None,
                  service_key_passphrase_file: Path | None, kmc_key: str,
                  officer_keys_dir: Path | None, web: Any, resume_every: float,
                  kmc_tls: Any) -> None:
    from ca.client import CaClient
    from ca.errors import CAError
    from ra import store
    from sscard.crypto.errors import CryptoError
    from sscard.httpsig import RequestSigner
    from sscard.keys.software import SoftwareKey
    from sscard.secrets_input import read_secret_file
    from sscard.x509.pem import pem_to_der

    if service_key is None or service_certificate is None:
        raise click.UsageError("--ca-url needs the RA's service identity: --service-key and "
                               "--service-certificate")
    try:
        key = SoftwareKey.from_bytes(read_secret_file(service_key, "service key"), read_secret(
            file=service_key_passphrase_file, prompt="Service key passphrase"), str(service_key))
        certificate = pem_to_der(service_certificate.read_bytes(), "CERTIFICATE")
    except (OSError, ValueError, CryptoError) as exc:
        raise click.ClickException(f"service identity: {exc}") from None
    officer_keys = {}
    if officer_keys_dir is not None:
        officer_keys = {path.stem: read_secret_file(path, "officer KMC key").decode().strip()
                        for path in sorted(officer_keys_dir.glob("*.key"))}
    home = _home(ctx)
    home.mkdir(parents=True, exist_ok=True)
    signer = RequestSigner(key, certificate)
    # the CA must know the service identity before serving: a status call signed with it
    try:
        with contextlib.closing(CaClient(ca_url, signer=signer, timeout=10)) as probe:
            probe.chain()
    except CAError as exc:
        raise click.ClickException(f"the CA at {ca_url}: {exc}") from None
    factory = _RemoteRaAppFactory(home, ctx.meta.get("ra_db_url") or store.default_url(home),
                                  resolve_audit_url(ctx), ca_url, kmc_url, signer, kmc_key,
                                  officer_keys, web, resume_every, kmc_tls)
    click.echo(f"RA serving on {serving.url} (gunicorn, {serving.workers} workers; CA at "
               f"{ca_url}, KMC at {kmc_url}"
               f"{' with a TLS client certificate' if kmc_tls and kmc_tls.certificate else ''})",
               err=True)
    run(factory, serving, name="ra")


def _certificate_identities(paths: tuple[Path, ...]) -> frozenset[str]:
    """sscard.httpsig identities of the certificates in ``paths`` (a bad file is named)."""
    from sscard import httpsig

    found = set()
    for path in paths:
        try:
            found.add(httpsig.decode_certificate(path.read_text()).identity.hex())
        except (OSError, httpsig.SignatureError) as exc:
            raise click.UsageError(f"--card-number-reader {path}: {exc}") from None
    return frozenset(found)


@group.command("serve")
@serve_options(default_port=8480)
@db_url_options("SSCARD_KMC_DB_URL", "KMC database (default: SQLite <home>/kmc.db)",
                option="--kmc-db-url", dest="kmc_db_url")
@click.option("--share", "shares", multiple=True, type=_FILE,
              help="A KMC custodian's share file; repeat for each custodian present.")
@click.option("--share-passphrase-file", "share_passphrase_files", multiple=True, type=_FILE,
              help="Passphrase file for each --share, in the same order.")
@click.option("--kmc-ra-key-file", type=_FILE, required=True,
              help="The RA's KMC API key (a caller with role ra): escrow, the binding of the "
                   "encryption certificates of its own escrows, recovery requests.")
@click.option("--resume-every", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds between rounds that carry on approved requests which waited for "
                   "the CA or the KMC (0: only when a station resubmits).")
@click.option("--insecure-http", is_flag=True,
              help="Session cookies without the Secure flag (behind no TLS proxy: testing).")
@click.option("--card-login", "card_login_file", type=click.Path(exists=True, dir_okay=False,
                                                                 path_type=Path),
              default=None,
              help="Officers log in with their card through the OpenID Connect provider: a "
                   "TOML file (issuer, client_id, client_secret_file, ra_url, profiles; see "
                   "ra.cardlogin).")
@click.option("--offline-certificate-login", is_flag=True,
              help="Also serve the old pasted-signature certificate form (/login/certificate) "
                   "for when the provider cannot be reached; off by default.")
@click.option("--ca-url", default=None,
              help="Reach the CA over its API here (with --kmc-url): no CA key in this process.")
@click.option("--kmc-url", default=None,
              help="Reach the KMC over its API here (with --ca-url): no KMC share needed.")
@click.option("--service-key", type=_FILE, default=None,
              help="With --ca-url: the RA's service key (encrypted PKCS#8 PEM).")
@click.option("--service-key-passphrase-file", type=_FILE, default=None,
              help="Passphrase file for --service-key (default: prompt).")
@click.option("--service-certificate", type=_FILE, default=None,
              help="With --ca-url: the RA's service certificate (profile service).")
@click.option("--kmc-ca-file", type=_FILE, default=None,
              help="With an https --kmc-url: the CA certificates the KMC's TLS server "
                   "certificate must chain to (only these; REQUESTS_CA_BUNDLE is not used).")
@click.option("--kmc-tls-cert", type=_FILE, default=None,
              help="With --kmc-ca-file: the RA's TLS client certificate PEM for a KMC that asks "
                   "for client certificates (its chain may follow).")
@click.option("--kmc-tls-key", type=_FILE, default=None,
              help="The key of --kmc-tls-cert (PEM, may be encrypted).")
@click.option("--kmc-tls-key-passphrase-file", type=_FILE, default=None,
              help="File whose first line is the --kmc-tls-key passphrase.")
@click.option("--kmc-officer-keys", "officer_keys_dir",
              type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="With --kmc-url: a directory of <username>.key files, each officer's own KMC "
                   "API key, for key-recovery approvals the KMC sees as theirs.")
@click.option("--card-number-reader", "card_number_readers", type=_FILE, multiple=True,
              help="The certificate (PEM) of a signed API client that may look up the card "
                   "number of a signing certificate (the identity provider's service "
                   "certificate); repeatable; none by default.")
@click.pass_context
@_errors
def serve(ctx: click.Context, serving: ServeOptions, kmc_db_url: str | None,
          shares: tuple[Path, ...], share_passphrase_files: tuple[Path, ...],
          kmc_ra_key_file: Path, resume_every: float, insecure_http: bool,
          card_login_file: Path | None, offline_certificate_login: bool,
          ca_url: str | None, kmc_url: str | None, service_key: Path | None,
          service_key_passphrase_file: Path | None, service_certificate: Path | None,
          kmc_ca_file: Path | None, kmc_tls_cert: Path | None, kmc_tls_key: Path | None,
          kmc_tls_key_passphrase_file: Path | None, officer_keys_dir: Path | None,
          card_number_readers: tuple[Path, ...]) -> None:
    """Run the RA web UI and enrollment API under gunicorn: with --ca-url and --kmc-url the RA
    reaches the CA and the KMC over their APIs; without, it opens both in process."""
    from keymgmt.errors import KmcError
    from keymgmt.ports_inprocess import read_share_files
    from ra import store
    from ra.web import WebConfig
    from sscard.audit import AuditError

    if (ca_url is None) != (kmc_url is None):
        raise click.UsageError("give --ca-url and --kmc-url together (or neither)")
    card_login = None
    if card_login_file is not None:
        from ra.cardlogin import CardLoginConfigError, load_config

        try:
            card_login = load_config(card_login_file)
        except CardLoginConfigError as exc:
            raise click.ClickException(str(exc)) from None
    # one key for every worker of this master: a session started at one holds at the others
    web = WebConfig(secrets.token_bytes(32), not insecure_http, card_login=card_login,
                    offline_certificate_login=offline_certificate_login,
                    card_number_readers=_certificate_identities(card_number_readers))
    kmc_tls = _kmc_tls(kmc_url, kmc_ca_file, kmc_tls_cert, kmc_tls_key,
                       kmc_tls_key_passphrase_file)
    if ca_url is not None and kmc_url is not None:
        if shares:
            raise click.UsageError("--share with --kmc-url: the RA holds no KMC share when the "
                                   "KMC runs on its own")
        _serve_remote(ctx, serving, ca_url, kmc_url, service_key, service_certificate,
                      service_key_passphrase_file,
                      read_secret(file=kmc_ra_key_file).decode().strip(),
                      officer_keys_dir, web, resume_every, kmc_tls)
        return
    home = _home(ctx)
    if not shares:
        raise click.UsageError("the KMC storage key is needed: give the custodians' --share "
                               "files")
    if share_passphrase_files and len(share_passphrase_files) != len(shares):
        raise click.UsageError("give one --share-passphrase-file per --share, or none")
    api_key = read_secret(file=kmc_ra_key_file).decode().strip()
    home.mkdir(parents=True, exist_ok=True)
    factory = _RaAppFactory(
        home, ctx.meta.get("ra_db_url") or store.default_url(home),
        kmc_db_url or f"sqlite:///{home / 'kmc.db'}", resolve_audit_url(ctx), [],
        api_key, web, resume_every)
    try:
        factory.given.extend(read_share_files([
            (path, read_secret(file=share_passphrase_files[i] if share_passphrase_files
                               else None, prompt=f"Passphrase for share {path.name}"))
            for i, path in enumerate(shares)]))
        # wrong shares, keys or a missing CA are reported before serving
        _check_opens(ctx, factory)
    except (KmcError, AuditError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"RA serving on {serving.url} (gunicorn, {serving.workers} workers)", err=True)
    run(factory, serving, name="ra")


def _kmc_tls(kmc_url: str | None, ca_file: Path | None, certificate: Path | None,
             key: Path | None, passphrase_file: Path | None) -> Any:
    """The RA's TLS settings for the KMC (``sscard.tls_client.ClientTls``), or None: checked
    here, once, before anything is opened (a wrong passphrase, a key that does not match)."""
    if ca_file is None and certificate is None and key is None and passphrase_file is None:
        return None
    if kmc_url is None or not kmc_url.lower().startswith("https://"):
        raise click.UsageError("--kmc-ca-file and --kmc-tls-* are for an https --kmc-url")
    if ca_file is None:
        raise click.UsageError("--kmc-tls-cert needs --kmc-ca-file: the CA certificates of "
                               "the KMC's TLS server certificate")
    if passphrase_file is not None and key is None:
        raise click.UsageError("--kmc-tls-key-passphrase-file goes with --kmc-tls-key")
    from sscard.serving import ServeError
    from sscard.tls_client import ClientTls

    try:
        tls = ClientTls(ca_file, certificate, key,
                        read_secret(file=passphrase_file, prompt="KMC TLS key passphrase")
                        if passphrase_file is not None else None,
                        "--kmc-tls-key-passphrase-file")
        tls.context()
    except ServeError as exc:
        raise click.UsageError(f"--kmc-tls-cert/--kmc-tls-key/--kmc-ca-file: {exc}") from None
    return tls


def _check_opens(ctx: click.Context, factory: _RaAppFactory) -> None:
    """Open what each worker will open, once, in the master, and close it again."""
    from ca import ports_inprocess as ca_ports
    from ca.errors import CAError
    from keymgmt import ports_inprocess as kmc_ports
    from ra.service import RegistrationAuthority
    from sscard.audit import AuditError
    from sscard.audit.scheduled import home_audit_key

    try:  # the workers' audit signing key, made (or found unloadable) before they start
        home_audit_key(factory.home)
    except AuditError as exc:
        raise click.ClickException(f"audit log: {exc}") from None
    audit = open_audit_log(ctx)
    try:
        kmc = kmc_ports.open_ra_port(factory.kmc_url, factory.home, factory.given,
                                     factory.api_key, audit)
        try:
            ca_ports.open_ra_port(factory.home, audit).close()
            RegistrationAuthority.open(factory.ra_url, audit).close()
        finally:
            kmc.close()
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        audit.engine.dispose()
