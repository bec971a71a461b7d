"""Fixtures of the operations tests: a populated data directory (CA, KMC, audit log)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from ca.authority import CertificateAuthority
from keymgmt import ceremony
from keymgmt.db import default_url as kmc_url
from keymgmt.service import KeyManagementCentre, Principal, Role
from sscard.audit.log import AuditLog
from sscard.audit.log import default_url as audit_url
from sscard.card.validation import synthetic_ssn
from sscard.keys.software import SoftwareKey
from sscard.x509.builder import CertificateBuilder
from sscard.x509.names import parse_name
from tests.pg import PostgresCluster, pg_cluster  # noqa: F401  (fixture)

SSN = "350102199001011238"


def holder(i: int) -> str:
    return f"CN=持卡人{i},serialNumber={synthetic_ssn(i, born=dt.date(1990, 1, 1))},C=CN"


CUSTODIANS = [ceremony.Custodian("alice", b"alice-passphrase"),
              ceremony.Custodian("bob", b"bob-passphrase-2"),
              ceremony.Custodian("carol", b"carol-passphrase-3")]


def self_signed(key: SoftwareKey, subject: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    name = parse_name(subject)
    return bytes(CertificateBuilder().subject(name).issuer(name).public_key(key.public_key())
                 .serial_number(secrets.randbits(63) + 1)
                 .not_valid_before(now - dt.timedelta(minutes=5))
                 .not_valid_after(now + dt.timedelta(days=30))
                 .add_extension("key_usage", {"digital_signature"}, critical=True)
                 .sign(key).dump())


@dataclass
class Populated:
    home: Path
    share_dir: Path
    statuses: dict[int, str]  # serial -> good / revoked
    escrow_key_id: str
    escrow_spki: bytes
    audit_cert: bytes
    audit_records: int


def unseal(home: Path, share_dir: Path) -> KeyManagementCentre:
    files = sorted(share_dir.glob("share-*.json"))
    key = ceremony.unseal_from_files(home, [(files[0], CUSTODIANS[0].passphrase),
                                            (files[2], CUSTODIANS[2].passphrase)],
                                     audit=AuditLog.at_home(home))
    return KeyManagementCentre.open(kmc_url(home), key, audit=AuditLog.at_home(home))


def principals(kmc: KeyManagementCentre, names: dict[str, Role]) -> dict[str, Principal]:
    return {n: kmc.authenticate(kmc.add_caller(n, r)) for n, r in names.items()}


def populate(home: Path, share_dir: Path, certificates: int = 6) -> Populated:
    """A data directory as an embedded deployment leaves it: CA (issued, revoked, a CRL), KMC
    (ceremony, an escrowed key), audit log (records and a signed checkpoint)."""
    statuses: dict[int, str] = {}
    with CertificateAuthority.init(home, audit=AuditLog.at_home(home)) as ca:
        for i in range(certificates):
            key = SoftwareKey.generate("sm2")
            issued = ca.issue_for_public_key(key.public_key(), holder(i), "cardholder-sign")
            statuses[issued.serial] = "good"
        for serial in list(statuses)[:2]:
            ca.revoke(serial, "keyCompromise")
            statuses[serial] = "revoked"
        ca.build_crl()
    ceremony.run_ceremony(home, CUSTODIANS, 2, share_dir, scrypt_n=1 << 10,
                          audit=AuditLog.at_home(home))
    kmc = unseal(home, share_dir)
    try:
        who = principals(kmc, {"ra": Role.RA})
        card_key = SoftwareKey.generate("sm2")
        escrow = kmc.escrow(who["ra"], "holder-0", card_key.public_key().spki_der())
    finally:
        kmc.close()
    audit_key = SoftwareKey.generate("sm2")
    cert = self_signed(audit_key, "CN=审计日志签名,O=人力资源和社会保障厅,C=CN")
    # the CA and the KMC recorded their operations themselves; sign a checkpoint over them
    log = AuditLog.open(audit_url(home), signer=audit_key, certificate=cert)
    log.checkpoint()
    size = log.size()
    log.engine.dispose()
    return Populated(home, share_dir, statuses, escrow.key_id, escrow.public_key_spki, cert,
                     size)


@pytest.fixture
def populated(tmp_path: Path) -> Populated:
    return populate(tmp_path / "home", tmp_path / "shares")


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup.pass"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)  # a secret file: owner only
    return path
