"""The compiled SM2 binding (sscard/crypto/_libcrypto_ffi.py, committed) is what the
declarations in _libcrypto_cdef.py compile to: a change to one without the other fails here."""

from __future__ import annotations

from pathlib import Path

from sscard.crypto import _libcrypto_cdef


def test_the_committed_binding_matches_its_declarations(tmp_path: Path) -> None:
    fresh = tmp_path / "_libcrypto_ffi.py"
    _libcrypto_cdef.emit(fresh)
    assert fresh.read_text() == _libcrypto_cdef.TARGET.read_text(), (
        "run python -m sscard.crypto._libcrypto_cdef and commit _libcrypto_ffi.py")


def test_the_binding_loads_without_pycparser() -> None:
    import subprocess
    import sys

    probe = ("import sys, sscard.crypto._libcrypto as b; "
             "assert b.lib.OpenSSL_version_num() >= 0x30000000; "
             "print('pycparser' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
