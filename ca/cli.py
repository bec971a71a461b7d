"""``sscard ca ...``: the certificate authority."""

import click


@click.group("ca")
def group() -> None:
    """Certificate authority: hierarchy, issuance, revocation, CRL, OCSP, TSA."""
