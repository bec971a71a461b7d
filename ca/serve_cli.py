"""``sscard --home DIR ca serve --port P``: the CA's HTTP service under gunicorn (or werkzeug).

The ``ca`` group attaches this command (``from ca.serve_cli import serve``). Each gunicorn worker
opens the CA itself after the fork, so database connections and key handles are never shared
between processes; revocations reach every worker through the database (``ca.ocsp_generation``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ca.service import ServiceConfig, create_app
from sscard.secrets_input import read_secret

log = logging.getLogger(__name__)


def read_token_file(path: Path) -> dict[str, str]:
    """API callers from a file of ``NAME TOKEN`` lines (``#`` comments); returns name -> hash."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise click.UsageError(f"cannot read API token file {path}: {exc.strerror}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2:
            raise click.UsageError(f"{path}:{number}: expected 'NAME TOKEN'")
        name, token = parts
        if len(token) < 16:
            raise click.UsageError(f"{path}:{number}: token for {name} is shorter than 16 chars")
        if name in tokens:
            raise click.UsageError(f"{path}:{number}: caller {name} listed twice")
        tokens[name] = ServiceConfig.hash_token(token)
    return tokens


def _online_root(authority: Any, passphrase: bytes | None,
                 database_url: str | None) -> list[Any]:
    """The hierarchy's root, opened, when it is online here (to publish its CRL and answer
    OCSP for the certificates it issued: the issuing CAs); else nothing."""
    from ca.authority import CertificateAuthority
    from ca.errors import CAError

    config = authority.config
    if config.root_offline or config.root.name == authority.name:
        return []
    try:
        return [CertificateAuthority.open(authority.home, passphrase, config.root.name,
                                          database_url)]
    except CAError as exc:
        log.warning("not publishing root CA %s: %s", config.root.name, exc)
        return []


class _AppFactory:
    """Builds the Flask app for one process: opens the CA, then ``create_app``."""

    def __init__(self, home: Path, passphrase: bytes | None, ca_name: str | None,
                 database_url: str | None, tokens: dict[str, str], tsa: bool,
                 audit_url: str) -> None:
        self.audit_url = audit_url
        self.home = home
        self.passphrase = passphrase
        self.ca_name = ca_name
        self.database_url = database_url
        self.tokens = tokens
        self.tsa = tsa

    def __call__(self) -> Any:
        from ca.authority import CertificateAuthority

        authority = CertificateAuthority.open(self.home, self.passphrase, self.ca_name,
                                              self.database_url)
        from sscard.audit import AuditLog

        config = ServiceConfig(
            authority=authority,
            audit_log=AuditLog.open(self.audit_url),
            other_authorities=tuple(_online_root(authority, self.passphrase,
                                                 self.database_url)),
            api_token_hashes=self.tokens,
            tsa_serial_file=(self.home / "ca" / f"tsa-serial-{authority.name}") if self.tsa
            else None,
        )
        return create_app(config)


def _run_gunicorn(factory: _AppFactory, host: str, port: int, workers: int,
                  threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("keepalive", 30)
            self.cfg.set("accesslog", None)
            self.cfg.set("proc_name", "sscard-ca")

        def load(self) -> Any:
            return factory()  # in each worker, after the fork

    Application().run()


@click.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 behind a reverse proxy).")
@click.option("--server", type=click.Choice(["gunicorn", "werkzeug"]), default="gunicorn",
              show_default=True, help="gunicorn (production) or werkzeug (threaded, one process).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True,
              help="threads per gunicorn worker.")
@click.option("--ca", "ca_name", default=None, help="Issuing CA to serve (default: the first).")
@click.option("--database-url", default=None, help="Override the CA database URL.")
@click.option("--api-tokens", "token_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File of 'NAME TOKEN' lines for the issuance/revocation API.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="CA key passphrase (default: the one stored by ca init).")
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin.")
@click.option("--no-tsa", is_flag=True, help="Do not offer the RFC 3161 TSA at /tsa.")
@click.option("--audit-db", default=None,
              help="Audit log database URL (default: <home>/audit.sqlite).")
@click.pass_obj
def serve(obj: Any, port: int, host: str, server: str, workers: int, threads: int,
          ca_name: str | None, database_url: str | None, token_file: Path | None,
          passphrase_file: Path | None, passphrase_stdin: bool, no_tsa: bool,
          audit_db: str | None) -> None:
    """Serve OCSP at /ocsp, CRLs at /crl/<ca>.crl, certificates at /certs/, the TSA at /tsa
    and the authenticated API at /api/v1/ (see docs/ca-admin-guide.md)."""
    from ca.authority import CertificateAuthority
    from ca.errors import CAError

    home = Path(obj.home)
    passphrase = None
    if passphrase_file is not None or passphrase_stdin:
        passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                                 prompt="CA passphrase")
    tokens = read_token_file(token_file) if token_file is not None else {}
    from sscard.audit import AuditError, AuditLog, default_url

    audit_url = audit_db or default_url(home)
    try:
        AuditLog.open(audit_url).engine.dispose()  # created now, not raced by the workers
    except AuditError as exc:
        raise click.ClickException(f"audit log at {audit_url}: {exc}") from None
    factory = _AppFactory(home, passphrase, ca_name, database_url, tokens, not no_tsa,
                          audit_url)
    # open once here so that a missing CA or a wrong passphrase is reported before serving,
    # and the service keys exist before workers race to create them
    try:
        with CertificateAuthority.open(home, passphrase, ca_name, database_url) as authority:
            authority.ocsp_signer()
            if not no_tsa:
                authority.tsa_signer()
            name = authority.name
            for root in _online_root(authority, passphrase, database_url):
                with root:
                    root.ocsp_signer()
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    click.echo(f"serving CA {name} at http://{host}:{port}/ocsp ({server})", err=True)
    if server == "werkzeug":
        from werkzeug.serving import run_simple

        run_simple(host, port, factory(), threaded=True, use_reloader=False)
    else:
        _run_gunicorn(factory, host, port, workers, threads)
