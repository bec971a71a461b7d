"""``sscard key list``: software key files in a directory and the keys on a PKCS#11 token.

The command is ``list_keys``; the ``key`` group attaches it (``key_group.add_command(list_keys)``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from asn1crypto import keys as asn1keys

from sscard.cli import format_option
from sscard.crypto.asymmetric import PrivateKey
from sscard.crypto.errors import CryptoError, WrongPassphrase
from sscard.keys.base import DEFAULT_PKCS11_MODULE
from sscard.secrets_input import read_secret
from sscard.x509.pem import PemError, is_pem, pem_blocks

#: larger files are not key files; skip them rather than read them into memory
MAX_KEY_FILE = 256 * 1024


@dataclass(frozen=True)
class SoftwareKeyInfo:
    file: str
    algorithm: str  # "sm2", "rsa2048", ..., or "encrypted" when it cannot be read
    encrypted: bool
    note: str = ""


def _classify_der(der: bytes, encrypted_hint: bool | None,
                  passphrase: bytes | None) -> tuple[str, bool, str] | None:
    """(algorithm, encrypted, note) for PKCS#8 DER, or None when it is not a private key."""
    if encrypted_hint is not False:
        try:
            _ = asn1keys.EncryptedPrivateKeyInfo.load(der, strict=True).native  # parse it all
            is_encrypted = True
        except (ValueError, TypeError):
            is_encrypted = False
        if is_encrypted:
            if passphrase is None:
                return "encrypted", True, ""
            try:
                return PrivateKey.from_encrypted(der, passphrase).algorithm.value, True, ""
            except WrongPassphrase:
                return "encrypted", True, "passphrase does not open it"
            except CryptoError as exc:
                return "encrypted", True, f"unreadable: {exc}"
        if encrypted_hint:
            return "encrypted", True, "unreadable: malformed EncryptedPrivateKeyInfo"
    try:
        _ = asn1keys.PrivateKeyInfo.load(der, strict=True).native
    except (ValueError, TypeError):
        return None
    try:
        return PrivateKey.from_pkcs8(der).algorithm.value, False, "NOT ENCRYPTED"
    except CryptoError as exc:
        return "unknown", False, f"unreadable: {exc}"


def scan_software_keys(directory: Path, passphrase: bytes | None = None) -> list[SoftwareKeyInfo]:
    """PKCS#8 private key files (PEM or DER) directly in ``directory``, by file name."""
    if not directory.is_dir():
        raise click.ClickException(f"{directory} is not a directory")
    found: list[SoftwareKeyInfo] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.stat().st_size > MAX_KEY_FILE:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            found.append(SoftwareKeyInfo(path.name, "unknown", False,
                                         f"unreadable: {exc.strerror}"))
            continue
        result: tuple[str, bool, str] | None = None
        if is_pem(data):
            try:
                blocks = pem_blocks(data)
            except PemError:
                continue  # not ours to judge: some other PEM-looking file
            for kind, der in blocks:
                if kind == "ENCRYPTED PRIVATE KEY":
                    result = _classify_der(der, True, passphrase)
                elif kind == "PRIVATE KEY":
                    result = _classify_der(der, False, passphrase)
                if result is not None:
                    break
        else:
            result = _classify_der(data, None, passphrase)
        if result is not None:
            algorithm, encrypted, note = result
            found.append(SoftwareKeyInfo(path.name, algorithm, encrypted, note))
    return found


def _token_rows(infos: list[Any]) -> list[dict[str, object]]:
    return [
        {"class": k.object_class, "label": k.label, "id": k.key_id.hex(),
         "type": k.key_type + (f" ({k.curve})" if k.curve else ""),
         "size": k.size, "extractable": k.extractable}
        for k in infos
    ]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


@click.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of software keys (default: <home>/keys when no token is given).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also open encrypted keys with this passphrase to show their algorithm.")
@click.option("--pkcs11-module", type=click.Path(dir_okay=False),
              default=lambda: os.environ.get("SSCARD_PKCS11_MODULE", DEFAULT_PKCS11_MODULE),
              show_default="$SSCARD_PKCS11_MODULE or SoftHSM2",
              help="PKCS#11 module (shared library) of the token.")
@click.option("--token", "token_label", help="Label of the PKCS#11 token to list.")
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the token's user PIN from the first line of a file.")
@click.option("--pin-stdin", is_flag=True, help="Read the token's user PIN from stdin.")
@click.option("--no-login", is_flag=True,
              help="Do not log in to the token: list only its public objects.")
@format_option
@click.option("--json", "as_json", is_flag=True, hidden=True,
              help="Deprecated spelling of --format json.")
@click.pass_context
def list_keys(ctx: click.Context, directory: Path | None, passphrase_file: Path | None,
              pkcs11_module: str, token_label: str | None, pin_file: Path | None,
              pin_stdin: bool, no_login: bool, output_format: str, as_json: bool) -> None:
    """List software keys (encrypted PKCS#8 files) and the keys on a PKCS#11 token."""
    as_json = as_json or output_format == "json"
    if directory is None and token_label is None:
        home = getattr(ctx.obj, "home", None)
        directory = Path(home) / "keys" if home is not None else Path(".")
    out: dict[str, object] = {}
    text: list[str] = []
    if directory is not None:
        passphrase = (read_secret(file=passphrase_file, prompt="Key passphrase")
                      if passphrase_file else None)
        software = scan_software_keys(directory, passphrase)
        out["software"] = {"dir": str(directory),
                           "keys": [k.__dict__ for k in software]}
        text.append(f"software keys in {directory}:")
        if software:
            text.append(_table(["FILE", "ALGORITHM", "NOTE"],
                               [[k.file, k.algorithm, k.note] for k in software]))
        else:
            text.append("  (none)")
    if token_label is not None:
        if no_login and (pin_file or pin_stdin):
            raise click.UsageError("--no-login and a PIN option exclude each other")
        pin = None if no_login else read_secret(file=pin_file, from_stdin=pin_stdin,
                                                prompt="Token PIN")
        # python-pkcs11 (the [hsm] extra) only when a token is asked for
        from sscard.keys.pkcs11 import Pkcs11Token

        try:
            with Pkcs11Token(token_label, pin, pkcs11_module) as token:
                infos = token.list_keys()
        except CryptoError as exc:
            raise click.ClickException(str(exc)) from None
        rows = _token_rows(infos)
        out["token"] = {"label": token_label, "module": pkcs11_module, "keys": rows}
        text.append(f"keys on token {token_label!r} ({pkcs11_module}):")
        if rows:
            text.append(_table(
                ["CLASS", "LABEL", "ID", "TYPE", "SIZE"],
                [[str(r["class"]), str(r["label"]), str(r["id"]), str(r["type"]),
                  "" if r["size"] is None else str(r["size"])] for r in rows],
            ))
        else:
            text.append("  (none)")
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(text))
