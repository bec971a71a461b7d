"""Errors of backup and restore; each message names what was wrong."""

from __future__ import annotations


class BackupError(Exception):
    """A backup could not be made, read or restored."""


class BackupFormatError(BackupError):
    """The file is not an sscard backup, or its framing is broken (truncated, unknown version)."""


class BackupIntegrityError(BackupError):
    """The backup was altered: a chunk, the header or a member does not authenticate."""


class WrongBackupPassphrase(BackupError):
    """The passphrase does not open this backup."""


class RestoreTargetError(BackupError):
    """The restore target is unusable (not empty, not writable, a database not mapped)."""
