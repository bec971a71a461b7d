"""Start-up of the common commands (issue 16 item 5): ``sscard verify`` of a real signature
loads neither the envelope code, nor requests (nothing is fetched), nor pycparser (the SM2
binding is compiled ahead of time); ``sscard x509 verify --help`` does not load the validator;
``verify`` stays sscard.cms's function (every lazy package's names: tests/cli/test_startup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sscard.validation import cli as validation_cli
from sscard.validation import usage, validator
from tests.cli.test_startup import ROOT


def loaded_modules(*args: str | Path, exit_code: int = 0) -> set[str]:
    """Every module in sys.modules when ``sscard ARGS`` exits (python -X importtime does not
    see modules loaded through importlib, as the lazy command tables load theirs)."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write('\\n'.join(sorted(sys.modules))))\n"
             "from sscard.cli import main\n"
             "sys.argv = ['sscard', *sys.argv[1:]]\n"
             "main()\n")
    proc = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == exit_code, proc.stderr
    names = set(proc.stderr.splitlines())
    assert "click" in names and "sscard.cli" in names
    return names


def _is_under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_verify_of_a_real_signature_loads_only_what_it_uses(tmp_path: Path) -> None:
    key, cert, data, signed = (tmp_path / n for n in ("k.pem", "c.pem", "data", "s.p7s"))
    data.write_bytes(b"start-up\n")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Start-up Signer",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "cms", "-sign", "-in", data, "-signer", cert, "-inkey", key,
                    "-outform", "DER", "-out", signed, "-nodetach"], check=True,
                   capture_output=True, timeout=60)
    names = loaded_modules("verify", signed, "--trust", cert, exit_code=1)
    assert "sscard.validation.validator" in names  # it did validate the signer's path
    unwanted = sorted(m for m in names if _is_under(
        m, "sscard.cms.enveloped", "requests", "urllib3", "pycparser", "cffi.cparser",
        "sscard.fetch_pyhanko", "sqlalchemy", "flask"))
    assert unwanted == []


def test_x509_verify_help_does_not_load_the_validator() -> None:
    names = loaded_modules("x509", "verify", "--help")
    assert "sscard.validation.cli" in names
    heavy = sorted(m for m in names if _is_under(
        m, "sscard.validation.validator", "pyhanko_certvalidator", "asn1crypto",
        "cryptography", "sscard.crypto._libcrypto"))
    assert heavy == []


def test_the_x509_verify_choices_are_the_enums() -> None:
    assert validation_cli.PURPOSES == tuple(p.value for p in usage.Purpose)
    assert validation_cli.REVOCATION_MODES == tuple(m.value for m in validator.RevocationMode)
    assert validation_cli.TRUST_MODES == tuple(m.value for m in validator.TrustMode)
    assert validation_cli.PROFILES == tuple(p.value for p in validator.Profile)


def test_sscard_cms_verify_stays_the_function() -> None:
    """``verify`` is a submodule of sscard.cms and the function it exports: loading the
    submodule (directly, or through another name) must not rebind the package's name."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sscard.cms.verify\nimport sscard.cms as p\n"
         "from sscard.cms import Verifier, verify\n"
         "assert callable(verify) and verify is p.verify and verify.__name__ == 'verify'\n"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
