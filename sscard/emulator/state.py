"""Persistent state of an emulated card or PSAM: a JSON file replaced atomically.

A real card's EEPROM either holds the old or the new value after a power cut (cards use
anti-tearing buffers). The emulator gets the same guarantee from the file system: write a
temporary file beside the state file, fsync it, ``os.replace`` it over the old one, fsync the
directory. A checksum inside the file catches anything else (a hand-edited or damaged file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sscard.crypto.hashes import sm3


class StateFileError(Exception):
    """The state file is missing, unreadable or damaged."""


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return sm3(canonical).hex()


def write_atomic(path: Path, body: dict[str, Any]) -> None:
    """Replace ``path`` with ``body`` (plus checksum) so that a reader, or a crash at any
    instant, sees either the previous content or the new one."""
    document = dict(body, checksum=_checksum(body))
    data = json.dumps(document, sort_keys=True, indent=1).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checked(path: Path, expected_format: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StateFileError(f"state file {path} does not exist") from None
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateFileError(f"state file {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise StateFileError(f"state file {path} does not hold a JSON object")
    checksum = document.pop("checksum", None)
    if document.get("format") != expected_format:
        raise StateFileError(
            f"state file {path} has format {document.get('format')!r}, expected {expected_format!r}"
        )
    if checksum != _checksum(document):
        raise StateFileError(f"state file {path} is damaged (checksum mismatch)")
    return document
