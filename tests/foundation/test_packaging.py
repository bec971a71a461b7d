"""Packaging (issue 11 item 9): a business system that only signs and verifies installs the
core without Flask, gunicorn, pyscard or python-pkcs11. Shown in a process where those modules
cannot be imported (a meta-path blocker): the library signs and verifies, and the command line
names the extra a command needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the modules of the [server], [card] and [hsm] extras
BLOCKED = ("flask", "werkzeug", "gunicorn", "smartcard", "pkcs11", "argon2", "psycopg")

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys

    BLOCKED = {BLOCKED!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
""")


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_the_blocker_blocks() -> None:
    """The check itself: an import of a blocked module fails in that process."""
    proc = run_blocked("import flask")
    assert proc.returncode != 0 and "No module named 'flask'" in proc.stderr


def test_sign_and_verify_without_the_extras() -> None:
    proc = run_blocked("""
        import datetime as dt, sys
        import sscard.crypto, sscard.cms, sscard.validation
        from sscard.cms.signed import sign
        from sscard.cms.verify import verify
        from sscard.keys.software import SoftwareKey
        from sscard.x509.builder import CertificateBuilder
        from sscard.x509.names import parse_name

        from sscard.x509.extensions import key_identifier

        now = dt.datetime.now(dt.UTC)

        def issue(subject, key, issuer_name, issuer_key, serial, exts):
            builder = (CertificateBuilder().subject(parse_name(subject)).issuer(issuer_name)
                       .public_key(key.public_key()).serial_number(serial)
                       .not_valid_before(now - dt.timedelta(minutes=5))
                       .not_valid_after(now + dt.timedelta(days=1))
                       .add_extension("key_identifier", key_identifier(key.public_key()))
                       .add_extension("authority_key_identifier",
                                      {"key_identifier": key_identifier(issuer_key.public_key())}))
            for name, value, critical in exts:
                builder = builder.add_extension(name, value, critical)
            return builder.sign(issuer_key)

        root_key = SoftwareKey.generate("sm2")
        root_name = parse_name("CN=根CA,C=CN")
        root = issue("CN=根CA,C=CN", root_key, root_name, root_key, 1, [
            ("basic_constraints", {"ca": True}, True),
            ("key_usage", {"key_cert_sign", "crl_sign"}, True)])
        key = SoftwareKey.generate("sm2")
        cert = issue("CN=业务系统,C=CN", key, root.subject, root_key, 7, [
            ("key_usage", {"digital_signature"}, True)])
        signed = sign(b"settlement 42", key, cert)
        report = verify(signed, [root])
        assert report.valid, report
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert loaded == [], loaded
        print("signed and verified")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "signed and verified" in proc.stdout


@pytest.mark.parametrize(("argv", "extra"), [
    (["ca", "serve"], "server"),
    (["kmc", "serve"], "server"),
    (["card", "info"], "card"),
    (["key", "list", "--token", "x", "--no-login"], "hsm"),
])
def test_the_cli_names_the_missing_extra(tmp_path: Path, argv: list[str], extra: str) -> None:
    proc = run_blocked("""
        import sys
        from sscard.cli import main
        sys.argv = ["sscard", *sys.argv[1:]]
        main()
    """, "--home", str(tmp_path / "home"), *argv)
    assert proc.returncode == 1, proc.stderr
    assert f"pip install 'sscard-pki[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_every_group_without_the_extras() -> None:
    proc = run_blocked("""
        import sys
        from sscard.cli import main
        sys.argv = ["sscard", "--help"]
        main()
    """)
    assert proc.returncode == 0, proc.stderr
    for group in ("ca", "kmc", "ra", "card", "gateway", "audit", "sign", "verify"):
        assert f"  {group} " in proc.stdout


def test_core_dependencies_leave_the_extras_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("flask", "gunicorn", "pyscard", "python-pkcs11", "psycopg", "argon2"):
        assert name not in core
    extras = project["optional-dependencies"]
    assert any("[server,card,hsm]" in d for d in extras["dev"])  # make installs them all
