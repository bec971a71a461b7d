"""``sscard csr ...`` and ``sscard x509 ...``."""

from __future__ import annotations

from pathlib import Path

import click

from sscard.cli import LazyGroup, echo_json, format_option
from sscard.keys.cli import open_software_key, passphrase_options


@click.group("csr")
def csr_group() -> None:
    """PKCS#10 certificate requests."""


@csr_group.command("create")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The key to sign the request with (encrypted PKCS#8).")
@click.option("--subject", required=True,
              help='e.g. "CN=张三,serialNumber=350102199001011234,O=...,C=CN"')
@click.option("--san-dns", multiple=True, help="subjectAltName DNS name (repeatable).")
@click.option("--san-email", multiple=True, help="subjectAltName e-mail (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the request (PEM unless --der).")
@click.option("--der", is_flag=True, help="Write DER instead of PEM.")
@passphrase_options
def create(key_file: Path, subject: str, san_dns: tuple[str, ...], san_email: tuple[str, ...],
           out: Path, der: bool, passphrase_file: Path | None, passphrase_stdin: bool) -> None:
    """Create a PKCS#10 request signed with KEY (SM2 with the default ID 1234567812345678)."""
    from sscard.x509.builder import CsrBuilder
    from sscard.x509.errors import X509Error
    from sscard.x509.names import parse_name
    from sscard.x509.pem import der_to_pem

    try:
        name = parse_name(subject)
    except X509Error as exc:
        raise click.BadParameter(str(exc), param_hint="--subject") from None
    key = open_software_key(key_file, passphrase_file, passphrase_stdin)
    builder = CsrBuilder().subject(name)
    sans = [{"dns_name": d} for d in san_dns] + [{"rfc822_name": e} for e in san_email]
    if sans:
        builder = builder.add_extension("subject_alt_name", sans)
    request = builder.sign(key).dump()
    out.write_bytes(request if der else der_to_pem(request, "CERTIFICATE REQUEST"))
    click.echo(f"certificate request written to {out}")


#: path validation (pyhanko-certvalidator, the revocation fetchers) is loaded when run
LAZY = {"verify": ("sscard.validation.cli:verify",
                   "Validate the certificate in LEAF up to a trust anchor (RFC 5280 §6).")}


@click.group("x509", cls=LazyGroup, lazy=LAZY)
def x509_group() -> None:
    """Show and verify certificates, CSRs and CRLs."""


@x509_group.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@format_option
def show(file: Path, output_format: str) -> None:
    """Print a certificate, CSR or CRL (PEM or DER) in readable form."""
    from sscard.x509.errors import X509Error
    from sscard.x509.parse import load_any
    from sscard.x509.show import as_dict, describe

    try:
        obj = load_any(file.read_bytes())
    except X509Error as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    if output_format == "json":
        echo_json(as_dict(obj))
    else:
        click.echo(describe(obj))
