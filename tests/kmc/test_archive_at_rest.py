"""The archive at rest holds no private key in clear; an HSM-held storage key still unwraps the
archive after the service restarts; the same flows run on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from keymgmt import ceremony
from keymgmt.errors import StorageKeyError
from keymgmt.service import CardRecipient, KeyManagementCentre, OfficerRecipient, Principal
from sscard.audit import AuditLog
from sscard.crypto import envelopes
from sscard.crypto.asymmetric import PrivateKey
from sscard.crypto.sm2 import SM2PrivateKey
from tests.kmc.kmc_helpers import new_kmc, principals
from tests.softhsm import SoftHsmToken

CUSTODIANS = [ceremony.Custodian(n, f"{n}-passphrase".encode()) for n in ("li", "wang", "zhao")]


def _forms(private_value: int, pkcs8: bytes) -> dict[str, bytes]:
    raw = private_value.to_bytes(32, "big")
    return {
        "raw scalar": raw,
        "hex scalar": raw.hex().encode(),
        "HEX scalar": raw.hex().upper().encode(),
        "pkcs8 DER": pkcs8,
        "pkcs8 hex": pkcs8.hex().encode(),
        # a 16-byte window of the scalar, in case something stored a fragment
        "scalar middle": raw[8:24],
    }


def test_database_files_hold_no_private_key_in_clear(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    kmc = new_kmc(f"sqlite:///{home / 'kmc.db'}")
    who = principals(kmc)
    cards = [SM2PrivateKey.generate() for _ in range(3)]
    escrowed = []
    for i, card in enumerate(cards):
        res = kmc.escrow(who["ca"], f"owner-{i}", card.public_key().spki_der())
        escrowed.append(envelopes.unwrap(res.enveloped_key_blob or b"", card))
    res = kmc.escrow(who["ca"], "owner-rsa", cards[0].public_key().spki_der(), "rsa2048")
    # complete one recovery too, so that the request rows exist beside the archive
    rid = kmc.request_recovery(who["o1"], key_id=res.key_id, reason="r",
                               recipient=OfficerRecipient("o4"))["request_id"]
    kmc.approve(who["o2"], rid)
    kmc.approve(who["o3"], rid)
    out = kmc.complete_recovery(who["o4"], rid)
    from keymgmt import pkcs12

    assert out.pkcs12 is not None and out.pkcs12_passphrase is not None
    rsa_pkcs8, _ = pkcs12.open_pfx(out.pkcs12, out.pkcs12_passphrase.encode())
    rsa_key = PrivateKey.from_pkcs8(rsa_pkcs8)
    kmc.close()

    files = sorted(p for p in home.rglob("*") if p.is_file())
    assert any(p.name == "kmc.db" for p in files)
    blob = b"".join(p.read_bytes() for p in files)
    assert len(blob) > 10_000
    # The public keys are in the archive (sanity: the scan looks at the right bytes) ...
    assert escrowed[0].public_key().point in blob
    # ... the private keys in none of their forms, nor the one-time PKCS#12 passphrase.
    for key in escrowed:
        for what, needle in _forms(key.private_value(), key.pkcs8_der()).items():
            assert needle not in blob, f"{what} of an escrowed SM2 key found in {files}"
    rsa_d = rsa_key.raw.private_numbers().d.to_bytes(256, "big").lstrip(b"\x00")
    assert rsa_d[:32] not in blob and rsa_pkcs8 not in blob
    assert out.pkcs12_passphrase.encode() not in blob


def _hsm_kmc(home: Path, url: str, files: list[tuple[Path, bytes]]) -> KeyManagementCentre:
    """What the service does at start: unseal with M shares, open the database."""
    audit = AuditLog.at_home(home)
    return KeyManagementCentre.open(url, ceremony.unseal_from_files(home, files, audit=audit),
                                    audit=audit)


def test_hsm_storage_key_unwraps_the_archive_after_a_restart(
    tmp_path: Path, softhsm_token: SoftHsmToken,
) -> None:
    home = tmp_path / "home"
    result = ceremony.run_ceremony(
        home, CUSTODIANS, 2, tmp_path / "shares",
        pkcs11_target=ceremony.Pkcs11Target(softhsm_token.module, softhsm_token.label,
                                            softhsm_token.user_pin.encode()),
                                   audit=AuditLog.at_home(home))
    files = [(result.share_files[c.name], c.passphrase) for c in CUSTODIANS]
    url = f"sqlite:///{tmp_path / 'kmc.db'}"

    kmc = _hsm_kmc(home, url, files[:2])
    who = principals(kmc)
    card = SM2PrivateKey.generate()
    res = kmc.escrow(who["ca"], "owner-hsm", card.public_key().spki_der())
    escrowed = envelopes.unwrap(res.enveloped_key_der or b"", card)
    kmc.close()  # service stops: HSM session closed, storage key gone from the process

    kmc = _hsm_kmc(home, url, files[1:])  # restarted with another pair of custodians
    # API keys are shown once at registration; the test registers fresh officers to act now
    new = principals_again(kmc)
    new_card = SM2PrivateKey.generate()
    rid = kmc.request_recovery(new["p1"], key_id=res.key_id, reason="after restart",
                               recipient=CardRecipient(new_card.public_key().spki_der()))
    kmc.approve(new["p2"], rid["request_id"])
    kmc.approve(new["p3"], rid["request_id"])
    out = kmc.complete_recovery(new["p1"], rid["request_id"])
    assert envelopes.unwrap(out.enveloped_key_blob or b"", new_card).private_value() == \
        escrowed.private_value()
    kmc.close()


def principals_again(kmc: KeyManagementCentre) -> dict[str, Principal]:
    return {n: kmc.authenticate(kmc.add_caller(n, "officer")) for n in ("p1", "p2", "p3")}


def test_archive_from_another_storage_key_does_not_unwrap(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kmc.db'}"
    kmc = new_kmc(url)
    who = principals(kmc)
    res = kmc.escrow(who["ca"], "owner-x", SM2PrivateKey.generate().public_key().spki_der())
    kmc.close()
    other = new_kmc(url)  # same database, a different (wrong) storage key
    try:
        new = principals_again(other)
        rid = other.request_recovery(new["p1"], key_id=res.key_id, reason="r",
                                     recipient=OfficerRecipient("p3"))["request_id"]
        other.approve(new["p2"], rid)
        third = other.authenticate(other.add_caller("p4", "officer"))
        other.approve(third, rid)
        with pytest.raises(StorageKeyError, match="does not unwrap"):
            other.complete_recovery(new["p3"], rid)
        # the failed release changed nothing: the request is still approved, not completed
        assert other.recovery_status(new["p1"], rid)["status"] == "approved"
    finally:
        other.close()


def test_escrow_and_recovery_on_postgresql(pg_url: str) -> None:
    kmc = new_kmc(pg_url)
    try:
        who = principals(kmc)
        card = SM2PrivateKey.generate()
        res = kmc.escrow(who["ca"], "owner-pg", card.public_key().spki_der())
        escrowed = envelopes.unwrap(res.enveloped_key_blob or b"", card)
        new_card = SM2PrivateKey.generate()
        rid = kmc.request_recovery(who["o1"], owner="owner-pg", reason="pg",
                                   recipient=CardRecipient(new_card.public_key().spki_der())
                                   )["request_id"]
        kmc.approve(who["o2"], rid)
        kmc.approve(who["o3"], rid)
        out = kmc.complete_recovery(who["o1"], rid)
        assert envelopes.unwrap(out.enveloped_key_der or b"", new_card).private_value() == \
            escrowed.private_value()
    finally:
        kmc.close()


def test_concurrent_approvals_on_postgresql_count_both(pg_url: str) -> None:
    """Two officers approving at the same moment: the row lock makes the second see the first,
    so the request ends approved (not stuck pending with two approvals)."""
    import threading

    kmc = new_kmc(pg_url)
    try:
        who = principals_again(kmc)
        ca = kmc.authenticate(kmc.add_caller("ca-pg2", "ca"))
        res = kmc.escrow(ca, "owner-pg2", SM2PrivateKey.generate().public_key().spki_der())
        for _round in range(3):
            rid = kmc.request_recovery(who["p1"], key_id=res.key_id, reason="race",
                                       recipient=OfficerRecipient("p1"))["request_id"]
            approvers = [kmc.authenticate(kmc.add_caller(f"a{_round}{i}", "officer"))
                         for i in range(2)]
            barrier = threading.Barrier(2)
            errors: list[BaseException] = []

            def approve(p: Principal, request_id: str = rid,
                        barrier: threading.Barrier = barrier,
                        errors: list[BaseException] = errors) -> None:
                barrier.wait()
                try:
                    kmc.approve(p, request_id)
                except BaseException as exc:  # collected for the assertion below
                    errors.append(exc)

            threads = [threading.Thread(target=approve, args=(p,)) for p in approvers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            status = kmc.recovery_status(who["p2"], rid)
            assert status["status"] == "approved" and len(status["approvals"]) == 2
    finally:
        kmc.close()
