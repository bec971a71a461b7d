"""``sscard ca principal ...``, ``sscard ca admin ...`` and ``sscard ca approve``: who may use
the CA API, and the administrators whose approvals make dual control for CA-level issuance.

All of them edit ``<home>/ca/access.toml`` (see ``ca.authorization``) on the CA's own home;
a running ``ca serve`` reads it when its workers start.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from ca.authorization import (
    RA_PROFILES,
    AccessConfig,
    Administrator,
    ApiOperation,
    CertificateIdentity,
    Principal,
    access_path,
    certificate_fingerprint,
    certificate_fits_profile,
    hash_token,
    is_ca_level,
    load_access,
    save_access,
)
from ca.errors import CAError
from sscard.cli import echo_json, format_option
from sscard.secrets_input import write_private_file


def _home(ctx: click.Context) -> Path:
    obj = ctx.find_root().obj
    return Path(obj.home) if obj is not None else Path("./sscard-data")


def _profiles(home: Path) -> dict[str, Any]:
    from ca.profile import load_profiles

    return load_profiles([home / "profiles"])


def _load(home: Path) -> AccessConfig:
    try:
        return load_access(access_path(home), _profiles(home))
    except CAError as exc:
        raise click.ClickException(str(exc)) from None


def _save(home: Path, config: AccessConfig, action: str, name: str, **details: Any) -> None:
    save_access(access_path(home), config)
    from sscard.audit import AuditError, AuditLog, default_url

    try:  # a configuration change is a security event (issue 11 item 3)
        AuditLog.open(default_url(home)).append("administrator", action, name[:512], "success",
                                                details=details)
    except AuditError as exc:
        raise click.ClickException(f"changed {access_path(home)}, but the audit log did not "
                                   f"record it: {exc}") from None


@click.group("principal")
def principal_group() -> None:
    """CA API principals: what each API token or service certificate may do."""


@principal_group.command("add")
@click.argument("name")
@click.option("--operation", "operations", multiple=True,
              type=click.Choice([o.value for o in ApiOperation]),
              help="An operation it may call (repeatable).")
@click.option("--profile", "profiles", multiple=True,
              help="A profile it may issue or revoke (repeatable); CA-level profiles never.")
@click.option("--ca", "cas", multiple=True, help="A CA it may use (repeatable; default: the "
                                                  "first issuing CA).")
@click.option("--ra", "as_ra", is_flag=True,
              help="The RA's permission set: issue, revoke, status and, with --certificate, "
                   "attest-pop (vouch for proof of possession in batches) for the cardholder "
                   "and business-system profiles.")
@click.option("--token-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Credential: a new random API token, written (0600) to this file.")
@click.option("--certificate", "cert_path", type=click.Path(dir_okay=False, exists=True,
                                                            path_type=Path), default=None,
              help="Credential: this service certificate (PEM or DER), by its fingerprint.")
@click.option("--certificate-profile", default="service", show_default=True,
              help="The profile the certificate must come from.")
@click.option("--replace", is_flag=True, help="Replace a principal of the same name.")
@click.pass_context
def principal_add(ctx: click.Context, name: str, operations: tuple[str, ...],
                  profiles: tuple[str, ...], cas: tuple[str, ...], as_ra: bool,
                  token_out: Path | None, cert_path: Path | None, certificate_profile: str,
                  replace: bool) -> None:
    """Add principal NAME with one credential and explicit permissions."""
    home = _home(ctx)
    config = _load(home)
    if name in config.principals and not replace:
        raise click.UsageError(f"principal {name} exists (give --replace to change it)")
    if (token_out is None) == (cert_path is None):
        raise click.UsageError("give exactly one credential: --token-out or --certificate")
    if as_ra:
        # a token never vouches for proof of possession (the CA takes attest-pop only from a
        # signed request), so an RA on a token is not given a permission it could not use
        operations = operations or tuple(
            o.value for o in ApiOperation
            if cert_path is not None or o is not ApiOperation.ATTEST_POP)
        profiles = profiles or RA_PROFILES
    if token_out is not None and ApiOperation.ATTEST_POP.value in operations:
        raise click.UsageError("attest-pop needs a --certificate credential: the CA takes a "
                               "proof-of-possession attestation only from a signed request")
    known = _profiles(home)
    for profile in profiles:
        if profile not in known:
            raise click.BadParameter(f"no profile named {profile!r}", param_hint="--profile")
        if is_ca_level(known[profile]):
            raise click.BadParameter(f"{profile} is CA-level: issued only offline under dual "
                                     "control, never by a principal", param_hint="--profile")
    if not cas:
        cas = (default_ca(home),)
    token = None
    identity = None
    if cert_path is not None:
        from sscard.x509.parse import load_certificate

        cert = load_certificate(cert_path.read_bytes())
        if certificate_profile not in known:
            raise click.BadParameter(f"no profile named {certificate_profile!r}",
                                     param_hint="--certificate-profile")
        if not certificate_fits_profile(cert, known[certificate_profile]):
            raise click.BadParameter(f"{cert_path} is not a certificate of profile "
                                     f"{certificate_profile}", param_hint="--certificate")
        identity = CertificateIdentity(certificate_profile, certificate_fingerprint(cert.dump()))
    else:
        token = "ca_" + secrets.token_urlsafe(32)
    principal = Principal(name, frozenset(ApiOperation(o) for o in operations),
                          frozenset(profiles), frozenset(cas),
                          token_sha256=None if token is None else hash_token(token),
                          certificate=identity)
    try:
        config = config.with_principal(principal)
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    if token is not None and token_out is not None:
        write_private_file(token_out, token + "\n")
    _save(home, config, "ca.principal.add", name,
          operations=sorted(o.value for o in principal.operations),
          profiles=sorted(principal.profiles), cas=sorted(principal.cas),
          credential="token" if token else f"certificate:{identity.sha256 if identity else ''}")
    click.echo(f"principal {name}: {', '.join(sorted(operations)) or 'no operations'} on "
               f"{', '.join(sorted(profiles)) or 'no profiles'} at CA {', '.join(cas)}"
               + (f"; API token written to {token_out}" if token_out else ""))


@principal_group.command("remove")
@click.argument("name")
@click.pass_context
def principal_remove(ctx: click.Context, name: str) -> None:
    """Remove principal NAME (its credential no longer works)."""
    home = _home(ctx)
    try:
        config = _load(home).without_principal(name)
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    _save(home, config, "ca.principal.remove", name)
    click.echo(f"principal {name} removed")


@principal_group.command("list")
@format_option
@click.pass_context
def principal_list(ctx: click.Context, output_format: str) -> None:
    """List the principals and their permissions."""
    config = _load(_home(ctx))
    if output_format == "json":
        echo_json([{"name": p.name, "operations": sorted(p.operations),
                    "profiles": sorted(p.profiles), "cas": sorted(p.cas),
                    "credential": "token" if p.token_sha256 else
                    "certificate" if p.certificate else None,
                    "certificate": {"profile": p.certificate.profile,
                                    "sha256": p.certificate.sha256} if p.certificate else None}
                   for p in sorted(config.principals.values(), key=lambda p: p.name)])
        return
    for p in sorted(config.principals.values(), key=lambda p: p.name):
        credential = "token" if p.token_sha256 else \
            f"certificate {p.certificate.profile} {p.certificate.sha256[:16]}..." \
            if p.certificate else "-"
        click.echo(f"{p.name}\t{','.join(sorted(p.operations)) or '-'}\t"
                   f"{','.join(sorted(p.profiles)) or '-'}\t{','.join(sorted(p.cas)) or '-'}\t"
                   f"{credential}")


@click.group("admin")
def admin_group() -> None:
    """Administrators whose signed approvals make dual control for CA-level issuance."""


@admin_group.command("add")
@click.argument("name")
@click.option("--public-key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The administrator's public key (PEM; `sscard key public`).")
@click.pass_context
def admin_add(ctx: click.Context, name: str, key_path: Path) -> None:
    """Register administrator NAME by public key."""
    home = _home(ctx)
    config = _load(home)
    pem = key_path.read_text(encoding="ascii", errors="replace")
    if any(a.public_key_pem.strip() == pem.strip() for a in config.administrators.values()):
        raise click.ClickException("this public key is already registered: one person, one "
                                   "administrator")
    try:
        config = config.with_administrator(Administrator(name, pem))
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    _save(home, config, "ca.admin.add", name)
    click.echo(f"administrator {name} registered")


@admin_group.command("remove")
@click.argument("name")
@click.pass_context
def admin_remove(ctx: click.Context, name: str) -> None:
    """Remove the administrator NAME: their approvals no longer count."""
    home = _home(ctx)
    try:
        config = _load(home).without_administrator(name)
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
    _save(home, config, "ca.admin.remove", name)
    click.echo(f"administrator {name} removed")


@click.command("approve")
@click.option("--profile", required=True, help="The CA-level profile to issue.")
@click.option("--csr", "csr_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The PKCS#10 request to be issued, PEM or DER.")
@click.option("--admin", "admin_name", required=True, help="Your administrator name.")
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Your administrator key (encrypted PKCS#8).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the signed approval.")
@click.option("--sin", "social_insurance_number", default=None,
              help="Social insurance number, as ca issue will be given it.")
@click.option("--dns", "dns_names", multiple=True,
              help="DNS subjectAltName, as ca issue will be given it (repeatable).")
@click.option("--days", "validity_days", type=int, default=None,
              help="Validity in days, as ca issue will be given it.")
@click.option("--ca", "ca_name", default=None, help="The issuing CA (default: the first).")
@click.option("--valid-hours", type=click.IntRange(1, 24 * 7), default=24, show_default=True,
              help="Hours this approval can be used for.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File whose first line is your key's passphrase.")
@click.option("--passphrase-stdin", is_flag=True, help="Read your key's passphrase from stdin.")
@click.pass_context
def approve(ctx: click.Context, profile: str, csr_path: Path, admin_name: str, key_path: Path,
            out: Path, social_insurance_number: str | None, dns_names: tuple[str, ...],
            validity_days: int | None, ca_name: str | None, valid_hours: int,
            passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Sign your approval of one CA-level issuance (two administrators must approve)."""
    from ca.cli import issue_extra, request_der
    from ca.dual_control import IssueIntent, sign_approval
    from sscard.crypto.errors import CryptoError
    from sscard.keys.software import SoftwareKey
    from sscard.secrets_input import read_secret

    home = _home(ctx)
    config = _load(home)
    if admin_name not in config.administrators:
        raise click.UsageError(f"{admin_name} is not a registered administrator")
    passphrase = read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                             prompt="Administrator key passphrase")
    try:
        key = SoftwareKey.load(key_path, passphrase)
    except (CryptoError, ValueError) as exc:
        raise click.ClickException(f"cannot open {key_path}: {exc}") from None
    registered = config.administrators[admin_name].public_key_pem
    from sscard.x509.pem import pem_blocks

    if pem_blocks(registered.encode())[0][1] != key.public_key().spki_der():
        raise click.ClickException(f"{key_path} is not the key registered for {admin_name}")
    name = ca_name or default_ca(home)
    intent = IssueIntent.of(name, profile, request_der(csr_path),
                            issue_extra(social_insurance_number, dns_names, validity_days))
    write_private_file(out, sign_approval(key, admin_name, intent, timedelta(hours=valid_hours)))
    click.echo(f"approval by {admin_name} of {profile} for {csr_path} written to {out}")


def default_ca(home: Path) -> str:
    """The first issuing CA of the hierarchy configured at ``ca init``."""
    from ca.config import load_config

    path = home / "ca.toml"
    try:
        return load_config(path if path.exists() else None).issuing[0].name
    except CAError as exc:
        raise click.ClickException(str(exc)) from None
