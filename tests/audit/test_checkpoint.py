"""Checkpoint bodies and their external JSON form: round trips, and malformed input refused with
a message naming what is wrong."""

from __future__ import annotations

import json

import pytest

from sscard.audit.checkpoint import Checkpoint, CheckpointBody
from sscard.audit.errors import CheckpointError
from sscard.keys.software import SoftwareKey

BODY = CheckpointBody("3f2a", "sm3", 2, 1000, bytes(range(32)), "2026-11-28T10:00:00.000000Z",
                      b"\x07" * 32)


@pytest.fixture(scope="module")
def signed() -> tuple[Checkpoint, SoftwareKey]:
    key = SoftwareKey.generate("sm2")
    return Checkpoint.sign(BODY, key), key


def test_round_trip_and_signature(signed: tuple[Checkpoint, SoftwareKey]) -> None:
    cp, key = signed
    assert CheckpointBody.decode(BODY.encode()) == BODY
    again = Checkpoint.from_json(cp.to_json())
    assert again == cp
    assert again.verify(key.public_key())
    assert not again.verify(SoftwareKey.generate("sm2").public_key())
    first = CheckpointBody("3f2a", "sm3", 1, 0, b"\0" * 32, BODY.time, None)
    assert CheckpointBody.decode(first.encode()).prev is None
    assert b"\nprev -\n" in first.encode()


def test_an_edited_body_no_longer_verifies(signed: tuple[Checkpoint, SoftwareKey]) -> None:
    cp, key = signed
    doc = json.loads(cp.to_json())
    doc["body"] = doc["body"].replace("size 1000", "size 999")
    edited = Checkpoint.from_json(json.dumps(doc))
    assert edited.tree_size == 999
    assert not edited.verify(key.public_key())


@pytest.mark.parametrize(("body", "message"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"hello\n", "does not start with"),
    (BODY.encode().replace(b"index 2\n", b""), "exactly the fields"),
    (BODY.encode().replace(b"index 2", b"index two"), "must be integers"),
    (BODY.encode().replace(b"index 2", b"index 0"), "index must be >= 1"),
    (BODY.encode().replace(b"root ", b"root !!"), "root is not valid base64"),
    (BODY.encode().replace(b"size 1000", b"size 01000"), "not in canonical form"),
    (BODY.encode() + b"size 5\n", "malformed checkpoint line"),
    (BODY.encode().replace(b"log 3f2a", b"log"), "malformed checkpoint line"),
])
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        CheckpointBody.decode(body)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: "not json{", "not JSON"),
    (lambda d: "[1, 2]", "must hold a JSON object"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "signature"}), "lacks 'signature'"),
    (lambda d: json.dumps({**d, "signature_algorithm": "MD5_RSA"}), "unknown signature algorithm"),
    (lambda d: json.dumps({**d, "signature": "***"}), "signature is not valid base64"),
])
def test_malformed_checkpoint_files_are_refused(signed: tuple[Checkpoint, SoftwareKey],
                                                mutate: object, message: str) -> None:
    doc = json.loads(signed[0].to_json())
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.from_json(mutate(doc))  # type: ignore[operator]
