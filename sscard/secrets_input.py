"""Reading passphrases and PINs: from a file, stdin or a prompt; never from argv by default."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def read_secret(
    *,
    file: Path | None = None,
    from_stdin: bool = False,
    prompt: str = "Passphrase",
    confirm: bool = False,
    env_var: str | None = None,
) -> bytes:
    """One secret, from the first source given: a file (first line), stdin (first line), an
    environment variable the caller names, else an interactive prompt without echo."""
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.UsageError(f"cannot read secret file {file}: {exc.strerror}") from None
        secret = text.splitlines()[0] if text else ""
    elif from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    elif env_var:
        import os

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


def write_private_file(path: Path, data: str | bytes) -> None:
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
