"""AES storage keys on a real SoftHSM2 token: GCM on the token, wrap/unwrap, non-extractability."""

from __future__ import annotations

import secrets

import pkcs11
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, ObjectClass

from sscard.crypto.errors import DecryptionError
from sscard.keys.pkcs11 import DuplicateKey, KeyNotFound, Pkcs11Error, Pkcs11Token
from sscard.keys.pkcs11_secret import NONCE_BYTES, TAG_BYTES, Pkcs11SecretKey
from tests.keys.conftest import unique

ESCROWED = secrets.token_bytes(32)  # stands in for an SM2 private scalar the KMC escrows


@pytest.fixture(scope="module")
def storage_key(token: Pkcs11Token) -> Pkcs11SecretKey:
    return token.generate_aes_key(unique("storage"))


def test_storage_key_is_non_extractable_and_sensitive(token: Pkcs11Token,
                                                      storage_key: Pkcs11SecretKey) -> None:
    assert storage_key.extractable is False
    assert storage_key.sensitive is True
    info = next(k for k in token.list_keys() if k.key_id == storage_key.key_id)
    assert (info.object_class, info.key_type, info.size, info.extractable) == (
        "secret", "aes", 256, False)
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        token.run(lambda s: storage_key._secret(s)[Attribute.VALUE])


def test_storage_key_cannot_be_wrapped_out(token: Pkcs11Token,
                                           storage_key: Pkcs11SecretKey) -> None:
    other = token.generate_aes_key(unique("wrapper"))
    with pytest.raises(Pkcs11Error, match="not extractable"):
        other.wrap_token_key(storage_key)


def test_wrap_round_trip_binds_the_context(storage_key: Pkcs11SecretKey) -> None:
    blob = storage_key.wrap(ESCROWED, context=b"escrow-record-17")
    assert len(blob) == NONCE_BYTES + len(ESCROWED) + TAG_BYTES
    assert ESCROWED not in blob
    assert storage_key.unwrap(blob, context=b"escrow-record-17") == ESCROWED
    assert storage_key.wrap(ESCROWED, b"escrow-record-17") != blob  # fresh nonce each time
    with pytest.raises(DecryptionError, match="wrong associated data"):
        storage_key.unwrap(blob, context=b"escrow-record-18")


@pytest.mark.parametrize("position", [0, NONCE_BYTES, -1])
def test_any_changed_byte_is_refused(storage_key: Pkcs11SecretKey, position: int) -> None:
    blob = bytearray(storage_key.wrap(ESCROWED))
    blob[position] ^= 0x80
    with pytest.raises(DecryptionError, match="corrupt"):
        storage_key.unwrap(bytes(blob))


def test_short_blob_and_empty_material_are_refused(storage_key: Pkcs11SecretKey) -> None:
    with pytest.raises(DecryptionError, match="too short"):
        storage_key.decrypt(b"\x00" * (NONCE_BYTES + TAG_BYTES - 1))
    with pytest.raises(ValueError, match="empty"):
        storage_key.wrap(b"")


def test_a_different_key_cannot_open_the_blob(token: Pkcs11Token,
                                              storage_key: Pkcs11SecretKey) -> None:
    other = token.generate_aes_key(unique("other"))
    with pytest.raises(DecryptionError):
        other.unwrap(storage_key.wrap(ESCROWED))


def test_find_secret_key_by_label_opens_what_the_generated_handle_sealed(
    token: Pkcs11Token, storage_key: Pkcs11SecretKey
) -> None:
    found = token.find_secret_key(storage_key.key_label)
    assert (found.key_id, found.bits) == (storage_key.key_id, 256)
    assert found.decrypt(storage_key.encrypt(b"large record " * 1000, b"aad"), b"aad") == (
        b"large record " * 1000)


def test_missing_and_duplicate_secret_keys(token: Pkcs11Token,
                                           storage_key: Pkcs11SecretKey) -> None:
    with pytest.raises(KeyNotFound, match="no secret key labelled 'absent'"):
        token.find_secret_key("absent")
    with pytest.raises(DuplicateKey, match=storage_key.key_label):
        token.generate_aes_key(storage_key.key_label)
    with pytest.raises(ValueError, match="128, 192 or 256"):
        token.generate_aes_key(unique("odd"), bits=100)


def test_token_gcm_is_standard_aes_gcm(token: Pkcs11Token) -> None:
    """With a key whose value we know, the token's output opens with pyca/cryptography and
    the reverse: the blob format is nonce || ciphertext || tag of plain AES-GCM."""
    value = secrets.token_bytes(32)
    label, key_id = unique("known"), secrets.token_bytes(8)
    token.run(lambda s: s.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: value, Attribute.LABEL: label, Attribute.ID: key_id,
        Attribute.TOKEN: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
    }))
    key = Pkcs11SecretKey(token, label, key_id, 256)
    blob = key.encrypt(b"interop", b"header")
    assert AESGCM(value).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], b"header") == b"interop"
    nonce = secrets.token_bytes(NONCE_BYTES)
    theirs = nonce + AESGCM(value).encrypt(nonce, b"from software", None)
    assert key.decrypt(theirs) == b"from software"


def test_wrap_token_key_round_trip(token: Pkcs11Token, storage_key: Pkcs11SecretKey) -> None:
    data_key = token.generate_aes_key(unique("data"), extractable=True)
    wrapped = storage_key.wrap_token_key(data_key)
    assert len(wrapped) == 40  # AES key wrap of 32 bytes: 32 + one 8-byte block
    restored = storage_key.unwrap_aes_key(wrapped, unique("restored"))
    assert restored.extractable is False
    assert restored.decrypt(data_key.encrypt(b"same key")) == b"same key"
    corrupted = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises((DecryptionError, Pkcs11Error)):
        storage_key.unwrap_aes_key(corrupted, unique("bad"))
