"""``sscard card ...``: card-issuing tools."""

import click


@click.group("card")
def group() -> None:
    """Social security card: read, PIN, keys, certificates, emulation, personalisation."""
