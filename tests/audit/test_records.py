"""The record schema: secrets are refused by field name and by value, the encoding is canonical."""

from __future__ import annotations

from typing import Any

import pytest

from sscard.audit.errors import AuditRecordRejected, SecretInAuditRecord
from sscard.audit.records import AuditRecord, chain_hash, genesis_hash, is_secret_field_name
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
