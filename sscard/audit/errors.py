"""What can go wrong with the audit log, from the caller's point of view."""

from __future__ import annotations


class AuditError(Exception):
    """Base of every audit-log error."""


class AuditRecordRejected(AuditError, ValueError):
    """A record did not pass the schema check (missing field, bad type, a secret in it)."""


class SecretInAuditRecord(AuditRecordRejected):
    """A record carries something that looks like a secret (a PIN, a passphrase, a private key).

    The audit log is kept for years and read by auditors: a secret written there is leaked.
    The message names the field, never the value.
    """


class AuditUnavailable(AuditError):
    """The audit record could not be written, so the security operation must not happen."""


class AuditOutcomeNotRecorded(AuditError):
    """The operation ran (its 'attempt' record is in the log) but its outcome could not be
    written afterwards. The caller must treat the operation as done, not as failed."""


class ProofError(AuditError, ValueError):
    """A Merkle inclusion or consistency proof was asked for sizes or indices that do not exist."""


class CheckpointError(AuditError, ValueError):
    """A checkpoint could not be made, parsed or verified."""


class AuditLogUnusable(AuditError):
    """The log cannot be read at all (no such database, not an audit log, unknown hash)."""
