"""Verifying an audit log from its database alone (plus, optionally, trusted anchors).

``verify_log`` recomputes the hash chain and the Merkle tree from the stored rows, checks every
checkpoint (signature, chain of checkpoints, root against the records, consistency with the one
before) and compares with an external copy of a checkpoint when one is given. It does not stop
at the first problem: it reports each finding with the record it concerns, classified as

- ``modified``: a record's content no longer matches its hash;
- ``deleted``: a record is missing (a gap in the numbers, or a record whose predecessor is gone);
- ``inserted``: a record that is not part of the chain (the records around it chain directly);
- ``reordered``: records present and intact but stored in another order than they were chained;
- ``truncated``: records after the end of the table that a checkpoint covers;
- ``checkpoint``: a checkpoint whose signature, chaining, root or consistency fails.

Each stored record keeps the hash of its predecessor besides its own, so the verifier can tell
these cases apart; the chain itself (``h_i = H(h_{i-1} || record_i)``) and the signed tree heads
are what make the log tamper-evident. Records appended after the last checkpoint are only as
trustworthy as the database until the next checkpoint covers them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from sscard.audit import merkle, storage
from sscard.audit.checkpoint import Checkpoint
from sscard.audit.errors import AuditLogUnusable, AuditRecordRejected, CheckpointError
from sscard.audit.log import checkpoint_from_row, row_to_record
from sscard.audit.records import chain_hash, genesis_hash
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError

#: findings the chain analysis lists before it stops (each may cost a pass over the log)
MAX_CHAIN_FINDINGS = 1000


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    hash_name: str = ""
    log_id: str = ""
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    def add(self, kind: str, message: str, seq: int | None = None) -> None:
        self.findings.append(Finding(kind, message, seq))

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}


@dataclass
class _Row:
    """What the chain analysis needs of a stored record (kept small: logs get long)."""

    seq: int
    prev: bytes
    hash: bytes
    intact: bool  # H(prev || encoding) == hash
    problem: str = ""  # set when the stored fields cannot be decoded into a record


def _load_rows(engine: Engine, hash_name: str) -> list[_Row]:
    rows: list[_Row] = []
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(
            select(storage.record_table).order_by(storage.record_table.c.seq)
        ).mappings()
        for r in result:
            row = _Row(int(r["seq"]), bytes(r["prev_hash"]), bytes(r["hash"]), False)
            try:
                encoding = row_to_record(r).canonical_encoding()
                row.intact = chain_hash(hash_name, row.prev, encoding) == row.hash
            except (ValueError, TypeError, AuditRecordRejected) as exc:
                row.problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rows.append(row)
    return rows


def _load_checkpoints(engine: Engine, report: VerifyReport) -> list[Checkpoint]:
    cps: list[Checkpoint] = []
    with engine.connect() as conn:
        result = conn.execute(
            select(storage.checkpoint_table).order_by(storage.checkpoint_table.c.idx)
        ).mappings()
        for r in result:
            try:
                cp = checkpoint_from_row(r)
            except CheckpointError as exc:
                report.add("checkpoint", f"checkpoint {r['idx']} cannot be read: {exc}")
                continue
            if cp.index != int(r["idx"]) or cp.tree_size != int(r["tree_size"]):
                report.add("checkpoint", f"checkpoint {r['idx']}: its row does not match its "
                                         "signed body (index or tree size edited)")
            cps.append(cp)
    return cps


def _check_chain(rows: Sequence[_Row], hash_name: str, report: VerifyReport) -> None:
    genesis = genesis_hash(hash_name)
    position_of = {row.hash: i for i, row in enumerate(rows)}
    self_ok = [row.intact for row in rows]
    expected_prev = genesis
    skip_next = False
    for j, row in enumerate(rows):
        if skip_next:
            skip_next = False
            continue
        if len(report.findings) >= MAX_CHAIN_FINDINGS:
            # a log mangled wholesale: enough has been said, and the analysis of each further
            # anomaly could cost a pass over the whole log
            report.add("modified", f"more anomalies from record {row.seq} on are not listed",
                       row.seq)
            return
        linked = row.prev == expected_prev
        if self_ok[j] and linked:
            expected_prev = row.hash
            continue
        before = rows[j - 1].seq if j else None
        nxt = rows[j + 1] if j + 1 < len(rows) else None
        # Swapped: this row follows the next one, which follows the row before them both.
        if (nxt is not None and self_ok[j] and row.prev == nxt.hash
                and nxt.prev == expected_prev):
            report.add("reordered", f"records {row.seq} and {nxt.seq} are swapped: record "
                       f"{nxt.seq} was written before record {row.seq}", row.seq)
            skip_next = True
            expected_prev = row.hash
            continue
        # Inserted: leaving this row out, the next row chains to the one before it.
        if nxt is not None and nxt.prev == expected_prev and row.hash != nxt.prev:
            report.add("inserted", f"record {row.seq} is not part of the chain: record "
                       f"{nxt.seq} chains directly to "
                       f"{'the start' if before is None else f'record {before}'}", row.seq)
            continue
        if row.problem:
            report.add("modified", f"record {row.seq} cannot be decoded ({row.problem})", row.seq)
            expected_prev = row.hash
            continue
        if not self_ok[j]:
            what = "content" if linked else "content or stored previous hash"
            report.add("modified", f"record {row.seq}: its {what} does not match its hash "
                       "(edited after it was written)", row.seq)
            expected_prev = row.hash
            continue
        # Intact on its own, but it does not follow the row stored before it.
        i = position_of.get(row.prev)
        if (i is not None and i < j - 1 and _only_followed_by_each_other(rows, i + 1, j)
                and not any(rows[k].prev == row.hash for k in range(i + 1, j))):
            # Rows i+1..j-1 hang off record i but nothing outside them follows them: they were
            # inserted (chained correctly to record i, and renumbered around).
            for k in range(i + 1, j):
                report.add("inserted", f"record {rows[k].seq} is not part of the chain: record "
                           f"{row.seq} chains directly to record {rows[i].seq}", rows[k].seq)
        elif i is not None:
            report.add("reordered", f"record {row.seq} is out of order: it was written right "
                       f"after record {rows[i].seq}", row.seq)
        elif row.prev == genesis:
            report.add("reordered", f"record {row.seq} is out of order: it was written as the "
                       "first record", row.seq)
        else:
            first_missing = (before + 1) if before is not None else 1
            if row.seq > first_missing:
                span = (f"record {first_missing}" if row.seq - 1 == first_missing
                        else f"records {first_missing}..{row.seq - 1}")
                report.add("deleted", f"{span} deleted: record {row.seq} chains to a record "
                           "that is no longer stored", first_missing)
            else:
                report.add("deleted", f"a record before record {row.seq} was deleted and the "
                           "ones after it renumbered (or record "
                           f"{before} was rewritten with a recomputed hash)", row.seq)
        expected_prev = row.hash


def _only_followed_by_each_other(rows: Sequence[_Row], lo: int, hi: int) -> bool:
    inside = {rows[k].hash for k in range(lo, hi)}
    return not any(r.prev in inside for k, r in enumerate(rows) if not lo <= k < hi)


def _trusted_key(cp: Checkpoint, anchor: PublicKey | None,
                 report: VerifyReport) -> PublicKey | None:
    if anchor is not None:
        return anchor
    try:
        if cp.certificate is not None:
            from sscard.x509.parse import load_certificate

            cert = load_certificate(cp.certificate)
            return PublicKey.from_spki(cert["tbs_certificate"]["subject_public_key_info"].dump())
        return PublicKey.from_spki(cp.signer_spki)
    except (CryptoError, ValueError) as exc:
        report.add("checkpoint", f"checkpoint {cp.index}: its signer key cannot be read: {exc}")
        return None


def _check_checkpoints(cps: Sequence[Checkpoint], leaves: Sequence[bytes], last_seq: int,
                       hash_name: str, log_id: str, anchor: PublicKey | None,
                       report: VerifyReport) -> None:
    n = len(leaves)
    # roots of every prefix the checkpoints name, in one pass over the leaves
    wanted = sorted({cp.tree_size for cp in cps if cp.tree_size <= n})
    roots: dict[int, bytes] = {0: merkle.empty_root(hash_name)} if 0 in wanted else {}
    frontier: list[bytes] = []
    k = 0
    for size in wanted:
        while k < size:
            frontier = merkle.frontier_append(hash_name, frontier, k, leaves[k])
            k += 1
        roots[size] = merkle.frontier_root(hash_name, frontier)

    previous: Checkpoint | None = None
    last_good_size = 0
    for cp in cps:
        body = cp.body
        where = f"checkpoint {cp.index} (size {cp.tree_size}, {body.time})"
        key = _trusted_key(cp, anchor, report)
        if key is not None and not cp.verify(key):
            report.add("checkpoint", f"{where}: signature does not verify"
                       + (" with the audit certificate" if anchor is not None else ""))
        if body.log_id != log_id or body.hash_name != hash_name:
            report.add("checkpoint", f"{where}: belongs to another log ({body.log_id}) "
                       f"or hash ({body.hash_name})")
        expected_index = previous.index + 1 if previous else 1
        expected_prev = previous.body.digest() if previous else None
        if cp.index != expected_index:
            report.add("checkpoint", f"{where}: expected checkpoint {expected_index} here "
                       "(a checkpoint was removed or reordered)")
        elif body.prev != expected_prev:
            report.add("checkpoint", f"{where}: does not chain to the checkpoint before it")
        if previous is not None and cp.tree_size < previous.tree_size:
            report.add("checkpoint", f"{where}: the tree shrank from {previous.tree_size}")
        if cp.tree_size > n:
            pass  # records are missing: reported as deleted, or once as truncation below
        elif roots[cp.tree_size] != cp.root:
            first = last_good_size + 1
            report.add("checkpoint", f"{where}: its signed root does not match records 1.."
                       f"{cp.tree_size}; the difference lies in records "
                       f"{first}..{cp.tree_size}", first)
        else:
            last_good_size = max(last_good_size, cp.tree_size)
            if previous is not None and previous.tree_size <= cp.tree_size:
                proof = merkle.consistency_proof(hash_name, previous.tree_size,
                                                 leaves[:cp.tree_size])
                if not merkle.verify_consistency(hash_name, previous.tree_size, cp.tree_size,
                                                 proof, previous.root, cp.root):
                    report.add("checkpoint", f"{where}: not consistent with checkpoint "
                               f"{previous.index} (the earlier tree is not a prefix)")
        previous = cp
    largest = max((cp for cp in cps), key=lambda c: c.tree_size, default=None)
    if largest is not None and largest.tree_size > last_seq:
        report.add("truncated", f"the log ends at record {last_seq} but checkpoint "
                   f"{largest.index} covers {largest.tree_size} records: records "
                   f"{last_seq + 1}..{largest.tree_size} were removed from the tail",
                   last_seq + 1)


def _check_external(external: Checkpoint, leaves: Sequence[bytes], last_seq: int,
                    hash_name: str, log_id: str, anchor: PublicKey | None,
                    report: VerifyReport) -> None:
    n = len(leaves)
    where = f"external checkpoint {external.index} (size {external.tree_size})"
    key = _trusted_key(external, anchor, report)
    if key is not None and not external.verify(key):
        report.add("checkpoint", f"{where}: signature does not verify")
        return
    if external.body.log_id != log_id:
        report.add("checkpoint", f"{where}: is from another log ({external.body.log_id})")
        return
    if external.tree_size > last_seq:
        report.add("truncated", f"the log ends at record {last_seq} but the {where} covers "
                   f"{external.tree_size} records: records {last_seq + 1}.."
                   f"{external.tree_size} were removed from the tail", last_seq + 1)
    elif external.tree_size > n:
        report.add("checkpoint", f"{where}: records it covers are missing")
    elif merkle.root(hash_name, leaves[:external.tree_size]) != external.root:
        report.add("checkpoint", f"{where}: its root does not match records "
                   f"1..{external.tree_size}")


def _note_open_attempts(engine: Engine, report: VerifyReport) -> None:
    t = storage.record_table
    with engine.connect() as conn:
        attempts = set(conn.execute(select(t.c.seq).where(t.c.outcome == "attempt")).scalars())
        closed: set[int] = set()
        for text in conn.execute(select(t.c.details).where(t.c.outcome != "attempt")).scalars():
            try:
                seq = json.loads(text).get("attempt_seq")
            except (ValueError, AttributeError):
                continue
            if isinstance(seq, int):
                closed.add(seq)
    open_ = sorted(attempts - closed)
    if open_:
        shown = ", ".join(str(s) for s in open_[:10]) + (" ..." if len(open_) > 10 else "")
        report.notes.append(f"{len(open_)} attempt(s) without an outcome record: {shown}")


def verify_log(
    engine: Engine,
    *,
    public_key: PublicKey | None = None,
    external_checkpoint: Checkpoint | None = None,
) -> VerifyReport:
    """Check the whole log; ``public_key`` (from the audit certificate) is the trust anchor for
    checkpoint signatures. Raises ``AuditLogUnusable`` when there is no log to verify."""
    report = VerifyReport()
    try:
        if not inspect(engine).has_table(storage.head_table.name):
            raise AuditLogUnusable("the database holds no audit log (no audit_head table)")
        with engine.connect() as conn:
            head: Mapping[Any, Any] | None = conn.execute(
                select(storage.head_table).where(storage.head_table.c.id == storage.HEAD_ID)
            ).mappings().one_or_none()
        if head is None:
            raise AuditLogUnusable("the audit log has no head row")
        hash_name = str(head["hash_name"])
        if hash_name not in ("sm3", "sha256"):
            raise AuditLogUnusable(f"the audit log names an unknown hash {hash_name!r}")
        report.hash_name, report.log_id = hash_name, str(head["log_id"])
        rows = _load_rows(engine, hash_name)
        cps = _load_checkpoints(engine, report)
        _note_open_attempts(engine, report)
    except SQLAlchemyError as exc:
        raise AuditLogUnusable(f"the audit database cannot be read: {exc}") from exc
    report.records, report.checkpoints = len(rows), len(cps)
    if public_key is None:
        report.notes.append("checkpoint signatures checked against the key stored in the log: "
                            "give the audit certificate for an independent check")

    _check_chain(rows, hash_name, report)
    leaves = [merkle.leaf_hash(hash_name, row.hash) for row in rows]
    last_seq = rows[-1].seq if rows else 0
    _check_checkpoints(cps, leaves, last_seq, hash_name, report.log_id, public_key, report)
    if external_checkpoint is not None:
        _check_external(external_checkpoint, leaves, last_seq, hash_name, report.log_id,
                        public_key, report)
    if head["size"] != len(rows) or (rows and bytes(head["last_hash"]) != rows[-1].hash):
        report.add("head", f"the log head says {head['size']} records but {len(rows)} are "
                   "stored (or its last hash differs)")
    return report
