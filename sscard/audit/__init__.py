"""The tamper-evident audit log that the CA, RA, KMC and gateway write to.

Records are hash-chained (SM3 by default) and committed to by an RFC 9162 Merkle tree whose heads
are signed as checkpoints by an audit key. The API a service uses::

    from sscard.audit import AuditAction, AuditLog, AuditUnavailable

    audit = AuditLog(engine, signer=audit_key, certificate=audit_cert_der)
    with audit.operation(actor, AuditAction.CA_CERTIFICATE_REVOKE, f"serial:{serial:x}",
                         request_id) as op:
        revoke(serial)                # runs only once the 'attempt' record is committed
        op.set(reason="keyCompromise")

See docs/operations-audit.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_exports

if TYPE_CHECKING:
    from sscard.audit.actions import AuditAction
    from sscard.audit.checkpoint import Checkpoint, CheckpointBody
    from sscard.audit.errors import (
        AuditError,
        AuditLogUnusable,
        AuditOutcomeNotRecorded,
        AuditRecordRejected,
        AuditUnavailable,
        CheckpointError,
        ProofError,
        SecretInAuditRecord,
    )
    from sscard.audit.log import (
        AuditLog,
        InclusionProof,
        Operation,
        default_url,
        local_actor,
        make_engine,
    )
    from sscard.audit.records import AuditRecord, StoredRecord
    from sscard.audit.storage import metadata as audit_metadata
    from sscard.audit.verify import Finding, VerifyReport, verify_log

#: where each public name lives: the package resolves them on first use, so that importing one
#: light module of it (the errors, the actions, the command line) does not load SQLAlchemy and
#: the crypto stack (CLI start-up, issue 16 item 5)
_WHERE = {
    "AuditAction": "actions",
    "Checkpoint": "checkpoint",
    "CheckpointBody": "checkpoint",
    "AuditError": "errors",
    "AuditLogUnusable": "errors",
    "AuditOutcomeNotRecorded": "errors",
    "AuditRecordRejected": "errors",
    "AuditUnavailable": "errors",
    "CheckpointError": "errors",
    "ProofError": "errors",
    "SecretInAuditRecord": "errors",
    "AuditLog": "log",
    "InclusionProof": "log",
    "Operation": "log",
    "default_url": "log",
    "local_actor": "log",
    "make_engine": "log",
    "AuditRecord": "records",
    "StoredRecord": "records",
    "audit_metadata": "storage",
    "Finding": "verify",
    "VerifyReport": "verify",
    "verify_log": "verify",
}
#: the names exported under another name than their module's
_RENAMED = {"audit_metadata": "metadata"}


__all__ = [
    "AuditAction",
    "AuditError",
    "AuditLog",
    "AuditLogUnusable",
    "AuditOutcomeNotRecorded",
    "AuditRecord",
    "AuditRecordRejected",
    "AuditUnavailable",
    "Checkpoint",
    "CheckpointBody",
    "CheckpointError",
    "Finding",
    "InclusionProof",
    "Operation",
    "ProofError",
    "SecretInAuditRecord",
    "StoredRecord",
    "VerifyReport",
    "audit_metadata",
    "default_url",
    "local_actor",
    "make_engine",
    "verify_log",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals(), _RENAMED)
