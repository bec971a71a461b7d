"""The record schema: secrets are refused by field name and by value, the encoding is canonical."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.audit.errors import AuditRecordRejected, SecretInAuditRecord
from sscard.audit.records import (
    _ESCAPE,
    MAX_DETAILS_BYTES,
    AuditRecord,
    _escape,
    bounded_text,
    chain_hash,
    fitting_chunks,
    genesis_hash,
    is_secret_field_name,
)
from sscard.keys.software import SoftwareKey

T = "2026-11-28T10:00:00.000000Z"


def rec(**kw: Any) -> AuditRecord:
    base: dict[str, Any] = {"time": T, "actor": "officer:1", "action": "cert.issue",
                            "object": "serial:01", "outcome": "success", "request_id": "r1"}
    base.update(kw)
    return AuditRecord(**base)


@pytest.mark.parametrize("name", ["pin", "PIN", "new_pin", "userPin", "pin-code", "passphrase",
                                  "password", "adminPassword", "key", "session_key", "wrappedKey",
                                  "private", "private_value", "privateKey", "secret", "puk"])
def test_secret_field_names_are_refused(name: str) -> None:
    assert is_secret_field_name(name)
    with pytest.raises(SecretInAuditRecord, match=name):
        rec(details={name: "x"}).check()
    with pytest.raises(SecretInAuditRecord, match=name):
        rec(details={"nested": [{name: 1}]}).check()


@pytest.mark.parametrize("name", ["public_key", "publicKey", "key_id", "key_usage", "serial",
                                  "pinned", "spin", "keyAlgorithm", "monkey_business"])
def test_ordinary_field_names_pass(name: str) -> None:
    assert not is_secret_field_name(name)
    rec(details={name: "x"}).check()


def test_pem_private_key_values_are_refused_anywhere() -> None:
    pem = SoftwareKey.generate("sm2").private_key.encrypted_pkcs8(b"pw").decode()
    assert "PRIVATE KEY" in pem
    for record in (rec(details={"note": pem}), rec(details={"list": ["a", pem]}),
                   rec(object=pem[:500])):
        with pytest.raises(SecretInAuditRecord, match="PEM private key"):
            record.check()
    # the message names the field, never echoes the key
    with pytest.raises(SecretInAuditRecord) as info:
        rec(details={"note": pem}).check()
    assert "BEGIN" not in str(info.value)


@pytest.mark.parametrize(("record", "message"), [
    (rec(actor=""), "actor must not be empty"),
    (rec(action="  "), "action must not be empty"),
    (rec(outcome="ok"), "outcome must be one of"),
    (rec(actor=1), "actor must be a string"),
    (rec(object="x" * 600), "object is longer than 512"),
    (rec(details={"ratio": 0.5}), "floats are not allowed"),
    (rec(details={"blob": b"\x00"}), "bytes is not a JSON value"),
    (rec(details={1: "x"}), "keys must be strings"),
    (rec(details={"big": "x" * 9000}), "larger than 8192 bytes"),
    (rec(details=["x"]), "details must be a JSON object"),
])
def test_malformed_records_are_refused(record: AuditRecord, message: str) -> None:
    with pytest.raises(AuditRecordRejected, match=message):
        record.check()


def test_canonical_encoding_is_sorted_compact_utf8_and_order_independent() -> None:
    a = rec(actor="操作员:张三", details={"b": 1, "a": [True, None, "x"]})
    b = rec(actor="操作员:张三", details={"a": [True, None, "x"], "b": 1})
    assert a.canonical_encoding() == b.canonical_encoding()
    enc = a.canonical_encoding().decode("utf-8")
    assert enc.startswith('{"action":"cert.issue","actor":"操作员:张三","details":{"a":')
    assert " " not in enc.replace("操作员:张三", "")


def test_chain_hash_depends_on_previous_and_content() -> None:
    g = genesis_hash("sm3")
    assert g == bytes(32)
    h1 = chain_hash("sm3", g, rec().canonical_encoding())
    assert h1 != chain_hash("sm3", g, rec(outcome="failure").canonical_encoding())
    assert h1 != chain_hash("sm3", h1, rec().canonical_encoding())
    assert h1 != chain_hash("sha256", g, rec().canonical_encoding())


def _reference_encoding(record: AuditRecord) -> bytes:
    """The encoding as first defined: ``json.dumps`` of the whole record, sorted, compact."""
    return json.dumps(record.as_dict(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text,
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_text, inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(time=_text, actor=_text, action=_text, obj=_text, outcome=_text, request_id=_text,
       details=st.dictionaries(_text, _json, max_size=5))
def test_encoding_from_parts_is_the_json_of_the_whole_record(
        time: str, actor: str, action: str, obj: str, outcome: str, request_id: str,
        details: dict[str, Any]) -> None:
    """The chain hash's input is written from the fields around the details' JSON (encoded
    once per record); it must be byte for byte what the whole-record ``json.dumps`` gives, so
    the logs written before and after verify alike."""
    record = AuditRecord(time, actor, action, obj, outcome, request_id, details)
    assert record.canonical_encoding() == _reference_encoding(record)
    timed = record.at("2026-12-07T00:00:00.000000Z")
    assert timed.canonical_encoding() == _reference_encoding(timed)
    assert timed.details_json() == record.details_json()


def test_a_lone_surrogate_is_refused_by_the_encoding() -> None:
    with pytest.raises(AuditRecordRejected, match="surrogate"):
        rec(actor="a\ud800").canonical_encoding()
    with pytest.raises(AuditRecordRejected, match="surrogate"):
        rec(details={"x": "\udc80"}).canonical_encoding()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_bounded_text_escapes_exactly_what_the_pattern_names(value: str) -> None:
    """Printable text skips the escaping regex; the result is the regex's all the same."""
    assert bounded_text(value, 1000) == _ESCAPE.sub(_escape, value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"item": st.integers(0, 10**6), "text": st.text(
    max_size=400)}), max_size=60), st.integers(200, MAX_DETAILS_BYTES))
def test_fitting_chunks_fill_records_that_are_never_cut(items: list[dict[str, Any]],
                                                        room: int) -> None:
    """Hostile text (controls, lone surrogates: longer once escaped) packed into records: each
    list fits its room as the record stores it, so no record is cut and every item is kept, in
    order."""
    chunks = fitting_chunks(items, room)
    assert [i for c in chunks for i in c] == items and all(chunks)
    for chunk in chunks:
        record = AuditRecord.bounded("t", "a", "a", "", "info", "", {"items": chunk})
        stored = record.details_json().encode("utf-8", "surrogatepass")
        assert "details_cut" not in record.details
        assert len(stored) <= room + len('{"items":}') or len(chunk) == 1


def test_fitting_chunks_first_room_may_be_empty() -> None:
    first, *rest = fitting_chunks(["x" * 50, "y" * 50], 200, first_room=10)
    assert first == [] and rest == [["x" * 50, "y" * 50]]
    assert fitting_chunks([], 200, first_room=10) == [[]] and fitting_chunks([], 200) == []
