"""``sscard ra ...``: the registration authority."""

import click


@click.group("ra")
def group() -> None:
    """Registration authority: cardholders, requests, officers, approvals."""
