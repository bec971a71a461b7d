"""``sscard csr ...`` and ``sscard x509 ...``."""

import click


@click.group("csr")
def csr_group() -> None:
    """PKCS#10 certificate requests."""


@click.group("x509")
def x509_group() -> None:
    """Show and verify certificates, CSRs and CRLs."""
