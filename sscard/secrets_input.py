"""Secrets in files and on the terminal: reading passphrases, PINs and tokens (from a file,
stdin or a prompt; never from argv by default), and writing what must stay private.

Every secret file goes through :func:`read_secret_file`, which refuses a regular file that
group or others may access (as OpenSSH does for private keys): a PIN or token that anyone on
the machine can read is no longer a secret, and accepting it hides the mistake."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

#: permission bits that let anyone but the owner read or change a secret file
LOOSE_BITS = 0o077


class SecretFileError(click.UsageError):
    """A secret file cannot be used: unreadable, or open to group or others."""


def read_secret_file(path: Path | str, what: str = "secret file") -> bytes:
    """The content of a secret file, refused if group or others have any access to it. The
    mode is checked on the opened file itself, so the file checked is the file read. Pipes and
    other non-regular files (``/dev/fd/N``, ``<(...)``) have no such mode to check."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and mode & LOOSE_BITS:
            raise SecretFileError(
                f"{what} {path} is open to group or others (mode {mode:04o}); a secret file "
                f"must be readable by its owner only: chmod 600 {path}")
        try:
            return handle.read()
        except OSError as exc:
            raise SecretFileError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_secret(
    *,
    file: Path | None = None,
    from_stdin: bool = False,
    prompt: str = "Passphrase",
    confirm: bool = False,
    env_var: str | None = None,
) -> bytes:
    """One secret, from the first source given: a file (first line; see
    :func:`read_secret_file`), stdin (first line), an environment variable the caller names,
    else an interactive prompt without echo."""
    if file is not None:
        raw = read_secret_file(file, f"{prompt.lower()} file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise click.UsageError(f"{prompt.lower()} file {file} is not UTF-8 text") from None
        secret = text.splitlines()[0] if text else ""
    elif from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    elif env_var:
        secret = os.environ.get(env_var, "")
        if not secret:
            raise click.UsageError(f"{env_var} is empty or unset")
    else:
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"{prompt.lower()} needed: give a file option or --*-stdin, or run interactively"
            )
        secret = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not secret:
        raise click.UsageError(f"{prompt.lower()} is empty")
    return secret.encode("utf-8")


def write_private_file(path: Path | str | os.PathLike[str], data: str | bytes) -> None:
    """Write a secret (a token, a signed approval) atomically to a file only the owner may
    read (mode 0600 from creation, never readable by others for an instant)."""
    import os

    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
