"""``sscard kmc ...``: the key management centre."""

import click


@click.group("kmc")
def group() -> None:
    """Key management centre: ceremony, escrow, recovery, card master keys."""
