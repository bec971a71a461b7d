"""Signed checkpoints: a Merkle tree head (size, root, time, previous checkpoint) signed by the
audit key through a ``KeyHandle``.

The signed body is a short UTF-8 text, one field a line, so that an auditor can read it and any
tool can re-create the bytes::

    sscard-audit-checkpoint/v1
    log 3f2a...            (the log's identity, fixed when the log was created)
    hash sm3
    index 7                (checkpoint number, from 1)
    size 7000              (tree size: records 1..size)
    root <base64 root hash>
    time 2026-11-28T10:00:00.000000Z
    prev <base64 H(previous checkpoint body)> or "-"

Checkpoints are chained like the records, so removing one from the table shows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sscard.audit.errors import CheckpointError
from sscard.crypto.algorithms import SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import CryptoError
from sscard.crypto.hashes import digest
from sscard.keys.base import KeyHandle

HEADER = "sscard-audit-checkpoint/v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class CheckpointBody:
    log_id: str
    hash_name: str
    index: int
    tree_size: int
    root: bytes
    time: str
    prev: bytes | None

    def encode(self) -> bytes:
        lines = [
            HEADER,
            f"log {self.log_id}",
            f"hash {self.hash_name}",
            f"index {self.index}",
            f"size {self.tree_size}",
            f"root {_b64(self.root)}",
            f"time {self.time}",
            f"prev {_b64(self.prev) if self.prev is not None else '-'}",
        ]
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> CheckpointBody:
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise CheckpointError("checkpoint body is not UTF-8") from None
        if lines[-1:] == [""]:
            lines = lines[:-1]
        if not lines or lines[0] != HEADER:
            raise CheckpointError(f"checkpoint body does not start with {HEADER!r}")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(" ")
            if not value or name in fields:
                raise CheckpointError(f"malformed checkpoint line {line[:40]!r}")
            fields[name] = value
        wanted = ("log", "hash", "index", "size", "root", "time", "prev")
        if sorted(fields) != sorted(wanted):
            raise CheckpointError(f"checkpoint body needs exactly the fields {', '.join(wanted)}")
        try:
            index, size = int(fields["index"]), int(fields["size"])
        except ValueError:
            raise CheckpointError("checkpoint index and size must be integers") from None
        if index < 1 or size < 0:
            raise CheckpointError("checkpoint index must be >= 1 and size >= 0")
        prev = None if fields["prev"] == "-" else _unb64(fields["prev"], "prev")
        body = cls(fields["log"], fields["hash"], index, size, _unb64(fields["root"], "root"),
                   fields["time"], prev)
        if body.encode() != data:
            raise CheckpointError("checkpoint body is not in canonical form")
        return body

    def digest(self) -> bytes:
        """What the next checkpoint's ``prev`` holds."""
        return digest(self.hash_name, self.encode())


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint body with its signature, and who signed it."""

    body: CheckpointBody
    signature: bytes
    signature_algorithm: SignatureAlgorithm
    signer_spki: bytes
    certificate: bytes | None = None  # DER of the audit certificate, when the log has one

    @property
    def index(self) -> int:
        return self.body.index

    @property
    def tree_size(self) -> int:
        return self.body.tree_size

    @property
    def root(self) -> bytes:
        return self.body.root

    @classmethod
    def sign(cls, body: CheckpointBody, key: KeyHandle,
             certificate: bytes | None = None) -> Checkpoint:
        alg = key.default_signature_algorithm
        signature = key.sign(body.encode(), alg)
        return cls(body, signature, alg, key.public_key().spki_der(), certificate)

    def verify(self, public_key: PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.body.encode(), self.signature_algorithm)
        except CryptoError:
            return False
        return True

    def to_json(self) -> str:
        """The form kept outside the log (``audit checkpoint --out``, ``verify --checkpoint``)."""
        doc: dict[str, Any] = {
            "body": self.body.encode().decode("utf-8"),
            "signature": _b64(self.signature),
            "signature_algorithm": self.signature_algorithm.name,
            "signer_spki": _b64(self.signer_spki),
        }
        if self.certificate is not None:
            doc["certificate"] = _b64(self.certificate)
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"checkpoint file is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise CheckpointError("checkpoint file must hold a JSON object")
        try:
            body = CheckpointBody.decode(str(doc["body"]).encode("utf-8"))
            alg_name = str(doc["signature_algorithm"])
            if alg_name not in SignatureAlgorithm.__members__:
                raise CheckpointError(f"unknown signature algorithm {alg_name[:40]!r}")
            alg = SignatureAlgorithm[alg_name]
            cert = doc.get("certificate")
            return cls(
                body,
                _unb64(str(doc["signature"]), "signature"),
                alg,
                _unb64(str(doc["signer_spki"]), "signer_spki"),
                _unb64(str(cert), "certificate") if cert is not None else None,
            )
        except KeyError as exc:
            raise CheckpointError(f"checkpoint file lacks {exc.args[0]!r}") from None
