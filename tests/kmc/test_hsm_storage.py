"""The storage key in SoftHSM2: generated non-extractable, PIN sealed under M-of-N custodians,
and still unwrapping archived records after a restart."""

from __future__ import annotations

from pathlib import Path

import pkcs11
import pytest

from keymgmt import ceremony
from keymgmt.errors import CeremonyError, ShareError, StorageKeyError
from keymgmt.hsm import HsmStorageKey
from sscard.audit import AuditLog
from sscard.keys.pkcs11 import Pkcs11Token
from tests.softhsm import SoftHsmToken

CUSTODIANS = [ceremony.Custodian(n, f"{n}-passphrase".encode()) for n in ("li", "wang", "zhao")]


def test_hsm_storage_key_survives_restart(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    home = tmp_path / "home"
    result = ceremony.run_ceremony(
        home, CUSTODIANS, 2, tmp_path / "shares",
        pkcs11_target=ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label,
                                            softhsm_token.user_pin.encode()),
                                   audit=AuditLog.at_home(home))
    assert result.backend == "pkcs11"
    files = [(result.share_files[c.name], c.passphrase) for c in CUSTODIANS]
    with pytest.raises(ShareError, match=r"1 custodian share.*2 of 3"):
        ceremony.unseal_from_files(home, files[:1], audit=AuditLog.at_home(home))

    first = ceremony.unseal_from_files(home, files[:2], audit=AuditLog.at_home(home))
    wrapped = first.wrap(b"escrowed private key", b"key-1|owner")
    first.close()  # the service stops

    # The administrator's initial PIN no longer opens the token: only the sealed PIN does.
    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin=softhsm_token.user_pin)

    # a different pair of custodians
    second = ceremony.unseal_from_files(home, files[1:], audit=AuditLog.at_home(home))
    try:
        assert second.unwrap(wrapped, b"key-1|owner") == b"escrowed private key"
        with pytest.raises(StorageKeyError, match="does not unwrap"):
            second.unwrap(wrapped, b"key-2|owner")
        assert isinstance(second, HsmStorageKey)
        key = second.secret_key
        assert key.extractable is False and key.sensitive is True and key.bits == 256
    finally:
        second.close()


def test_ceremony_refuses_a_token_that_already_holds_a_storage_key(
    tmp_path: Path, softhsm_token: SoftHsmToken,
) -> None:
    pin = softhsm_token.user_pin.encode()
    with Pkcs11Token(softhsm_token.label, pin, softhsm_token.module) as token:
        token.generate_aes_key("sscard-kmc-storage")
    target = ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label, pin)
    with pytest.raises(CeremonyError, match="already holds a key labelled"):
        ceremony.run_ceremony(tmp_path / "a", CUSTODIANS, 2, tmp_path / "sa",
                              pkcs11_target=target, audit=AuditLog.at_home(tmp_path / "audit"))
    # refused before anything was written or the PIN changed
    assert not (tmp_path / "a").exists() and not (tmp_path / "sa").exists()
    with Pkcs11Token(softhsm_token.label, pin, softhsm_token.module):
        pass


def test_a_second_ceremony_cannot_reuse_the_administrators_pin(
    tmp_path: Path, softhsm_token: SoftHsmToken,
) -> None:
    target = ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label,
                                   softhsm_token.user_pin.encode())
    ceremony.run_ceremony(tmp_path / "a", CUSTODIANS, 2, tmp_path / "sa", pkcs11_target=target,
                          audit=AuditLog.at_home(tmp_path / "a"))
    with pytest.raises(StorageKeyError, match="wrong PIN"):
        ceremony.run_ceremony(tmp_path / "b", CUSTODIANS, 2, tmp_path / "sb",
                              pkcs11_target=target, audit=AuditLog.at_home(tmp_path / "b"))


def test_ceremony_creates_the_root_ca_key_in_an_hsm(
    tmp_path: Path, softhsm_token: SoftHsmToken,
) -> None:
    """Storage key software, root CA key non-extractable in the CA's token (ECDSA: SoftHSM2
    has no SM2); the CA core opens it by label with the token PIN."""
    from tests.softhsm import create_token

    ca_token = create_token(f"ca-{tmp_path.name[-8:]}", user_pin="99887766")
    result = ceremony.run_ceremony(
        tmp_path / "home", CUSTODIANS, 2, tmp_path / "shares",
        root_ca=ceremony.RootCaKeyRequest("ec-p256", hsm_module=ca_token.module,
                                          hsm_token=ca_token.label, hsm_pin=b"99887766"),
                                   audit=AuditLog.at_home(tmp_path / "home"))
    assert result.root_ca_key is None and result.root_ca_public_key is not None
    from sscard.crypto.asymmetric import PublicKey

    published = PublicKey.from_pem(result.root_ca_public_key.read_bytes())
    with Pkcs11Token(ca_token.label, b"99887766", ca_token.module) as token:
        key = token.find_key("root-ca")
        published.verify(key.sign(b"tbs certificate"), b"tbs certificate")
    state = ceremony.read_state(tmp_path / "home")
    assert state["root_ca"]["pkcs11"]["key_label"] == "root-ca"
    with pytest.raises(CeremonyError, match="SM2"):
        ceremony.run_ceremony(
            tmp_path / "home2", CUSTODIANS, 2, tmp_path / "shares2",
            root_ca=ceremony.RootCaKeyRequest("sm2", hsm_module=ca_token.module,
                                              hsm_token=ca_token.label, hsm_pin=b"99887766"),
                              audit=AuditLog.at_home(tmp_path / "home2"))
    assert not any((tmp_path / "shares2").iterdir())
