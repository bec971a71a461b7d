"""The storage key in SoftHSM2: generated non-extractable, PIN sealed under M-of-N custodians,
and still unwrapping archived records after a restart."""

from __future__ import annotations

from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType

from keymgmt import ceremony
from keymgmt.errors import ShareError, StorageKeyError

from .conftest import SoftHsmToken

CUSTODIANS = [ceremony.Custodian(n, f"{n}-passphrase".encode()) for n in ("li", "wang", "zhao")]


def test_hsm_storage_key_survives_restart(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    home = tmp_path / "home"
    result = ceremony.run_ceremony(
        home, CUSTODIANS, 2, tmp_path / "shares",
        pkcs11_target=ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label,
                                            softhsm_token.pin),
    )
    assert result.backend == "pkcs11"
    files = [(result.share_files[c.name], c.passphrase) for c in CUSTODIANS]
    with pytest.raises(ShareError, match=r"1 custodian share.*2 of 3"):
        ceremony.unseal_from_files(home, files[:1])

    first = ceremony.unseal_from_files(home, files[:2])
    wrapped = first.wrap(b"escrowed private key", b"key-1|owner")
    first.close()  # the service stops

    # The administrator's initial PIN no longer opens the token: only the sealed PIN does.
    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin=softhsm_token.pin.decode())

    second = ceremony.unseal_from_files(home, files[1:])  # a different pair of custodians
    try:
        assert second.unwrap(wrapped, b"key-1|owner") == b"escrowed private key"
        with pytest.raises(StorageKeyError, match="does not unwrap"):
            second.unwrap(wrapped, b"key-2|owner")
        key = second._key  # type: ignore[attr-defined]
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
        assert key.key_type == KeyType.AES and key.key_length == 256
    finally:
        second.close()


def test_ceremony_refuses_a_token_that_already_holds_a_storage_key(
    tmp_path: Path, softhsm_token: SoftHsmToken,
) -> None:
    target = ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    ceremony.run_ceremony(tmp_path / "a", CUSTODIANS, 2, tmp_path / "sa", pkcs11_target=target)
    # the first ceremony replaced the PIN; a second ceremony with the old PIN cannot log in
    with pytest.raises(StorageKeyError, match="wrong user PIN"):
        ceremony.run_ceremony(tmp_path / "b", CUSTODIANS, 2, tmp_path / "sb",
                              pkcs11_target=target)
