"""``sscard idp``: the OpenID Connect provider's administration (clients, signing keys) and
its server. The database is ``--db-url`` (or $SSCARD_IDP_DB_URL), by default the SQLite file
``<home>/idp.sqlite``; it holds the signing keys, so it is created owner-only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sscard.audit.actions import AuditAction
from sscard.cli import (
    audit_url,
    data_home,
    db_url_options,
    echo_json,
    format_option,
    open_audit_log,
)
from sscard.idp.sample_rp import command as sample_rp_command
from sscard.serving import ServeOptions, run, serve_options

if TYPE_CHECKING:
    from sscard.idp.store import IdpStore

DB_ENV = "SSCARD_IDP_DB_URL"
_db = db_url_options(DB_ENV, "identity provider database (default SQLite <home>/idp.sqlite)")


def _url(ctx: click.Context, db_url: str | None) -> str:
    if db_url:
        return db_url
    home = data_home(ctx)
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'idp.sqlite'}"  # created owner-only by IdpStore


def _audit(ctx: click.Context) -> Any:
    """The data directory's audit log (no record, no change), closed with the command."""
    log = open_audit_log(ctx)
    ctx.call_on_close(log.engine.dispose)
    return log


def _store(ctx: click.Context, db_url: str | None) -> IdpStore:
    from sscard.idp.store import IdpStore

    return IdpStore(_url(ctx, db_url))


@click.group("idp")
def group() -> None:
    """OpenID Connect provider: card login for business systems' web applications.

    Business systems' web applications log cardholders in with the social security card."""


@group.group("client")
def client_group() -> None:
    """Business systems (relying parties) registered by an administrator."""


@client_group.command("add")
@click.option("--name", required=True, help="The business system's name, shown on consent.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="Where the provider may send the code (exact match; repeatable).")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help="Where the provider may send the browser after logout (repeatable).")
@click.option("--sector", help="The pairwise subject's sector (default: the redirect URIs' "
                               "host). Systems of one sector see the same sub.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the client secret here (mode 0600); it is shown nowhere else.")
@click.option("--id-token-alg", type=click.Choice(["ES256", "SM2-SM3"]), default="ES256",
              show_default=True,
              help="SM2-SM3 only for a system that verifies with sscard.idp.sm2jws: standard "
                   "OIDC libraries do not verify SM2.")
@click.option("--grant-scope", "grant_scopes", multiple=True, type=click.Choice(["sscard:cert"]),
              help="A scope beyond openid/profile this client may ask for (repeatable); "
                   "sscard:cert releases the login certificate's x5t#S256, profile and "
                   "issuer (for the RA's officer login). None by default.")
@format_option
@_db
@click.pass_context
def client_add(ctx: click.Context, name: str, redirect_uris: tuple[str, ...],
               logout_uris: tuple[str, ...], sector: str | None, id_token_alg: str,
               grant_scopes: tuple[str, ...], secret_file: Path, output_format: str,
               db_url: str | None) -> None:
    """Register a business system; prints its client id. The secret goes to --secret-file
    only (never to the terminal: it would stay in scroll-back and logs)."""
    from sscard.idp.store import StoreError
    from sscard.secrets_input import write_private_file

    if secret_file.exists():
        raise click.UsageError(f"--secret-file {secret_file} exists; it is never overwritten")
    if not secret_file.parent.is_dir():
        raise click.UsageError(f"--secret-file: no directory {secret_file.parent}")
    from sscard.audit import local_actor

    store = _store(ctx, db_url)
    with _audit(ctx).operation(local_actor(), AuditAction.IDP_CLIENT_ADD, name,
                               details={"redirect_uris": list(redirect_uris),
                                        "granted_scopes": sorted(grant_scopes)}) as op:
        try:
            client, secret = store.add_client(name, list(redirect_uris), list(logout_uris),
                                              sector, id_token_alg, set(grant_scopes))
        except StoreError as exc:
            op.deny(str(exc))
            raise click.UsageError(str(exc)) from None
        op.set(client_id=client.client_id, sector=client.sector)
        try:
            write_private_file(secret_file, secret + "\n")
        except OSError as exc:
            store.remove_client(client.client_id)  # nothing half-done: no client, no secret
            op.fail(f"cannot write the secret file: {exc.strerror}")
            raise click.ClickException(f"cannot write {secret_file}: {exc.strerror}") from None
    if output_format == "json":
        echo_json({"client_id": client.client_id, "secret_file": str(secret_file),
                   "sector": client.sector, "granted_scopes": sorted(client.granted_scopes)})
    else:
        click.echo(client.client_id)
        click.echo(f"secret written to {secret_file} (mode 0600); sector {client.sector}",
                   err=True)


@client_group.command("list")
@format_option
@_db
@click.pass_context
def client_list(ctx: click.Context, output_format: str, db_url: str | None) -> None:
    """The registered business systems (never their secrets)."""
    rows = [{"client_id": c.client_id, "name": c.name, "sector": c.sector,
             "redirect_uris": list(c.redirect_uris),
             "post_logout_redirect_uris": list(c.post_logout_redirect_uris),
             "granted_scopes": sorted(c.granted_scopes)}
            for c in _store(ctx, db_url).clients()]
    if output_format == "json":
        echo_json(rows)
        return
    for row in rows:
        granted = ",".join(row["granted_scopes"]) or "none"
        click.echo(f"{row['client_id']}  {row['name']}  sector={row['sector']}  "
                   f"granted_scopes={granted}  {' '.join(row['redirect_uris'])}")


@client_group.command("remove")
@click.argument("client_id")
@_db
@click.pass_context
def client_remove(ctx: click.Context, client_id: str, db_url: str | None) -> None:
    """Remove a business system: its codes stop working at once."""
    from sscard.audit import local_actor
    from sscard.idp.store import StoreError

    store = _store(ctx, db_url)
    with _audit(ctx).operation(local_actor(), AuditAction.IDP_CLIENT_REMOVE, client_id) as op:
        try:
            store.remove_client(client_id)
        except StoreError as exc:
            op.deny(str(exc))
            raise click.ClickException(str(exc)) from None
    click.echo(f"removed {client_id}", err=True)


@group.group("keys")
def keys_group() -> None:
    """The ID-token signing keys (ES256)."""


@keys_group.command("rotate")
@click.option("--alg", type=click.Choice(["ES256", "SM2-SM3"]), default="ES256",
              show_default=True, help="Which signing key to rotate.")
@click.option("--retention-hours", type=click.FloatRange(min=0), default=24.0,
              show_default=True,
              help="Drop keys retired longer ago than this (>= the ID tokens' and relying "
                   "parties' session lifetime).")
@_db
@click.pass_context
def keys_rotate(ctx: click.Context, alg: str, retention_hours: float,
                db_url: str | None) -> None:
    """Make a new signing key current; the previous one stays published until its tokens
    expire. Running workers pick the new key up at once (it is read from the database)."""
    from datetime import UTC, datetime, timedelta

    from sscard.audit import local_actor
    from sscard.idp.provider import new_signing_key

    store = _store(ctx, db_url)
    with _audit(ctx).operation(local_actor(), AuditAction.IDP_KEY_ROTATE, "id-token") as op:
        kid = new_signing_key(store, alg)
        dropped = store.drop_keys_retired_before(
            datetime.now(UTC) - timedelta(hours=retention_hours))
        op.set(kid=kid, alg=alg, dropped=dropped)
    click.echo(kid)
    if dropped:
        click.echo(f"dropped {dropped} key(s) retired over {retention_hours:g} h ago", err=True)


@keys_group.command("list")
@format_option
@_db
@click.pass_context
def keys_list(ctx: click.Context, output_format: str, db_url: str | None) -> None:
    """The signing keys: kid, algorithm, created, retired (never the private part)."""
    rows = [{"kid": key["kid"], "alg": key["alg"], "created_at": key["created_at"].isoformat(),
             "retired_at": key["retired_at"].isoformat() if key["retired_at"] else None}
            for key in _store(ctx, db_url).keys()]
    if output_format == "json":
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['kid']}  {row['alg']}  {row['created_at']}  "
                   f"{row['retired_at'] or 'current'}")


@group.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="Provider TOML file (see sscard.idp.wsgi).")
@serve_options(default_port=8446)
@_db
@click.pass_context
def serve(ctx: click.Context, config_file: Path, serving: ServeOptions,
          db_url: str | None) -> None:
    """Serve the provider under gunicorn."""
    from sscard.idp.wsgi import IdpAppFactory, IdpConfigError, load_settings

    url = _url(ctx, db_url)
    try:
        load_settings(config_file)  # a bad file is named before serving
    except IdpConfigError as exc:
        raise click.ClickException(str(exc)) from None
    open_audit_log(ctx).engine.dispose()  # the log opens (and exists) before the workers
    factory = IdpAppFactory(config_file, url, audit_url(ctx))
    try:
        factory()  # the tables and the first key exist before the workers open them
    except ImportError as exc:
        raise click.ClickException(f"card login is not available: {exc}") from None
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"{config_file}: {exc}") from None
    click.echo(f"idp serving on {serving.url} (gunicorn, {serving.workers} workers)", err=True)
    run(factory, serving, name="idp")


group.add_command(sample_rp_command)
