"""Shared builders for KMC tests: a KMC over a database URL with a software storage key."""

from __future__ import annotations

import secrets

from keymgmt.service import KeyManagementCentre, KmcConfig, Principal, Role
from keymgmt.storage import SoftwareStorageKey
from sscard.audit import AuditLog


def new_kmc(url: str, approvals: int = 2) -> KeyManagementCentre:
    """The audit log lives in the KMC's own database (its tables are prefixed ``audit_``)."""
    key = SoftwareStorageKey(secrets.token_bytes(32), "sk-test")
    return KeyManagementCentre.open(url, key, KmcConfig(required_approvals=approvals),
                                    audit=AuditLog.open(url))


def principals(kmc: KeyManagementCentre) -> dict[str, Principal]:
    """Registers ca, ra, officers o1..o4 and an auditor; returns them authenticated."""
    out = {}
    for name, role in [("ca", Role.CA), ("ra", Role.RA), ("o1", Role.OFFICER),
                       ("o2", Role.OFFICER), ("o3", Role.OFFICER), ("o4", Role.OFFICER),
                       ("auditor", Role.AUDITOR)]:
        out[name] = kmc.authenticate(kmc.add_caller(name, role))
    return out
