"""``sscard ca ...``: the certificate authority's command line.

Commands translate between files and the library API in ``ca.authority``; errors from it
(refused requests, unknown serials, ...) end the command with exit status 1 and the reason.
``ca serve`` lives in ``ca.serve_cli`` and is loaded only when asked for (it pulls in Flask).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ca.errors import CAError
from sscard.cli import (
    LazyGroup,
    data_home,
    db_url_options,
    echo_json,
    format_option,
    open_audit_log,
)
from sscard.secrets_input import read_secret

F = TypeVar("F", bound=Callable[..., Any])


#: subcommands kept out of ``sscard ca --help`` and the other commands' start-up: ``serve`` imports
#: Flask and the CA service, the access commands the CA's authorisation model
LAZY = {
    "serve": ("ca.serve_cli:serve",
              "Serve OCSP at /ocsp, CRLs at /crl/<ca>.crl, certificates at /certs/, the TSA at "
              "/tsa and the authenticated API at /api/v1/ (see docs/ca-admin-guide.md)."),
    "ocsp-serve": ("ca.serve_cli:ocsp_serve",
                   "Serve OCSP alone, plain HTTP under granian: POST /ocsp and GET "
                   "/ocsp/<base64> (RFC 6960, RFC 5019), and /health, /ready, /metrics."),
    "ocsp-publish": ("ca.ocsp_publish:command",
                     "Write pre-signed OCSP answers as files for nginx to serve "
                     "(deploy/nginx/ocsp.conf)."),
    "principal": ("ca.access_cli:principal_group",
                  "CA API principals: what each API token or service certificate may do."),
    "admin": ("ca.access_cli:admin_group",
              "Administrators whose signed approvals make dual control for CA-level issuance."),
    "approve": ("ca.access_cli:approve",
                "Sign your approval of one CA-level issuance (two administrators must "
                "approve)."),
}


@click.group("ca", cls=LazyGroup, lazy=LAZY)
@db_url_options("SSCARD_CA_DATABASE_URL", "CA database (default: the one ca init chose, "
                "[database] url in ca.toml, else SQLite <home>/ca.db)")
@click.pass_context
def group(ctx: click.Context, db_url: str | None) -> None:
    """Certificate authority: hierarchy, issuance, revocation, CRL, OCSP, TSA."""
    ctx.meta["ca_db_url"] = db_url


def _db_url(ctx: click.Context) -> str | None:
    """The group's --db-url (else $SSCARD_CA_DATABASE_URL; None: the one ca init chose)."""
    url: str | None = ctx.meta.get("ca_db_url")
    return url


def _home(ctx: click.Context) -> Path:
    return data_home(ctx)


def _audit(ctx: click.Context) -> Any:
    """The data directory's audit log, closed with the command; the CA records in it."""
    log = open_audit_log(ctx)
    ctx.call_on_close(log.engine.dispose)
    return log


def _passphrase_options(func: F) -> F:
    func = click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None,
                        help="File whose first line is the CA key passphrase (default: the "
                             "one ca init stored in <home>/secrets/ca.pass).")(func)
    func = click.option("--passphrase-stdin", is_flag=True,
                        help="Read the CA key passphrase from stdin.")(func)
    return func


def _passphrase(passphrase_file: Path | None, passphrase_stdin: bool) -> bytes | None:
    if passphrase_file is None and not passphrase_stdin:
        return None
    return read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                       prompt="CA key passphrase")


def _ca_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from sscard.audit.errors import AuditError  # the audit package imports SQLAlchemy
        from sscard.keys.base import KeyHandleError

        try:
            return func(*args, **kwargs)
        except CAError as exc:
            raise click.ClickException(str(exc)) from None
        except AuditError as exc:
            # no record, no operation: the CA refused to act without its audit record
            raise click.ClickException(f"audit log: {exc}") from None
        except KeyHandleError as exc:
            # e.g. SM2 asked of a PKCS#11 token that has no SM2 mechanisms (SoftHSM2)
            raise click.ClickException(str(exc)) from None
        except OperationalError as exc:
            raise click.ClickException(
                f"the CA's database cannot be used: {str(exc.orig or exc).strip()}") from None

    return wrapper  # type: ignore[return-value]


def _open(ctx: click.Context, passphrase: bytes | None, name: str | None) -> Any:
    from ca.authority import CertificateAuthority

    return CertificateAuthority.open(_home(ctx), passphrase, name, database_url=_db_url(ctx),
                                     audit=_audit(ctx))


def _write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {what} {path}: {exc.strerror}") from None


_CA_OPTION = click.option("--ca", "ca_name", default=None,
                          help="Which CA of the hierarchy (default: the first issuing CA).")


@group.command("init")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Hierarchy TOML (default: an SM2 root and issuing CA).")
@click.option("--issuing-only", is_flag=True,
              help="Create only the issuing CA keys and CSRs; an offline root signs them.")
@click.option("--csr-out", type=click.Path(path_type=Path), default=None,
              help="With --issuing-only (or an offline root in --config): where to write the "
                   "CSR (a file for one issuing CA, else a directory).")
@click.option("--base-url", default=None, metavar="URL",
              help="Where relying parties reach this CA's service (http or https): written "
                   "into every certificate (CRL distribution points, OCSP, caIssuers). Without "
                   "--config; default http://127.0.0.1:8080, for trying things out only.")
@_passphrase_options
@click.pass_context
@_ca_errors
def init_command(ctx: click.Context, config: Path | None, issuing_only: bool,
                 csr_out: Path | None, base_url: str | None, passphrase_file: Path | None,
                 passphrase_stdin: bool) -> None:
    """Create the CA hierarchy in the data directory."""
    from urllib.parse import urlsplit

    from ca.authority import initialise
    from ca.config import DEFAULT_BASE_URL, default_config_text, load_config, parse_config
    from sscard.x509.pem import der_to_pem

    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise click.UsageError(f"--base-url {base_url!r}: the base URL must be an http or "
                                   "https URL with a host, e.g. http://ca.example.gov.cn")
        if config is not None:
            raise click.UsageError("--base-url goes without --config (set base_url in the "
                                   "config file instead)")
    cfg = (parse_config(default_config_text(base_url), "default config") if base_url
           else load_config(config))
    if csr_out is not None and not (issuing_only or cfg.root_offline):
        raise click.UsageError("--csr-out goes with --issuing-only (or offline = true under "
                               "[root] in --config)")
    home = _home(ctx)
    result = initialise(home, cfg, _passphrase(passphrase_file, passphrase_stdin),
                        issuing_only=issuing_only, database_url=_db_url(ctx), audit=_audit(ctx))
    default = " (the default, for trying things out only: for a real CA give --base-url or " \
              "base_url in --config)" if cfg.base_url == DEFAULT_BASE_URL else ""
    click.echo(f"base URL {cfg.base_url}: written into every certificate (CRL distribution "
               f"points, OCSP, caIssuers){default}")
    if result.passphrase_file is not None:
        click.echo(f"generated a random key passphrase and stored it in {result.passphrase_file}"
                   " (mode 0600); keep a copy offline, it protects the CA keys")
    for name in result.active:
        click.echo(f"CA {name}: ready")
    if result.pending_csrs:
        for name, csr in result.pending_csrs.items():
            if csr_out is None:
                target = home / f"{name}.csr.pem"
            elif len(result.pending_csrs) == 1 and not csr_out.is_dir():
                target = csr_out
            else:
                csr_out.mkdir(parents=True, exist_ok=True)
                target = csr_out / f"{name}.csr.pem"
            _write_file(target, der_to_pem(csr, "CERTIFICATE REQUEST"))
            click.echo(f"CA {name}: waiting for its certificate; CSR written to {target} "
                       "(have the root sign it, then run ca import-issuing-cert)")
    click.echo(f"database: {result.database_url}")


@group.command("import-issuing-cert")
@click.option("--cert", "cert_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The issuing CA certificate the offline root signed.")
@click.option("--root", "root_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The root CA certificate.")
@_CA_OPTION
@click.pass_context
@_ca_errors
def import_issuing_cert(ctx: click.Context, cert_path: Path, root_path: Path,
                        ca_name: str | None) -> None:
    """Complete an issuing CA created with --issuing-only."""
    from ca.authority import import_issuing_certificate

    import_issuing_certificate(_home(ctx), _read_file(cert_path, "certificate"),
                               _read_file(root_path, "root certificate"), ca_name,
                               _db_url(ctx), audit=_audit(ctx))
    click.echo("issuing CA certificate imported; the CA is ready")


@group.command("certs")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM file for the chain: the issuing CA first, the root last.")
@_CA_OPTION
@click.pass_context
@_ca_errors
def certs(ctx: click.Context, out: Path, ca_name: str | None) -> None:
    """Write the CA certificate chain."""
    from sscard.x509.pem import der_to_pem

    with _open(ctx, None, ca_name) as authority:
        chain = authority.chain()
    _write_file(out, b"".join(der_to_pem(c.dump(), "CERTIFICATE") for c in chain))
    click.echo(f"wrote {len(chain)} certificates to {out}")


def _parse_time(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=what) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def issue_extra(social_insurance_number: str | None, dns_names: tuple[str, ...],
                validity_days: int | None) -> dict[str, Any]:
    """The request fields of ``ca issue`` (and of an approval, which must name the same)."""
    extra: dict[str, Any] = {}
    if social_insurance_number:
        extra["social_insurance_number"] = social_insurance_number
    if dns_names:
        extra["dns_names"] = list(dns_names)
    if validity_days is not None:
        extra["validity_days"] = validity_days
    return extra


def request_der(csr_path: Path) -> bytes:
    """The CSR's DER (PEM or DER file), what approvals name by digest."""
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_csr

    try:
        return bytes(load_csr(_read_file(csr_path, "CSR")).dump())
    except X509Error as exc:
        raise click.ClickException(f"certificate request rejected: {csr_path}: {exc}") from None


def _record_dual_control(ctx: click.Context, intent: Any, outcome: str,
                         **details: Any) -> None:
    from sscard.audit import AuditError, AuditLog, default_url

    try:
        AuditLog.open(default_url(_home(ctx))).append(
            "administrator", "ca.issue.dual_control", f"profile:{intent.profile}", outcome,
            details={"ca": intent.ca, "request_sha256": intent.request_sha256, **details})
    except AuditError as exc:  # no record, no CA-level certificate
        raise click.ClickException(f"the audit log cannot record the dual control: {exc}"
                                   ) from None


@group.command("issue")
@click.option("--profile", required=True, help="Certificate profile, e.g. cardholder-sign.")
@click.option("--csr", "csr_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="PKCS#10 request, PEM or DER.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate (PEM).")
@click.option("--sin", "social_insurance_number", default=None,
              help="Social insurance number (default: the CSR subject's serialNumber).")
@click.option("--dns", "dns_names", multiple=True, help="DNS subjectAltName (repeatable).")
@click.option("--days", "validity_days", type=int, default=None,
              help="Shorter validity than the profile's.")
@click.option("--approval", "approvals", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An administrator's approval (`sscard ca approve`); CA-level profiles "
                   "(sub-CA, OCSP signer, TSA, service) need two, by distinct administrators.")
@_CA_OPTION
@_passphrase_options
@click.pass_context
@_ca_errors
def issue(ctx: click.Context, profile: str, csr_path: Path, out: Path,
          social_insurance_number: str | None, dns_names: tuple[str, ...],
          validity_days: int | None, approvals: tuple[Path, ...], ca_name: str | None,
          passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Issue a certificate from a CSR under a profile."""
    from ca.authorization import access_path, is_ca_level, load_access
    from ca.dual_control import ApprovalError, IssueIntent, check_approvals
    from sscard.x509.pem import der_to_pem

    request = request_der(csr_path)
    extra = issue_extra(social_insurance_number, dns_names, validity_days)
    with _open(ctx, _passphrase(passphrase_file, passphrase_stdin), ca_name) as authority:
        if is_ca_level(authority.profile(profile)):
            intent = IssueIntent.of(authority.name, profile, request, extra)
            try:
                approvers = check_approvals(
                    load_access(access_path(_home(ctx)), authority.profiles), intent,
                    [_read_file(a, "approval") for a in approvals])
            except ApprovalError as exc:
                _record_dual_control(ctx, intent, "denied", reason=str(exc)[:500])
                raise
            # who approved a CA-level certificate belongs in the tamper-evident log
            _record_dual_control(ctx, intent, "success", approvers=approvers)
            click.echo(f"dual control: approved by {', '.join(approvers)}")
        issued = authority.issue_from_csr(request, profile, extra)
    _write_file(out, der_to_pem(issued.der, "CERTIFICATE"))
    click.echo(f"issued serial={issued.serial_hex} profile={issued.profile} to {out}")


@group.command("revoke")
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason: keyCompromise, cACompromise, affiliationChanged, "
                   "superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, "
                   "aACompromise, unspecified.")
@click.option("--invalidity-date", default=None,
              help="When the key was (suspected) compromised, ISO 8601 (UTC if no zone).")
@_CA_OPTION
@_passphrase_options
@click.pass_context
@_ca_errors
def revoke(ctx: click.Context, serial: str, reason: str, invalidity_date: str | None,
           ca_name: str | None, passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Revoke the certificate SERIAL (hex, as `openssl x509 -serial` prints it)."""
    from ca.records import serial_from_hex, serial_to_hex

    try:
        number = serial_from_hex(serial)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SERIAL") from None
    when = _parse_time(invalidity_date, "--invalidity-date")
    with _open(ctx, _passphrase(passphrase_file, passphrase_stdin), ca_name) as authority:
        status = authority.revoke(number, reason, when)
    assert status.reason is not None and status.revocation_time is not None
    click.echo(f"revoked serial={serial_to_hex(number)} reason={status.reason.name} "
               f"at {status.revocation_time:%Y-%m-%dT%H:%M:%SZ}")


@group.command("crl")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the CRL.")
@click.option("--delta", is_flag=True, help="A delta CRL against the latest full CRL.")
@click.option("--der", "as_der", is_flag=True, help="Write DER instead of PEM.")
@_CA_OPTION
@_passphrase_options
@click.pass_context
@_ca_errors
def crl(ctx: click.Context, out: Path, delta: bool, as_der: bool, ca_name: str | None,
        passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Build, sign and record the next CRL (full, or --delta)."""
    from asn1crypto import crl as asn1crl

    from sscard.x509.pem import der_to_pem

    with _open(ctx, _passphrase(passphrase_file, passphrase_stdin), ca_name) as authority:
        der = authority.build_crl_der(delta=delta)
    _write_file(out, der if as_der else der_to_pem(der, "X509 CRL"))
    tbs = asn1crl.CertificateList.load(der)["tbs_cert_list"]
    number = next(e["extn_value"].native for e in tbs["crl_extensions"]
                  if e["extn_id"].native == "crl_number")
    entries = len(tbs["revoked_certificates"])
    click.echo(f"wrote {'delta ' if delta else ''}CRL number {number} with {entries} "
               f"entries to {out}")


@group.command("list")
@click.option("--limit", type=int, default=50, show_default=True,
              help="Most certificates to list.")
@_CA_OPTION
@format_option
@click.pass_context
@_ca_errors
def list_command(ctx: click.Context, limit: int, ca_name: str | None,
                 output_format: str) -> None:
    """List issued certificates, newest first."""
    with _open(ctx, None, ca_name) as authority:
        rows = authority.list_certificates(limit)
    if output_format == "json":
        echo_json([{"serial": f"{status.serial:X}", "status": status.status.value,
                    "profile": profile, "subject": subject} for status, profile, subject in rows])
        return
    for status, profile, subject in rows:
        click.echo(f"{status.serial:X}\t{status.status.value}\t{profile}\t{subject}")


@group.command("show")
@click.argument("serial")
@_CA_OPTION
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the certificate (PEM) to this file.")
@format_option
@click.pass_context
@_ca_errors
def show(ctx: click.Context, serial: str, ca_name: str | None, out: Path | None,
         output_format: str) -> None:
    """Show one certificate's status and PEM."""
    from ca.records import serial_from_hex, serial_to_hex
    from sscard.x509.pem import der_to_pem

    try:
        number = serial_from_hex(serial)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SERIAL") from None
    with _open(ctx, None, ca_name) as authority:
        status = authority.show(number)
    assert status.certificate_der is not None
    if out is not None:
        _write_file(out, der_to_pem(status.certificate_der, "CERTIFICATE"))
    if output_format == "json":
        echo_json({
            "serial": serial_to_hex(number), "status": status.status.value,
            "revocation_time": status.revocation_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            if status.revocation_time else None,
            "reason": status.reason.name if status.reason is not None else None,
            "invalidity_date": status.invalidity_date.strftime("%Y-%m-%dT%H:%M:%SZ")
            if status.invalidity_date else None,
            "certificate": der_to_pem(status.certificate_der, "CERTIFICATE").decode()})
        return
    click.echo(f"serial: {serial_to_hex(number)}")
    click.echo(f"status: {status.status.value}")
    if status.revocation_time is not None:
        assert status.reason is not None
        click.echo(f"revoked: {status.revocation_time:%Y-%m-%dT%H:%M:%SZ} "
                   f"reason={status.reason.name}")
    if status.invalidity_date is not None:
        click.echo(f"invalidity date: {status.invalidity_date:%Y-%m-%dT%H:%M:%SZ}")
    assert status.certificate_der is not None
    click.echo(der_to_pem(status.certificate_der, "CERTIFICATE").decode().rstrip())
