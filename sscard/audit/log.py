"""``AuditLog``: append records, make signed checkpoints, prove inclusion and consistency.

One object per service process, over the service's SQLAlchemy engine (or its own database)::

    log = AuditLog(engine, signer=audit_key, certificate=audit_cert_der)
    with log.operation("officer:42", "cert.revoke", "serial:1f3a", request_id) as op:
        ...                      # runs only if the 'attempt' record was written
        op.set(reason="keyCompromise")

Appends from any number of processes are serialised by a lock on the head row (see
``storage``); checkpoints are made every ``checkpoint_every`` records, when ``checkpoint_interval``
seconds have passed (checked on append and by ``checkpoint_if_due()``), and on demand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import getpass
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sscard import sqlschema
from sscard.audit import merkle, storage
from sscard.audit.checkpoint import Checkpoint, CheckpointBody
from sscard.audit.errors import (
    AuditError,
    AuditLogUnusable,
    AuditOutcomeNotRecorded,
    AuditUnavailable,
    CheckpointError,
    ProofError,
)
from sscard.audit.records import (
    DEFAULT_HASH,
    AuditRecord,
    StoredRecord,
    check_hash_name,
    genesis_hash,
)
from sscard.audit.records import chain_hash as _chain_hash
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.groupcommit import GroupCommit, GroupCommitError
from sscard.keys.base import KeyHandle
from sscard.sqlschema import create_all_concurrently

logger = logging.getLogger("sscard.audit")

DB_FILENAME = "audit.sqlite"


def default_url(home: str | os.PathLike[str]) -> str:
    """The embedded default: an SQLite file in the data directory."""
    return f"sqlite:///{Path(home) / DB_FILENAME}"


def make_engine(url: str) -> Engine:
    """An engine for a log of its own: ``sscard.sqlschema.make_engine`` (WAL, so an auditor's
    verification does not block the services' appends; ``synchronous=FULL``, so that every
    committed record is on disk before the guarded operation goes ahead)."""
    return sqlschema.make_engine(url)


def local_actor() -> str:
    """Who a record names when a command runs on this machine without another identity: the
    operating-system user (``cli:alice``), as the CLI's records of ``ca issue`` and the like."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"cli:uid-{os.getuid()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(when: dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=64)
def parse_time(text: str) -> dt.datetime:
    # cached: every append compares the clock with the same last checkpoint time
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _why(exc: BaseException) -> str:
    """A one-line reason from a driver error, without the SQL and parameters SQLAlchemy adds."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _split_frontier(blob: bytes, size: int) -> list[bytes]:
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def row_to_record(row: Mapping[Any, Any]) -> AuditRecord:
    """Decode a stored row; raises ValueError when the stored details are not a JSON object."""
    details = json.loads(row["details"])
    if not isinstance(details, dict):
        raise ValueError("details are not a JSON object")
    return AuditRecord(time=row["time"], actor=row["actor"], action=row["action"],
                       object=row["object"], outcome=row["outcome"],
                       request_id=row["request_id"], details=details)


def checkpoint_from_row(row: Mapping[Any, Any]) -> Checkpoint:
    alg_name = row["signature_algorithm"]
    if alg_name not in SignatureAlgorithm.__members__:
        raise CheckpointError(f"checkpoint {row['idx']}: unknown signature algorithm {alg_name!r}")
    return Checkpoint(
        CheckpointBody.decode(bytes(row["body"])),
        bytes(row["signature"]),
        SignatureAlgorithm[alg_name],
        bytes(row["signer_spki"]),
        bytes(row["certificate"]) if row["certificate"] is not None else None,
    )


@dataclass(frozen=True)
class InclusionProof:
    """Proof that record ``seq`` (entry = its chain hash) is leaf ``seq - 1`` of a tree."""

    hash_name: str
    seq: int
    tree_size: int
    entry: bytes
    path: tuple[bytes, ...]

    def verify(self, root: bytes) -> bool:
        leaf = merkle.leaf_hash(self.hash_name, self.entry)
        return merkle.verify_inclusion(self.hash_name, self.seq - 1, self.tree_size, leaf,
                                       self.path, root)


@dataclass
class Operation:
    """What a guarded operation may say about its outcome (see ``AuditLog.operation``)."""

    attempt_seq: int
    outcome: str = "success"
    details: dict[str, Any] = field(default_factory=dict)

    def set(self, **details: Any) -> None:
        """Add details to the outcome record; a secret is refused here, inside the operation."""
        probe = AuditRecord.bounded("t", "a", "a", "", "info", "", {**self.details, **details})
        probe.check()
        self.details.update(details)

    def deny(self, reason: str) -> None:
        """The operation was refused by policy (not an error): records outcome 'denied'."""
        self.set(reason=reason)
        self.outcome = "denied"

    def fail(self, reason: str) -> None:
        """The operation failed without raising: records outcome 'failure'."""
        self.set(reason=reason)
        self.outcome = "failure"


class AuditLog:
    """The tamper-evident audit log over one SQLAlchemy engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: KeyHandle | None = None,
        certificate: bytes | None = None,
        hash_name: str | None = None,
        checkpoint_every: int | None = 1000,
        checkpoint_interval: float | None = None,
        clock: Callable[[], dt.datetime] = _now,
        create: bool = True,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.certificate = certificate
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._clock = clock
        #: when set (``enable_group_commit``), appends share transactions across threads
        self.committer: GroupCommit | None = None
        if certificate is not None and signer is not None:
            _check_certificate_fits(certificate, signer.public_key())
        try:
            head = self._open(hash_name, create)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit log cannot be opened: {_why(exc)}") from exc
        self.log_id: str = head["log_id"]
        self.hash_name: str = head["hash_name"]
        self._hash_size = len(genesis_hash(self.hash_name))

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> AuditLog:
        return cls(make_engine(url), **kwargs)

    @classmethod
    def at_home(cls, home: str | os.PathLike[str], **kwargs: Any) -> AuditLog:
        """The embedded default: the log in the data directory (created if need be)."""
        Path(home).mkdir(parents=True, exist_ok=True)
        return cls.open(default_url(home), **kwargs)

    # -- schema -------------------------------------------------------------------------------

    def _open(self, hash_name: str | None, create: bool) -> dict[str, Any]:
        wanted = check_hash_name(hash_name) if hash_name else None
        if create:
            create_all_concurrently(storage.metadata, self.engine)
        elif not inspect(self.engine).has_table(storage.head_table.name):
            raise AuditLogUnusable("the database holds no audit log (no audit_head table)")
        head = self._read_head()
        if head is None:
            if not create:
                raise AuditLogUnusable("the audit log has no head row")
            name = wanted or DEFAULT_HASH
            with contextlib.suppress(IntegrityError), self.engine.begin() as conn:
                conn.execute(insert(storage.head_table).values(
                    id=storage.HEAD_ID, log_id=uuid.uuid4().hex, hash_name=name, size=0,
                    last_hash=genesis_hash(name), frontier=b"", checkpoint_count=0,
                    checkpoint_size=0, checkpoint_digest=None, checkpoint_time=None))
            head = self._read_head()
            assert head is not None
        if head["hash_name"] not in ("sm3", "sha256"):
            raise AuditLogUnusable(f"audit log uses an unknown hash {head['hash_name']!r}")
        if wanted and wanted != head["hash_name"]:
            raise AuditLogUnusable(
                f"audit log was created with {head['hash_name']}, not {wanted}"
            )
        return head

    def _read_head(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(storage.head_table).where(storage.head_table.c.id == storage.HEAD_ID)
            ).mappings().one_or_none()
        return dict(row) if row is not None else None

    def head(self) -> dict[str, Any]:
        head = self._read_head()
        if head is None:
            raise AuditLogUnusable("the audit log has no head row")
        return head

    def size(self) -> int:
        return int(self.head()["size"])

    # -- writing ------------------------------------------------------------------------------

    def enable_group_commit(self, committer: GroupCommit | None = None) -> GroupCommit:
        """Write appends through a group commit (``sscard.groupcommit``): the records of
        concurrent threads share one transaction and one commit; each ``append`` still returns
        only once its record is committed. For a service with several request threads."""
        self.committer = committer or GroupCommit(self.engine, name="audit-group-commit")
        return self.committer

    def record(
        self,
        actor: str,
        action: str,
        obj: str,
        outcome: str,
        request_id: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """A record ready to append (time not yet set): text longer than the limits cut with a
        mark, control characters and lone surrogates escaped. Raises ``AuditRecordRejected``
        for a secret or a programming error (a non-string actor, a float in the details)."""
        # names, paths and request ids come from outside: bounded and escaped, never refused;
        # an AuditAction is stored as its plain value
        record = AuditRecord.bounded("", actor, str(action), obj, outcome, request_id,
                                     dict(details or {}))
        record.check()
        return record

    def append(
        self,
        actor: str,
        action: str,
        obj: str,
        outcome: str,
        request_id: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> StoredRecord:
        """Write one record (see ``record``). Raises ``AuditRecordRejected`` for a secret or a
        programming error, ``AuditUnavailable`` when the database will not take it (nothing is
        written then)."""
        record = self.record(actor, action, obj, outcome, request_id, details)
        try:
            if self.committer is not None:
                stored, due = self.committer.run(lambda conn: self.append_in(conn, [record]))
            else:
                with storage.locked_head(self.engine) as (conn, head):
                    stored, due = self._write(conn, head, [record])
        except (SQLAlchemyError, LookupError, OSError, GroupCommitError) as exc:
            raise AuditUnavailable(f"audit record could not be written: {_why(exc)}") from exc
        self.after_commit(due)
        return stored[0]

    def append_in(self, conn: Connection, records: Sequence[AuditRecord], *,
                  link_outcome: bool = False,
                  one_attempt: bool = False) -> tuple[list[StoredRecord], bool]:
        """Append ``records`` (from ``record``) in the caller's write transaction on this log's
        database, which must already hold the write lock (``sscard.sqlschema.WRITE``: BEGIN
        IMMEDIATE on SQLite; the head row is read FOR UPDATE elsewhere), so that they commit or
        roll back with the caller's own rows: no second transaction, no second lock.
        ``link_outcome``: the records are pairs of an attempt and its outcome (one pair, or
        one per item), and each outcome names its attempt's sequence number
        (``attempt_seq``), as ``operation`` writes them. ``one_attempt``: the first record is
        the attempt, every other one an outcome naming it (a batch recorded as one attempt
        and the outcome records that list its items).
        Returns the stored records and whether a checkpoint is due (``after_commit``)."""
        head = storage.READ_HEAD_FOR_UPDATE.first(conn)
        if head is None:
            raise LookupError("audit_head row is missing")
        return self._write(conn, head, records, link_outcome=link_outcome,
                           one_attempt=one_attempt)

    def after_commit(self, checkpoint_due: bool) -> None:
        """Once the records are committed: the checkpoint they made due, if any."""
        if not checkpoint_due:
            return
        try:
            self._checkpoint(force=False)
        except (AuditError, SQLAlchemyError, OSError, ValueError) as exc:
            # The records are safely in; the checkpoint is only late. Say so, loudly.
            logger.warning("audit checkpoint after an append failed: %s", exc)

    def _write(self, conn: Connection, head: Mapping[str, Any], records: Sequence[AuditRecord],
               *, link_outcome: bool = False, one_attempt: bool = False
               ) -> tuple[list[StoredRecord], bool]:
        size = int(head["size"])
        prev = bytes(head["last_hash"])
        frontier = _split_frontier(bytes(head["frontier"]), self._hash_size)
        # the time is taken under the lock so that record times never go backwards
        when = format_time(self._clock())
        stored: list[StoredRecord] = []
        rows = []
        for i, record in enumerate(records):
            attempt = i - 1 if link_outcome and i % 2 == 1 else 0 if one_attempt and i else None
            if attempt is not None:
                record = dataclasses.replace(
                    record, details={**record.details, "attempt_seq": stored[attempt].seq})
            record = record.at(when)
            seq = size + 1 + i
            h = _chain_hash(self.hash_name, prev, record.canonical_encoding())
            rows.append({
                "seq": seq, "time": record.time, "actor": record.actor,
                "action": record.action, "object": record.object,
                "outcome": record.outcome, "request_id": record.request_id,
                "details": record.details_json(), "prev_hash": prev, "hash": h})
            frontier = merkle.frontier_append(self.hash_name, frontier, seq - 1,
                                              merkle.leaf_hash(self.hash_name, h))
            stored.append(StoredRecord(seq, record, prev, h))
            prev = h
        storage.INSERT_RECORD(conn, rows)
        new_size = size + len(records)
        storage.ADVANCE_HEAD(conn, {"new_size": new_size, "new_last_hash": prev,
                                    "new_frontier": b"".join(frontier)})
        return stored, self._checkpoint_due(head, new_size)

    @contextlib.contextmanager
    def operation(
        self,
        actor: str,
        action: str,
        obj: str,
        request_id: str = "",
        details: Mapping[str, Any] | None = None,
        refusals: tuple[type[BaseException], ...] = (),
    ) -> Iterator[Operation]:
        """Guard a security operation: no audit record, no operation.

        Writes an 'attempt' record first; if that fails, raises ``AuditUnavailable`` and the
        body never runs. After the body, writes the outcome ('success', or what the body set
        with ``op.deny()``/``op.fail()``; if it raised, 'denied' with the message for one of
        ``refusals`` (the request was refused, as by policy), else 'failure' with the exception
        type), linked by ``attempt_seq``. If the outcome cannot be written after a successful
        body, raises ``AuditOutcomeNotRecorded``: the operation happened, the log shows its
        attempt.
        """
        attempt = self.append(actor, action, obj, "attempt", request_id, details)
        op = Operation(attempt.seq)
        try:
            yield op
        except BaseException as exc:
            refused = bool(refusals) and isinstance(exc, refusals)
            why = {"reason": str(exc)[:500]} if refused else {"error": type(exc).__name__}
            failure = {**op.details, "attempt_seq": attempt.seq, **why}
            try:
                self.append(actor, action, obj, "denied" if refused else "failure",
                            request_id, failure)
            except AuditError as audit_exc:
                logger.error("audit outcome of record %d not written: %s", attempt.seq, audit_exc)
            raise
        try:
            self.append(actor, action, obj, op.outcome, request_id,
                        {**op.details, "attempt_seq": attempt.seq})
        except AuditError as exc:
            raise AuditOutcomeNotRecorded(
                f"{action} on {obj} ran (attempt is record {attempt.seq}) but its outcome "
                f"could not be written: {exc}"
            ) from exc

    # -- checkpoints --------------------------------------------------------------------------

    def _checkpoint_due(self, head: Mapping[str, Any], size: int) -> bool:
        if self.signer is None or size <= int(head["checkpoint_size"]):
            return False
        if self.checkpoint_every and size - int(head["checkpoint_size"]) >= self.checkpoint_every:
            return True
        if self.checkpoint_interval is not None:
            last = head["checkpoint_time"]
            if last is None:
                return True
            elapsed = (self._clock() - parse_time(last)).total_seconds()
            return elapsed >= self.checkpoint_interval
        return False

    def checkpoint(self) -> Checkpoint:
        """Make a signed checkpoint of the whole log now."""
        cp = self._checkpoint(force=True)
        assert cp is not None
        return cp

    def checkpoint_if_due(self) -> Checkpoint | None:
        """For a service's timer: a checkpoint if ``checkpoint_interval`` or ``_every`` says so."""
        return self._checkpoint(force=False)

    def _checkpoint(self, force: bool) -> Checkpoint | None:
        signer = self.signer
        if signer is None:
            raise CheckpointError("no audit signing key is configured for checkpoints")
        try:
            with storage.locked_head(self.engine) as (conn, head):
                size = int(head["size"])
                if not force and not self._checkpoint_due(head, size):
                    return None  # another process made it meanwhile
                frontier = _split_frontier(bytes(head["frontier"]), self._hash_size)
                prev = head["checkpoint_digest"]
                body = CheckpointBody(
                    log_id=self.log_id, hash_name=self.hash_name,
                    index=int(head["checkpoint_count"]) + 1, tree_size=size,
                    root=merkle.frontier_root(self.hash_name, frontier),
                    time=format_time(self._clock()),
                    prev=bytes(prev) if prev is not None else None)
                cp = Checkpoint.sign(body, signer, self.certificate)
                conn.execute(insert(storage.checkpoint_table).values(
                    idx=body.index, tree_size=size, body=body.encode(), signature=cp.signature,
                    signature_algorithm=cp.signature_algorithm.name, signer_spki=cp.signer_spki,
                    certificate=cp.certificate))
                conn.execute(update(storage.head_table)
                             .where(storage.head_table.c.id == storage.HEAD_ID)
                             .values(checkpoint_count=body.index, checkpoint_size=size,
                                     checkpoint_digest=body.digest(), checkpoint_time=body.time))
        except (SQLAlchemyError, LookupError) as exc:
            raise AuditUnavailable(f"checkpoint could not be written: {_why(exc)}") from exc
        return cp

    def checkpoints(self) -> list[Checkpoint]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(storage.checkpoint_table).order_by(storage.checkpoint_table.c.idx)
            ).mappings().all()
        return [checkpoint_from_row(r) for r in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(storage.checkpoint_table)
                .order_by(storage.checkpoint_table.c.idx.desc()).limit(1)
            ).mappings().one_or_none()
        return checkpoint_from_row(row) if row is not None else None

    # -- reading and proofs -------------------------------------------------------------------

    def records(self, start: int = 1, end: int | None = None, *,
                actions: Sequence[str] = (), actor: str | None = None, obj: str | None = None,
                outcome: str | None = None) -> Iterator[StoredRecord]:
        """Stored records ``start..end`` (inclusive), in sequence order; only those whose
        action is one of ``actions`` or under one (``ca.certificate`` takes
        ``ca.certificate.issue``), by ``actor``, about ``obj``, with ``outcome``, when given
        (the database does the filtering)."""
        t = storage.record_table
        query = select(t).where(t.c.seq >= start).order_by(t.c.seq)
        if end is not None:
            query = query.where(t.c.seq <= end)
        if actions:
            query = query.where(or_(*(
                or_(t.c.action == a, t.c.action.startswith(a.rstrip(".") + ".", autoescape=True))
                for a in actions)))
        for column, value in ((t.c.actor, actor), (t.c.object, obj), (t.c.outcome, outcome)):
            if value is not None:
                query = query.where(column == value)
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                yield StoredRecord(int(row["seq"]), row_to_record(row), bytes(row["prev_hash"]),
                                   bytes(row["hash"]))

    def get(self, seq: int) -> StoredRecord:
        for rec in self.records(seq, seq):
            return rec
        raise ProofError(f"there is no record {seq} (the log has {self.size()})")

    def leaf_hashes(self, tree_size: int) -> list[bytes]:
        t = storage.record_table
        with self.engine.connect() as conn:
            hashes = conn.execute(
                select(t.c.hash).where(t.c.seq <= tree_size).order_by(t.c.seq)
            ).scalars().all()
        if len(hashes) != tree_size:
            raise ProofError(f"the log holds {len(hashes)} of the {tree_size} records asked for")
        return [merkle.leaf_hash(self.hash_name, bytes(h)) for h in hashes]

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Proof that record ``seq`` is in the tree of ``tree_size`` records (default: the
        latest checkpoint's size, else the whole log)."""
        if tree_size is None:
            latest = self.latest_checkpoint()
            tree_size = latest.tree_size if latest and latest.tree_size >= seq else self.size()
        if not 1 <= seq <= tree_size:
            raise ProofError(f"record {seq} is not in a tree of {tree_size} records")
        leaves = self.leaf_hashes(tree_size)
        path = merkle.inclusion_proof(self.hash_name, seq - 1, leaves)
        return InclusionProof(self.hash_name, seq, tree_size, self.get(seq).hash, tuple(path))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} must be between 0 and new size {new_size}")
        return merkle.consistency_proof(self.hash_name, old_size, self.leaf_hashes(new_size))

    def root(self, tree_size: int | None = None) -> bytes:
        if tree_size is None:
            head = self.head()
            return merkle.frontier_root(
                self.hash_name, _split_frontier(bytes(head["frontier"]), self._hash_size))
        return merkle.root(self.hash_name, self.leaf_hashes(tree_size))


def _check_certificate_fits(certificate: bytes, key: PublicKey) -> None:
    from sscard.x509.parse import load_certificate

    cert = load_certificate(certificate)
    cert_key = PublicKey.from_spki(cert["tbs_certificate"]["subject_public_key_info"].dump())
    if cert_key != key:
        raise ValueError("the audit certificate does not certify the audit signing key")
