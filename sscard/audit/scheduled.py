"""Signed checkpoints on a schedule, by default, for every served deployment.

A service (``ca serve``, ``kmc serve``, ``ra serve``, the all-in-one system) opens its audit log
with ``open_served_log``: the log gets the data directory's audit signing key (made on first
use, like the CA's generated passphrase: ``<home>/audit/audit-key.pem``, encrypted under
``<home>/secrets/audit.pass``, mode 0600; its self-signed certificate beside it, the anchor for
``sscard audit verify --cert``), a checkpoint interval, and a daemon thread that makes the
checkpoint when it is due even while nothing is appended. Several workers may each run the
timer: ``checkpoint_if_due`` re-checks under the log's lock, so one of them makes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from sscard.audit.errors import AuditError
from sscard.audit.log import AuditLog
from sscard.filelock import exclusive_lock
from sscard.keys.software import SoftwareKey
from sscard.periodic import Periodic

logger = logging.getLogger("sscard.audit")

#: seconds between scheduled checkpoints (when records came in meanwhile)
DEFAULT_CHECKPOINT_INTERVAL = 300.0
KEY_FILE = Path("audit") / "audit-key.pem"
CERT_FILE = Path("audit") / "audit-cert.pem"
PASS_FILE = Path("secrets") / "audit.pass"


def make_audit_key(algorithm: str = "sm2", subject: str = "CN=Audit Log Signing,C=CN",
                   days: int = 3650) -> tuple[SoftwareKey, bytes]:
    """A new audit signing key and a self-signed certificate (DER) for it."""
    from sscard.x509.builder import CertificateBuilder
    from sscard.x509.names import parse_name

    key = SoftwareKey.generate(algorithm)
    name = parse_name(subject)
    now = dt.datetime.now(dt.UTC)
    cert = (
        CertificateBuilder().subject(name).issuer(name).public_key(key.public_key())
        .serial_number(secrets.randbits(63) + 1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension("key_usage", {"digital_signature", "non_repudiation"}, critical=True)
        .sign(key)
    )
    return key, bytes(cert.dump())


def home_audit_key(home: str | os.PathLike[str]) -> tuple[SoftwareKey, bytes]:
    """The data directory's audit signing key and certificate, made on first use.

    Workers that start together on a new data directory (each opens its audit log after the
    fork) take turns under a lock on the key's directory, so one of them makes the key and the
    rest read it. The key file is written last and each file is renamed into place whole, so a
    key file means its passphrase and certificate are there and belong to it."""
    home = Path(home)
    key_path = home / KEY_FILE
    if not key_path.exists():
        for directory in (key_path.parent, (home / PASS_FILE).parent):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(key_path.parent, directory=True):
            if not key_path.exists():  # not made by a worker that held the lock first
                _make_home_audit_key(home)
    return _load_home_audit_key(home)


def _load_home_audit_key(home: Path) -> tuple[SoftwareKey, bytes]:
    """The key and certificate as made; a set that does not load is named, never replaced (it
    signed the log's checkpoints so far)."""
    from sscard.crypto.errors import CryptoError
    from sscard.x509.parse import load_certificate

    try:
        lines = (home / PASS_FILE).read_text(encoding="utf-8").splitlines()
        if not lines:
            raise ValueError(f"{home / PASS_FILE} is empty")
        cert = load_certificate((home / CERT_FILE).read_bytes())
        return SoftwareKey.load(home / KEY_FILE, lines[0].encode()), bytes(cert.dump())
    except (CryptoError, OSError, ValueError) as exc:
        raise AuditError(f"the audit signing key {home / KEY_FILE} (passphrase in "
                         f"{home / PASS_FILE}, certificate {home / CERT_FILE}) cannot be "
                         f"loaded: {exc}") from exc


def _make_home_audit_key(home: Path) -> None:
    from sscard.secrets_input import write_private_file
    from sscard.x509.pem import der_to_pem

    passphrase_text = secrets.token_urlsafe(32)
    key, cert_der = make_audit_key()
    cert_path = home / CERT_FILE
    partial = cert_path.with_name(f".{cert_path.name}.tmp{os.getpid()}")
    partial.write_bytes(der_to_pem(cert_der, "CERTIFICATE"))  # public: the auditors' anchor
    os.replace(partial, cert_path)
    write_private_file(home / PASS_FILE, passphrase_text + "\n")
    key.store(home / KEY_FILE, passphrase_text.encode())  # last: its presence means all three


class CheckpointTimer(Periodic):
    """Calls ``log.checkpoint_if_due()`` every ``interval`` seconds until ``stop()``; a failure
    is logged loudly (the records are safe; only the checkpoint is late)."""

    def __init__(self, log: AuditLog, interval: float) -> None:
        super().__init__(log.checkpoint_if_due, interval, name="audit-checkpoints",
                         what="scheduled audit checkpoint",
                         errors=(AuditError, OSError, ValueError), log=logger)
        self.log = log


def open_served_log(url: str, home: str | os.PathLike[str], *,
                    interval: float = DEFAULT_CHECKPOINT_INTERVAL, **kwargs: Any) -> AuditLog:
    """The audit log of a served deployment: signed checkpoints every ``interval`` seconds
    (with a timer thread) and every 1000 records, with the data directory's audit key."""
    key, cert = home_audit_key(home)
    log = AuditLog.open(url, signer=key, certificate=cert, checkpoint_interval=interval,
                        **kwargs)
    try:
        log.checkpoint_if_due()  # what came before this start (set-up, a previous run)
    except AuditError as exc:
        logger.warning("audit checkpoint at start failed: %s", exc)
    CheckpointTimer(log, interval).start()  # a daemon: it ends with the process
    return log
