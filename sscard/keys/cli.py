"""``sscard key ...``: generate and list keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from sscard.cli import LazyGroup
from sscard.crypto.algorithms import KeyAlgorithm
from sscard.secrets_input import read_secret

if TYPE_CHECKING:
    from sscard.keys.software import SoftwareKey

ALGORITHMS = [a.value for a in KeyAlgorithm]


def passphrase_options(f: click.decorators.FC) -> click.decorators.FC:
    """--passphrase-file / --passphrase-stdin, shared by every command that opens a key."""
    f = click.option("--passphrase-stdin", is_flag=True,
                     help="Read the passphrase from the first line of stdin.")(f)
    f = click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Read the passphrase from the first line of a file.")(f)
    return f


def read_passphrase(passphrase_file: Path | None, passphrase_stdin: bool,
                    confirm: bool = False) -> bytes:
    return read_secret(file=passphrase_file, from_stdin=passphrase_stdin,
                       prompt="Key passphrase", confirm=confirm)


#: ``list`` reads keys of every kind (asn1crypto, the crypto stack): loaded when run
LAZY = {"list": ("sscard.keys.list_cli:list_keys",
                 "List software keys (encrypted PKCS#8 files) and the keys on a PKCS#11 token.")}


@click.group("key", cls=LazyGroup, lazy=LAZY)
def key_group() -> None:
    """Software keys (encrypted PKCS#8) and keys on PKCS#11 tokens."""


@key_group.command("generate")
@click.option("--algorithm", "-a", type=click.Choice(ALGORITHMS, case_sensitive=False),
              default="sm2", show_default=True, help="Key algorithm.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the encrypted PKCS#8 PEM.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@passphrase_options
def generate(algorithm: str, out: Path, force: bool, passphrase_file: Path | None,
             passphrase_stdin: bool) -> None:
    """Generate a key pair; write the private key as encrypted PKCS#8 (openssl pkey reads it)."""
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; use --force to overwrite")
    passphrase = read_passphrase(passphrase_file, passphrase_stdin, confirm=True)
    from sscard.keys.software import SoftwareKey

    key = SoftwareKey.generate(algorithm, label=str(out))
    key.store(out, passphrase)
    click.echo(f"{algorithm} key written to {out} (encrypted PKCS#8, mode 0600)")


@key_group.command("public")
@click.argument("key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the public key (PEM; default: standard output).")
@passphrase_options
def public(key_file: Path, out: Path | None, passphrase_file: Path | None,
           passphrase_stdin: bool) -> None:
    """Print (or write) the public key of an encrypted private key, as PEM."""
    key = open_software_key(key_file, passphrase_file, passphrase_stdin)
    pem = key.public_key().spki_pem()
    if out:
        out.write_bytes(pem)
    else:
        click.echo(pem.decode(), nl=False)


def open_software_key(path: Path, passphrase_file: Path | None,
                      passphrase_stdin: bool) -> SoftwareKey:
    """Open an encrypted key file, turning key errors into clear CLI errors."""
    from sscard.crypto.errors import CryptoError
    from sscard.keys.software import SoftwareKey

    passphrase = read_passphrase(passphrase_file, passphrase_stdin)
    try:
        return SoftwareKey.load(path, passphrase)
    except CryptoError as exc:
        raise click.ClickException(f"{path}: {exc}") from None

