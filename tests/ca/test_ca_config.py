"""Hierarchy configuration: bad files are refused with the reason; several issuing CAs of
mixed algorithms live in one data directory, each with its own serial space and chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.authority import CertificateAuthority, initialise
from ca.config import load_config, parse_config
from ca.errors import CAError, ConfigError, NotInitialised
from sscard.audit import AuditLog
from sscard.keys.software import SoftwareKey
from sscard.x509.verify import verify_certificate_signature
from tests.ca.conftest import HOLDER

ROOT = '[root]\nname = "root"\nsubject = "CN=R,C=CN"\n'
ISSUING = '[[issuing]]\nname = "{name}"\nsubject = "CN={name},C=CN"\nalgorithm = "{alg}"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = ", "not valid TOML"),
        (ROOT, "at least one [[issuing]]"),
        (ROOT + "colour = 1\n" + ISSUING.format(name="i", alg="sm2"), "unknown key(s) colour"),
        (ROOT + ISSUING.format(name="root", alg="sm2"), "used twice: root"),
        (ROOT + ISSUING.format(name="i", alg="ed25519"), "ed25519 CAs are not supported"),
        (ROOT + ISSUING.format(name="i", alg="dsa"), "unknown key algorithm 'dsa'"),
        (ROOT + ISSUING.format(name="bad name", alg="sm2"), "must be letters, digits"),
        (ROOT.replace("CN=R,C=CN", "CN=R,C=China") + ISSUING.format(name="i", alg="sm2"),
         "two-letter"),
        (ROOT + ISSUING.format(name="i", alg="sm2") + "validity_days = true\n",
         "'validity_days' must be int"),
        (ROOT + ISSUING.format(name="i", alg="sm2") + "offline = true\n", "unknown key"),
        (ROOT + ISSUING.format(name="i", alg="sm2") + "[issuing.pkcs11]\nmodule = 'm'\n",
         "'token' is required"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "h.toml")
    assert message in str(err.value) and "h.toml" in str(err.value)


def test_missing_config_file_and_uninitialised_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(NotInitialised, match="ca init"):
        CertificateAuthority.open(tmp_path, audit=AuditLog.at_home(tmp_path))


def test_two_issuing_cas_of_different_algorithms(tmp_path: Path) -> None:
    config = tmp_path / "h.toml"
    config.write_text(ROOT + ISSUING.format(name="cards", alg="sm2")
                      + ISSUING.format(name="systems", alg="ec-p256"), encoding="utf-8")
    initialise(tmp_path / "home", config, b"pass phrase here",
               audit=AuditLog.at_home(tmp_path / "home"))
    with CertificateAuthority.open(tmp_path / "home", b"pass phrase here",
                                   audit=AuditLog.at_home(tmp_path / "home")) as cards, \
            CertificateAuthority.open(tmp_path / "home", b"pass phrase here",
                                      "systems",
                                          audit=AuditLog.at_home(tmp_path / "home")) as systems:
        assert cards.name == "cards" and systems.name == "systems"
        assert cards.chain()[1].dump() == systems.chain()[1].dump()  # one root
        key = SoftwareKey.generate("rsa2048")
        a = cards.issue_for_public_key(key.public_key(), HOLDER, "cardholder-sign")
        b = systems.issue_for_public_key(key.public_key(), "CN=医保结算系统,O=医保局",
                                         "business-system")
        verify_certificate_signature(a.certificate, cards.certificate)
        verify_certificate_signature(b.certificate, systems.certificate)
        # each CA answers only for its own serials
        assert systems.status(a.serial).status.value == "unknown"
        with pytest.raises(CAError, match="never issued by CA systems"):
            systems.revoke(a.serial, "superseded")
    with pytest.raises(CAError, match="no CA named 'other'"):
        CertificateAuthority.open(tmp_path / "home", b"x", "other",
                                  audit=AuditLog.at_home(tmp_path / "home"))
