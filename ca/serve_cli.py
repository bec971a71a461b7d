"""``sscard --home DIR ca serve --port P``: the CA's HTTP service under gunicorn.

The ``ca`` group attaches this command (``from ca.serve_cli import serve``). Each gunicorn worker
opens the CA itself after the fork, so database connections and key handles are never shared
between processes; revocations reach every worker through the database (``ca.ocsp_generation``).
Each worker's request threads write through one group commit (``sscard.groupcommit``): the
nonces, certificates and audit records of concurrent requests share a transaction and a commit.
With ``--audit-db`` naming the CA's own database, an issuance's certificate and audit records go
in the same transaction (one commit per batch of requests; ``bench/peers_issuance.py``); with
the audit log apart, its attempt, the certificate and its outcome take three.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ca.authorization import AccessConfig, access_path, load_access
from ca.service import ServiceConfig, create_app
from sscard.cli import AUDIT_DB_URL_ENV, data_home, db_url_options
from sscard.secrets_input import read_secret
from sscard.serving import ServeOptions, run, serve_options

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
                 audit_url: str) -> None:
        self.audit_url = audit_url
        self.home = home
        self.passphrase = passphrase
        self.ca_name = ca_name
        self.database_url = database_url
        self.access = access
        self.tsa = tsa

    def __call__(self) -> Any:
        from ca.authority import CertificateAuthority
        from sscard.audit.scheduled import open_served_log

        # signed checkpoints on a schedule, by default, in every worker (one makes each)
        audit = open_served_log(self.audit_url, self.home)
        authority = CertificateAuthority.open(self.home, self.passphrase, self.ca_name,
                                              self.database_url, audit=audit,
                                              actor=SERVICE_ACTOR)
        # the request threads' writes (nonces, certificates, audit records) share commits
        authority.enable_group_commit()
        config = ServiceConfig(
            authority=authority,
            audit_log=audit,
            other_authorities=tuple(_online_root(authority, self.passphrase,
                                                 self.database_url, audit)),
            access=load_access(self.access, authority.profiles),
            tsa_serial_file=(self.home / "ca" / f"tsa-serial-{authority.name}") if self.tsa
            else None,
        )
        return create_app(config)


@click.command("serve")
@serve_options(default_port=8080)
@click.option("--ca", "ca_name", default=None, help="Issuing CA to serve (default: the first).")
@click.option("--access", "access_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The API's principals and their permissions (default: "
                                 "<home>/ca/access.toml, managed by `sscard ca principal`).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="CA key passphrase (default: the one stored by ca init).")
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin.")
@click.option("--no-tsa", is_flag=True, help="Do not offer the RFC 3161 TSA at /tsa.")
@db_url_options("SSCARD_CA_DATABASE_URL", "CA database (default: the one ca init chose)",
                dest="database_url", aliases=("--database-url",))
@db_url_options(AUDIT_DB_URL_ENV, "audit log database (default: <home>/audit.sqlite)",
                option="--audit-db-url", dest="audit_db", aliases=("--audit-db",))
@click.pass_obj
def serve(obj: Any, serving: ServeOptions, ca_name: str | None, database_url: str | None,
          access_file: Path | None, passphrase_file: Path | None, passphrase_stdin: bool,
          no_tsa: bool, audit_db: str | None) -> None:
    """Serve OCSP at /ocsp, CRLs at /crl/<ca>.crl, certificates at /certs/, the TSA at /tsa
    and the authenticated API at /api/v1/ (see docs/ca-admin-guide.md)."""
    from ca.authority import CertificateAuthority
    from ca.errors import CAError

    ctx = click.get_current_context()
    home = data_home(ctx)
    # `sscard ca --db-url URL serve` as well as `sscard ca serve --db-url URL`
    database_url = database_url or ctx.meta.get("ca_db_url")
    passphrase = None
    if passphrase_file is not None or passphrase_stdin:
        passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                                 prompt="CA passphrase")
    access = access_file if access_file is not None else access_path(home)
    from sscard.audit import AuditError, AuditLog, default_url
    from sscard.audit.scheduled import home_audit_key

    audit_url = audit_db or default_url(home)
    try:
        audit = AuditLog.open(audit_url)  # created now, not raced by the workers
        home_audit_key(home)  # likewise the audit signing key, made on first serve
    except AuditError as exc:
        raise click.ClickException(f"audit log: {exc}") from None
    factory = _AppFactory(home, passphrase, ca_name, database_url, access, not no_tsa,
                          audit_url)
    # open once here so that a missing CA or a wrong passphrase is reported before serving,
    # and the service keys exist before workers race to create them
    try:
        with CertificateAuthority.open(home, passphrase, ca_name, database_url, audit=audit,
                                       actor=SERVICE_ACTOR) as authority:
            authority.ocsp_signer()
            if not no_tsa:
                authority.tsa_signer()
            name = authority.name
            principals: AccessConfig = load_access(access, authority.profiles)
            for root in _online_root(authority, passphrase, database_url, audit):
                with root:
                    root.ocsp_signer()
    except (CAError, AuditError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        audit.engine.dispose()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    click.echo(f"serving CA {name} at {serving.url}/ocsp (gunicorn, {serving.workers} workers); "
               "API principals: "
               + (", ".join(sorted(principals.principals)) or f"none ({access})"), err=True)
    run(factory, serving, name="ca")
