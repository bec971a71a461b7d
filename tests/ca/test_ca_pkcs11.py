"""CA keys on a PKCS#11 token (SoftHSM2): an ECDSA hierarchy whose root and issuing keys never
leave the token; an SM2 key on a token without SM2 mechanisms is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.authority import CertificateAuthority, initialise
from ca.records import Status
from sscard.audit import AuditLog
from sscard.keys.base import OperationNotSupported
from sscard.keys.pkcs11 import Pkcs11Key
from sscard.keys.software import SoftwareKey
from sscard.x509.verify import verify_certificate_signature, verify_crl_signature
from tests.ca.conftest import HOLDER
from tests.softhsm import SoftHsmToken, create_token


@pytest.fixture(scope="module")
def token() -> SoftHsmToken:
    return create_token("ca-keys")


def _config(path: Path, token: SoftHsmToken, algorithm: str) -> Path:
    def section(table: str, label: str) -> str:
        return (f'[{table}.pkcs11]\nmodule = "{token.module}"\ntoken = "{token.label}"\n'
                f'label = "{label}"\npin_file = "{token.pin_file}"\n')

    path.write_text(f"""\
[root]
name = "root"
subject = "CN=HSM Root,C=CN"
algorithm = "{algorithm}"
{section("root", f"root-{algorithm}")}
[[issuing]]
name = "issuing"
subject = "CN=HSM Issuing,C=CN"
algorithm = "{algorithm}"
{section("issuing", f"issuing-{algorithm}")}""", encoding="utf-8")
    return path


def test_ecdsa_hierarchy_with_keys_on_the_token(tmp_path: Path, token: SoftHsmToken) -> None:
    home = tmp_path / "home"
    initialise(home, _config(tmp_path / "ca.toml", token, "ec-p256"), b"unused for hsm keys",
               audit=AuditLog.at_home(home))
    assert not (home / "ca" / "keys").exists()  # no key material on disk
    with CertificateAuthority.open(home, audit=AuditLog.at_home(home)) as ca:
        assert isinstance(ca.issuer().key, Pkcs11Key)
        issuing, root = ca.chain()
        verify_certificate_signature(issuing, root)
        holder = SoftwareKey.generate("ec-p256")
        issued = ca.issue_for_public_key(holder.public_key(), HOLDER, "cardholder-sign")
        verify_certificate_signature(issued.certificate, issuing)
        ca.revoke(issued.serial, "keyCompromise")
        crl = ca.build_crl()
        verify_crl_signature(crl, issuing)
        assert ca.status(issued.serial).status is Status.REVOKED


def test_sm2_on_a_token_without_sm2_is_refused(tmp_path: Path, token: SoftHsmToken) -> None:
    with pytest.raises(OperationNotSupported, match="SM2"):
        initialise(tmp_path / "home", _config(tmp_path / "ca.toml", token, "sm2"), b"x",
                   audit=AuditLog.at_home(tmp_path / "home"))
    # the refused init left nothing behind: a second attempt meets the same clear error
    assert not any((tmp_path / "home").rglob("*.pass"))
    assert not (tmp_path / "home" / "ca.toml").exists()
    with pytest.raises(OperationNotSupported, match="SM2"):
        initialise(tmp_path / "home", _config(tmp_path / "ca.toml", token, "sm2"), None,
                   audit=AuditLog.at_home(tmp_path / "home"))
