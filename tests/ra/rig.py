"""A whole RA for tests: an SM2 CA hierarchy (sscard ca), a KMC with a software storage key,
an audit log and the RA itself, each on its own SQLite file under one directory."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from ca.authority import CertificateAuthority
from ca.ports_inprocess import ra_port
from keymgmt.ports_inprocess import InProcessKmc
from keymgmt.service import KeyManagementCentre, KmcConfig
from keymgmt.service import Role as KmcRole
from keymgmt.storage import SoftwareStorageKey
from ra.models import Role
from ra.service import Actor, RegistrationAuthority
from sscard.audit.log import AuditLog

CA_TOML = """\
base_url = "http://127.0.0.1:8080"

[root]
name = "root"
subject = "CN=测试社保根CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 3650

[[issuing]]
name = "issuing"
subject = "CN=测试社保CA,O=某省人力资源和社会保障厅,C=CN"
algorithm = "sm2"
validity_days = 1825
path_length = 0
"""

PASSWORD = "correct horse battery"
ROLES: dict[str, set[Role]] = {
    "operator": {Role.OPERATOR},
    "officer1": {Role.OFFICER},
    "officer2": {Role.OFFICER},
    "auditor": {Role.AUDITOR},
    "admin": {Role.ADMINISTRATOR},
}


def person_of(n: int) -> str:
    """An officer's ID number for tests (distinct people for distinct n)."""
    return f"11010119800101{n:04d}"


@dataclass
class RaRig:
    base: Path
    ca: CertificateAuthority
    kmc: KeyManagementCentre
    audit: AuditLog
    ra: RegistrationAuthority
    api_token: str

    def actor(self, name: str) -> Actor:
        return Actor(name, frozenset(ROLES[name]))

    @property
    def client(self) -> Actor:
        return self.ra.authenticate_client(self.api_token)

    def close(self) -> None:
        self.ra.close()
        self.kmc.close()
        self.audit.engine.dispose()
        self.ca.close()


def make_ca(base: Path) -> CertificateAuthority:
    config = base / "ca.toml"
    config.write_text(CA_TOML, encoding="utf-8")
    return CertificateAuthority.init(base / "ca-home", config, passphrase=b"ca test passphrase",
                                     audit=AuditLog.at_home(base / "ca-home"))


def make_rig(base: Path, ca: CertificateAuthority | None = None,
             ra_url: str | None = None) -> RaRig:
    base.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca(base)
    audit = AuditLog.open(f"sqlite:///{base / 'audit.db'}")
    kmc = KeyManagementCentre.open(f"sqlite:///{base / 'kmc.db'}",
                                   SoftwareStorageKey(secrets.token_bytes(32), "sk-test"),
                                   KmcConfig(required_approvals=2), audit=audit)
    link = InProcessKmc(kmc, kmc.authenticate(kmc.add_caller("ra", KmcRole.RA)))
    # the RA holds its ports only: the CA held to the RA's principal, the KMC as the RA's caller
    ra = RegistrationAuthority.open(ra_url or f"sqlite:///{base / 'ra.db'}", audit, ra_port(ca),
                                    link)
    for i, (name, roles) in enumerate(ROLES.items()):
        ra.add_officer(None, name, name.title(), PASSWORD, roles, person_id=person_of(i))
    token = ra.add_api_client(None, "station-1")
    return RaRig(base, ca, kmc, audit, ra, token)
