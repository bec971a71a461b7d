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
    """The data directory's audit signing key and certificate, made on first use."""
    from sscard.x509.parse import load_certificate
    from sscard.x509.pem import der_to_pem

    home = Path(home)
    key_path, cert_path, pass_path = home / KEY_FILE, home / CERT_FILE, home / PASS_FILE
    if key_path.exists():
        passphrase = pass_path.read_text(encoding="utf-8").splitlines()[0].encode()
        cert = load_certificate(cert_path.read_bytes())
        return SoftwareKey.load(key_path, passphrase), bytes(cert.dump())
    for directory in (key_path.parent, pass_path.parent):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase_text = secrets.token_urlsafe(32)
    fd = os.open(pass_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(passphrase_text + "\n")
    key, cert_der = make_audit_key()
    key.store(key_path, passphrase_text.encode())
    cert_path.write_bytes(der_to_pem(cert_der, "CERTIFICATE"))
    return key, cert_der


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
