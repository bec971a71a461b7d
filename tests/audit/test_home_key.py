"""The data directory's audit signing key (``sscard.audit.scheduled.home_audit_key``), made on
first use: service workers that start together on a new data directory (the KMC's gunicorn
workers each open their audit log after the fork) all get one key, and the files left behind
are a key, its passphrase and its certificate that belong together. CI once lost a KMC this
way: two workers each wrote a passphrase and a key, and the next start read one worker's
passphrase with the other's key."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import stat
from pathlib import Path

import pytest

from sscard.audit.errors import AuditError
from sscard.audit.scheduled import CERT_FILE, KEY_FILE, PASS_FILE, home_audit_key

WORKERS = 6


def _first_start(home: str, ready: multiprocessing.synchronize.Barrier,
                 out: multiprocessing.Queue[bytes]) -> None:
    ready.wait(30)  # every worker looks for the key at the same moment
    _, cert = home_audit_key(home)
    out.put(cert)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("attempt", range(3))
def test_workers_starting_together_make_one_key(tmp_path: Path, attempt: int) -> None:
    home = tmp_path / "home"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(WORKERS)
    out: multiprocessing.Queue[bytes] = ctx.Queue()
    workers = [ctx.Process(target=_first_start, args=(str(home), ready, out))
               for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    certs = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert len(set(certs)) == 1, "the workers made different audit keys"
    # the next start reads what they left: the same certificate, its key under that passphrase
    key, cert = home_audit_key(home)
    assert cert == certs[0]
    assert key.public_key().spki_der() == _spki(cert)
    assert stat.S_IMODE((home / PASS_FILE).stat().st_mode) == 0o600
    assert not [p.name for p in (home / KEY_FILE).parent.iterdir() if p.name.startswith(".")]


def test_a_key_left_with_another_passphrase_is_named_not_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home_audit_key(home)
    key_before = (home / KEY_FILE).read_bytes()
    (home / PASS_FILE).write_text("not the passphrase\n")
    with pytest.raises(AuditError, match=r"audit signing key .*audit-key\.pem.*audit\.pass.*"
                                         r"wrong passphrase"):
        home_audit_key(home)
    assert (home / KEY_FILE).read_bytes() == key_before  # nothing overwritten
    assert (home / CERT_FILE).exists()


def _spki(cert_der: bytes) -> bytes:
    from asn1crypto import x509

    return bytes(x509.Certificate.load(cert_der).public_key.dump())

