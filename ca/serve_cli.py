"""``sscard --home DIR ca serve --port P``: the CA's HTTP service under gunicorn (``--server
granian``: under granian, the same app with the same options);
``sscard --home DIR ca ocsp-serve --port P``: its OCSP responder alone, under granian.

The ``ca`` group attaches this command (``from ca.serve_cli import serve``). Each worker (of
either server) opens the CA itself after the fork, so database connections and key handles are
never shared between processes; revocations reach every worker through the database
(``ca.ocsp_generation``). Each worker's request threads write through one group commit
(``sscard.groupcommit``): the nonces, certificates and audit records of concurrent requests
share a transaction and a commit.
With ``--audit-db`` naming the CA's own database, an issuance's certificate and audit records go
in the same transaction (one commit per batch of requests; ``bench/peers_issuance.py``); with
the audit log apart, its attempt, the certificate and its outcome take three.

``ocsp-serve`` answers the same OCSP through the same ``OcspFront`` (``ca.service``), plain
HTTP under granian, because for OCSP the WSGI server was the cost (docs/performance.md). A
deployment runs both: ``serve`` for the API, CRLs and the TSA (TLS), ``ocsp-serve`` where the
certificates' AIA points (RFC 5019 clients speak plain HTTP to it; the answers are signed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ca.authorization import AccessConfig, access_path, load_access
from ca.service import ServiceConfig, create_app
from sscard.cli import AUDIT_DB_URL_ENV, data_home, db_url_options
from sscard.secrets_input import read_secret
from sscard.serving import (
    SERVERS,
    ServeError,
    ServeOptions,
    check_granian,
    run_granian,
    serve_options,
    serve_with,
)

log = logging.getLogger(__name__)

#: who the audit records name for what the service does of itself (service keys, CRLs)
SERVICE_ACTOR = "ca-service"


def _online_root(authority: Any, passphrase: bytes | None,
                 database_url: str | None, audit: Any) -> list[Any]:
    """The hierarchy's root, opened, when it is online here (to publish its CRL and answer
    OCSP for the certificates it issued: the issuing CAs); else nothing."""
    from ca.authority import CertificateAuthority
    from ca.errors import CAError

    config = authority.config
    if config.root_offline or config.root.name == authority.name:
        return []
    try:
        return [CertificateAuthority.open(authority.home, passphrase, config.root.name,
                                          database_url, audit=audit, actor=authority.actor)]
    except CAError as exc:
        log.warning("not publishing root CA %s: %s", config.root.name, exc)
        return []


class _AppFactory:
    """Builds the Flask app for one process: opens the CA, then ``create_app``."""

    def __init__(self, home: Path, passphrase: bytes | None, ca_name: str | None,
                 database_url: str | None, access: Path, tsa: bool,
                 audit_url: str, ocsp_only: bool = False) -> None:
        self.ocsp_only = ocsp_only
        self.audit_url = audit_url
        self.home = home
        self.passphrase = passphrase
        self.ca_name = ca_name
        self.database_url = database_url
        self.access = access
        self.tsa = tsa

    def __call__(self) -> Any:
        from ca.authority import CertificateAuthority
        from ca.service import create_ocsp_app
        from sscard.audit.scheduled import open_served_log

        # signed checkpoints on a schedule, by default, in every worker (one makes each)
        audit = open_served_log(self.audit_url, self.home)
        authority = CertificateAuthority.open(self.home, self.passphrase, self.ca_name,
                                              self.database_url, audit=audit,
                                              actor=SERVICE_ACTOR)
        others = tuple(_online_root(authority, self.passphrase, self.database_url, audit))
        if self.ocsp_only:  # reads only: no API principals, no TSA, no group commit
            return create_ocsp_app(ServiceConfig(authority=authority, audit_log=audit,
                                                 other_authorities=others))
        # the request threads' writes (nonces, certificates, audit records) share commits
        authority.enable_group_commit()
        # asn1crypto parses a certificate's extensions lazily and not thread-safely: the
        # issuer's, first read by several request threads at once (granian starts them all
        # together), gave some of them a KeyError (an HTTP 500). Parsed here, before any.
        authority.issuer().key_id  # noqa: B018  (and the issuer, key loaded, made once)
        config = ServiceConfig(
            authority=authority,
            audit_log=audit,
            other_authorities=others,
            access=load_access(self.access, authority.profiles),
            tsa_serial_file=(self.home / "ca" / f"tsa-serial-{authority.name}") if self.tsa
            else None,
        )
        return create_app(config)


def _ca_options(func: Any) -> Any:
    """The options both serve commands take to open the CA and its audit log."""
    for option in reversed([
        click.option("--ca", "ca_name", default=None,
                     help="Issuing CA to serve (default: the first)."),
        click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="CA key passphrase (default: the one stored by ca init)."),
        click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin."),
        db_url_options("SSCARD_CA_DATABASE_URL", "CA database (default: the one ca init chose)",
                       dest="database_url", aliases=("--database-url",)),
        db_url_options(AUDIT_DB_URL_ENV, "audit log database (default: <home>/audit.sqlite)",
                       option="--audit-db-url", dest="audit_db", aliases=("--audit-db",)),
    ]):
        func = option(func)
    return func


def _prepare(database_url: str | None, passphrase_file: Path | None, passphrase_stdin: bool,
             audit_db: str | None) -> tuple[Path, str | None, bytes | None, str]:
    """The data home, the CA database URL, the passphrase and the audit log URL; the audit log
    and its signing key made now (not raced by the workers)."""
    from sscard.audit import AuditError, AuditLog, default_url
    from sscard.audit.scheduled import home_audit_key

    ctx = click.get_current_context()
    home = data_home(ctx)
    # `sscard ca --db-url URL serve` as well as `sscard ca serve --db-url URL`
    database_url = database_url or ctx.meta.get("ca_db_url")
    passphrase = None
    if passphrase_file is not None or passphrase_stdin:
        passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                                 prompt="CA passphrase")
    audit_url = audit_db or default_url(home)
    try:
        AuditLog.open(audit_url).engine.dispose()  # created now, not raced by the workers
        home_audit_key(home)  # likewise the audit signing key, made on first serve
    except AuditError as exc:
        raise click.ClickException(f"audit log: {exc}") from None
    return home, database_url, passphrase, audit_url


def _check_opens(home: Path, passphrase: bytes | None, ca_name: str | None,
                 database_url: str | None, audit_url: str,
                 prepare: Callable[[Any], None]) -> str:
    """Open the CA once before serving, so that a missing CA or a wrong passphrase is reported
    now and the service keys exist before workers race to create them; its name."""
    from ca.authority import CertificateAuthority
    from ca.errors import CAError
    from sscard.audit import AuditError, AuditLog

    audit = AuditLog.open(audit_url)
    try:
        with CertificateAuthority.open(home, passphrase, ca_name, database_url, audit=audit,
                                       actor=SERVICE_ACTOR) as authority:
            authority.ocsp_signer()
            prepare(authority)
            for root in _online_root(authority, passphrase, database_url, audit):
                with root:
                    root.ocsp_signer()
            return str(authority.name)
    except (CAError, AuditError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        audit.engine.dispose()


@click.command("serve")
@serve_options(default_port=8080)
@click.option("--access", "access_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The API's principals and their permissions (default: "
                                 "<home>/ca/access.toml, managed by `sscard ca principal`).")
@click.option("--no-tsa", is_flag=True, help="Do not offer the RFC 3161 TSA at /tsa.")
@click.option("--server", type=click.Choice(SERVERS), default=SERVERS[0], show_default=True,
              help="The HTTP server: gunicorn, or granian (the same app and options; "
                   "--timeout is gunicorn's only; docs/performance.md).")
@_ca_options
@click.pass_obj
def serve(obj: Any, serving: ServeOptions, ca_name: str | None, database_url: str | None,
          access_file: Path | None, passphrase_file: Path | None, passphrase_stdin: bool,
          no_tsa: bool, server: str, audit_db: str | None) -> None:
    """Serve OCSP at /ocsp, CRLs at /crl/<ca>.crl, certificates at /certs/, the TSA at /tsa
    and the authenticated API at /api/v1/ (see docs/ca-admin-guide.md)."""
    if server == "granian":
        try:
            check_granian(serving)  # before the CA is opened
        except ServeError as exc:
            raise click.UsageError(str(exc)) from None
    home, database_url, passphrase, audit_url = _prepare(database_url, passphrase_file,
                                                         passphrase_stdin, audit_db)
    access = access_file if access_file is not None else access_path(home)
    principals: list[AccessConfig] = []

    def prepare(authority: Any) -> None:
        if not no_tsa:
            authority.tsa_signer()
        principals.append(load_access(access, authority.profiles))

    name = _check_opens(home, passphrase, ca_name, database_url, audit_url, prepare)
    factory = _AppFactory(home, passphrase, ca_name, database_url, access, not no_tsa,
                          audit_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    click.echo(f"serving CA {name} at {serving.url}/ocsp ({server}, {serving.workers} workers); "
               "API principals: "
               + (", ".join(sorted(principals[0].principals)) or f"none ({access})"), err=True)
    serve_with(server, factory, serving, name="ca")


@click.command("ocsp-serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for relying parties elsewhere).")
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True,
              help="TCP port to listen on.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes (one per core: each answers on one core).")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Python threads per worker (they cover a database read on a cache miss).")
@_ca_options
def ocsp_serve(host: str, port: int, workers: int, threads: int, ca_name: str | None,
               database_url: str | None, passphrase_file: Path | None,
               passphrase_stdin: bool, audit_db: str | None) -> None:
    """Serve OCSP alone, plain HTTP under granian: POST /ocsp and GET /ocsp/<base64>
    (RFC 6960, RFC 5019), and /health, /ready, /metrics. SIGTERM stops it gracefully."""
    home, database_url, passphrase, audit_url = _prepare(database_url, passphrase_file,
                                                         passphrase_stdin, audit_db)
    name = _check_opens(home, passphrase, ca_name, database_url, audit_url, lambda _: None)
    serving = ServeOptions(host=host, port=port, workers=workers, threads=threads)
    factory = _AppFactory(home, passphrase, ca_name, database_url, access_path(home), False,
                          audit_url, ocsp_only=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    click.echo(f"serving OCSP of CA {name} at {serving.url}/ocsp (granian, {workers} workers)",
               err=True)
    run_granian(factory, serving, name="ocsp", signed_answers=True)
