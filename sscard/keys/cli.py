"""``sscard key ...``: generate and list keys."""

import click


@click.group("key")
def key_group() -> None:
    """Software keys (encrypted PKCS#8) and keys on PKCS#11 tokens."""
