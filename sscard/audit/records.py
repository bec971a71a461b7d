"""Audit records: what one entry holds, the schema check, the canonical encoding and the chain.

A record says who (``actor``) did what (``action``) to what (``object``), with what ``outcome``,
for which ``request_id``, when, plus a small JSON object of ``details``. Records are chained:
``h_i = H(h_{i-1} || canonical_encoding(record_i))`` with ``h_0`` all zero bytes, so changing,
removing, adding or moving one record breaks every hash after it.

The sequence number is deliberately not part of the encoding: the position of a record is already
bound by the chain (and by its leaf index in the Merkle tree), and keeping it out lets the
verifier tell a renumbering (a record inserted or deleted in the middle) from an edited record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sscard.audit.errors import AuditRecordRejected, SecretInAuditRecord
from sscard.crypto.hashes import digest

#: hash algorithms the chain and the tree may use (SM3 by default, SHA-256 for interoperation)
HASH_ALGORITHMS = ("sm3", "sha256")
DEFAULT_HASH = "sm3"

#: outcomes a record may carry; 'attempt' is written before a guarded operation runs
OUTCOMES = ("attempt", "success", "failure", "denied", "error", "info")

ENCODING_VERSION = 1
MAX_TEXT = {"actor": 256, "action": 128, "object": 512, "request_id": 128}
MAX_DETAILS_BYTES = 8192
MAX_DETAILS_DEPTH = 8

# Field names that hold secrets. Names are split into words (snake_case, kebab-case, camelCase)
# and a name is refused when one word is a secret word, a word starts with "private", or the
# name ends in "key" (a session key, a wrapped key) unless it is a public key.
_SECRET_WORDS = frozenset(
    {"pin", "puk", "pins", "passphrase", "password", "passwd", "pwd", "secret", "secrets"}
)
_KEY_WORDS = frozenset({"key", "keys", "privkey", "seckey"})
_PUBLIC_PREFIXES = frozenset({"public", "pub"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# A PEM private key of any flavour: PKCS#8, encrypted PKCS#8, "EC"/"RSA"/"SM2" traditional.
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def hash_size(hash_name: str) -> int:
    return len(digest(check_hash_name(hash_name), b""))


def check_hash_name(hash_name: str) -> str:
    name = hash_name.lower()
    if name not in HASH_ALGORITHMS:
        raise ValueError(
            f"audit hash must be one of {', '.join(HASH_ALGORITHMS)}, not {hash_name!r}"
        )
    return name


def genesis_hash(hash_name: str) -> bytes:
    """``h_0``: the value the first record chains to."""
    return bytes(hash_size(hash_name))


def chain_hash(hash_name: str, previous: bytes, encoding: bytes) -> bytes:
    """``h_i = H(h_{i-1} || canonical_encoding(record_i))``."""
    return digest(hash_name, previous + encoding)


@functools.lru_cache(maxsize=1024)  # the same few field names, on every record
def is_secret_field_name(name: str) -> bool:
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    if any(w in _SECRET_WORDS or w.startswith("private") for w in words):
        return True
    if words[-1] in _KEY_WORDS:
        return not (len(words) > 1 and words[-2] in _PUBLIC_PREFIXES)
    return False


#: detail strings are cut at this length (the record stays well under MAX_DETAILS_BYTES)
MAX_DETAIL_TEXT = 1024
_ESCAPE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bounded_text(value: Any, limit: int) -> Any:
    """Text from outside made fit for a record: control characters and lone surrogates
    escaped (``\\x0a``, ``\\udc80``: no forged line, no text the database or UTF-8 refuses), and
    cut to ``limit`` characters with a mark saying how much was cut. Non-strings pass
    unchanged (``check`` refuses them: a programming error, not input)."""
    if not isinstance(value, str):
        return value
    # printable text holds none of the characters escaped (controls, surrogates): no regex
    text = value if value.isprintable() else _ESCAPE.sub(_escape, value)
    if len(text) <= limit:
        return text
    mark = f"…[cut: {len(text)} characters]"
    return text[: max(limit - len(mark), 0)] + mark


def _bounded_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return bounded_text(value, MAX_DETAIL_TEXT)
    if depth > MAX_DETAILS_DEPTH:
        return value  # check() names it
    if isinstance(value, list | tuple):
        return [_bounded_value(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {bounded_text(k, 128): _bounded_value(v, depth + 1) for k, v in value.items()}
    return value


def _check_value(path: str, value: Any, depth: int) -> None:
    if depth > MAX_DETAILS_DEPTH:
        raise AuditRecordRejected(f"{path}: details nested deeper than {MAX_DETAILS_DEPTH}")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if _PEM_PRIVATE.search(value):
            raise SecretInAuditRecord(f"{path} holds a PEM private key; refused")
        return
    if isinstance(value, float):
        # Floats have no single canonical text form; the chain hash needs one.
        raise AuditRecordRejected(f"{path}: floats are not allowed (use an integer or a string)")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditRecordRejected(f"{path}: keys must be strings, found {key!r}")
            if is_secret_field_name(key):
                raise SecretInAuditRecord(
                    f"{path}.{key}: a field named like a secret (PIN, passphrase, password, "
                    "key, private...) may not be written to the audit log"
                )
            _check_value(f"{path}.{key}", item, depth + 1)
        return
    raise AuditRecordRejected(f"{path}: {type(value).__name__} is not a JSON value")


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry as written, before it gets its place in the log."""

    time: str
    actor: str
    action: str
    object: str
    outcome: str
    request_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse a malformed record or one that carries a secret; the message names the field."""
        for name, limit in MAX_TEXT.items():
            value = getattr(self, name)
            if not isinstance(value, str):
                raise AuditRecordRejected(f"{name} must be a string, not {type(value).__name__}")
            if len(value) > limit:
                raise AuditRecordRejected(f"{name} is longer than {limit} characters")
            _check_value(name, value, 0)
        for name in ("actor", "action"):
            if not getattr(self, name).strip():
                raise AuditRecordRejected(f"{name} must not be empty")
        if self.outcome not in OUTCOMES:
            raise AuditRecordRejected(
                f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}"
            )
        if not isinstance(self.details, Mapping):
            raise AuditRecordRejected("details must be a JSON object (a mapping)")
        self._check_details()
        if len(self.details_json().encode("utf-8", "surrogatepass")) > MAX_DETAILS_BYTES:
            raise AuditRecordRejected(f"details are larger than {MAX_DETAILS_BYTES} bytes")

    @classmethod
    def bounded(cls, time: str, actor: Any, action: Any, obj: Any, outcome: str,
                request_id: Any = "", details: Any = None) -> AuditRecord:
        """A record of whatever the caller sent (names, paths, request ids...): text escaped
        and cut to the limits with a mark, oversized details replaced by a cut summary. Then
        ``check`` refuses only what is a programming error or a secret."""
        limits = MAX_TEXT
        record = cls(time, bounded_text(actor, limits["actor"]),
                     bounded_text(action, limits["action"]), bounded_text(obj, limits["object"]),
                     outcome, bounded_text(request_id, limits["request_id"]),
                     _bounded_value(details, 0) if details is not None else {})
        if isinstance(record.details, Mapping):
            # secrets and non-JSON values are refused before anything could hide them
            record._check_details()
            size = len(record.details_json().encode("utf-8"))
            if size > MAX_DETAILS_BYTES:
                summary = bounded_text(record.details_json(), MAX_DETAILS_BYTES // 4)
                record = dataclasses.replace(record, details={"details_cut": summary})
        return record

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": ENCODING_VERSION,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "details": dict(self.details),
        }

    def details_json(self) -> str:
        """The details as canonical JSON, computed once per record (its size check, the chain
        hash and the stored column all use it): the record is frozen, its details are not
        changed after it is made."""
        return self._details_json

    def _check_details(self) -> None:
        """The details' check (secrets, JSON values), walked once per record: ``bounded``
        and ``check`` both need it. Raises for a refused value (and remembers nothing then);
        the record is frozen, so a passed check stays true."""
        if "_details_ok" not in self.__dict__:
            _check_value("details", self.details, 0)
            self.__dict__["_details_ok"] = True

    @functools.cached_property
    def _details_json(self) -> str:
        return _canonical_json(dict(self.details))

    def at(self, time: str) -> AuditRecord:
        """This record with its time set (under the log's lock), keeping the details' JSON."""
        timed = AuditRecord(time, self.actor, self.action, self.object, self.outcome,
                            self.request_id, self.details)
        if "_details_json" in self.__dict__:
            timed.__dict__["_details_json"] = self.__dict__["_details_json"]
        return timed

    def canonical_encoding(self) -> bytes:
        """Sorted keys, no whitespace, UTF-8: one byte string per record, whatever the engine.
        Written from its parts around the details' JSON (the same bytes ``json.dumps`` of
        ``as_dict()`` with sorted keys gives, tested) so the details are encoded only once."""
        texts = (self.action, self.actor, self.object, self.outcome, self.request_id,
                 self.time)
        try:
            if not all(type(t) is str for t in texts):
                return _canonical_json(self.as_dict()).encode("utf-8")
            action, actor, obj, outcome, request_id, time = map(_json_string, texts)
            return (f'{{"action":{action},"actor":{actor},"details":{self._details_json},'
                    f'"object":{obj},"outcome":{outcome},"request_id":{request_id},'
                    f'"time":{time},"v":{ENCODING_VERSION}}}').encode()
        except UnicodeEncodeError:
            raise AuditRecordRejected("record text is not valid Unicode (lone surrogate)") from None


#: a JSON string as ``json.dumps(..., ensure_ascii=False)`` writes it (the C encoder)
_json_string = json.encoder.encode_basestring


# made once: json.dumps with these options builds a new encoder on every call
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                      allow_nan=False)


def _canonical_json(value: Any) -> str:
    try:
        return _CANONICAL_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise AuditRecordRejected(f"details are not plain JSON: {exc}") from None


def fitting_chunks(items: Sequence[Any], room: int,
                   first_room: int | None = None) -> list[list[Any]]:
    """``items`` split, in order, into lists whose JSON (each item as a record holds it:
    bounded, escaped) takes at most ``room`` bytes, so that a list too long for one record's
    details (``MAX_DETAILS_BYTES``) goes into several records instead of being cut. With
    ``first_room``, the first list (always there, maybe empty) fits in that instead: the room
    left in a record that holds other details. An item larger than ``room`` gets a list of
    its own."""
    limit = room if first_room is None else first_room
    bounded = [_bounded_value(item, 1) for item in items]
    if bounded and _json_size(bounded) <= limit:  # all in one: one encoding, not one an item
        return [list(items)]
    chunks: list[list[Any]] = []
    chunk: list[Any] = []
    used = 2  # the brackets
    for item, as_stored in zip(items, bounded, strict=True):
        size = _json_size(as_stored) + 1
        if used + size > limit and (chunk or limit != room):
            chunks.append(chunk)
            chunk, used, limit = [], 2, room
        chunk.append(item)
        used += size
    if chunk or (first_room is not None and not chunks):
        chunks.append(chunk)
    return chunks


def details_size(details: Mapping[str, Any]) -> int:
    """The bytes ``details`` take in a record (bounded, as ``AuditRecord.bounded`` stores them)."""
    return _json_size(_bounded_value(dict(details), 0))


def _json_size(value: Any) -> int:
    return len(_canonical_json(value).encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class StoredRecord:
    """A record with its place in the log: sequence number (from 1) and chain hashes."""

    seq: int
    record: AuditRecord
    prev_hash: bytes
    hash: bytes

    def leaf_entry(self) -> bytes:
        """What the Merkle tree commits to for this record: its chain hash."""
        return self.hash
