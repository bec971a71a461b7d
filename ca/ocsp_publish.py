"""OCSP at the edge: pre-signed RFC 5019 responses as files an ordinary HTTP server serves.

A relying party that follows RFC 5019 asks about one certificate with a nonce-less request whose
bytes depend only on the certificate (one CertID, SHA-1, hash parameters NULL: what OpenSSL, Go
and NSS send), and GETs ``/ocsp/<base64 of those bytes>``. Those answers are signed here ahead of
time and written as files named by that path, so that nginx (deploy/nginx/ocsp.conf) serves
them as static files at its own speed and hands everything else (POST, nonces, other hash
algorithms, certificates issued since) to the live responder (``sscard ca serve``).

Layout under the publishing directory, for each unexpired certificate of the CA::

    ocsp/<standard base64>     ("/" in base64 makes subdirectories; nginx decodes %2F, %2B, %3D;
                                one ending in "/" is written as ".../_")
    ocsp/<base64url>           (for clients that send the URL-safe alphabet)

Freshness: each answer is valid for ``validity`` and signed again once ``refresh_fraction`` of it
has passed. Revocation: ``refresh`` asks the CA's revocation generation (one primary-key read);
when it moved, the certificates whose status changed are signed again at once, before anything
else. ``watch`` calls ``refresh`` every ``interval`` seconds, so a revocation reaches the edge
within one interval. Files are replaced atomically (written beside, then renamed), so nginx
never serves half a response.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from asn1crypto import core
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509
from sqlalchemy import select

from ca.ocsp import OcspResponder
from ca.ocsp_cache import REFRESH_FRACTION
from ca.records import CertificateStatus, RevocationReason, Status
from sscard.crypto.hashes import digest
from sscard.x509.values import Serial, serial_to_hex

log = logging.getLogger(__name__)

#: how long a published answer is valid (nextUpdate - thisUpdate); signed again at half of it
DEFAULT_VALIDITY = timedelta(days=1)
#: the subdirectory the GET paths live under (``/ocsp/<base64>``)
URL_PREFIX = "ocsp"


def canonical_request(issuer: asn1x509.Certificate, serial: int) -> bytes:
    """The nonce-less one-certificate OCSPRequest an RFC 5019 client sends for ``serial``."""
    cert_id = {
        # parameters NULL, as clients send them (asn1crypto would leave them out)
        "hash_algorithm": {"algorithm": "sha1", "parameters": core.Null()},
        "issuer_name_hash": digest("sha1", issuer.subject.dump()),
        "issuer_key_hash": digest("sha1", bytes(issuer.public_key["public_key"])),
        "serial_number": serial,
    }
    request = asn1ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cert_id}]}})
    return bytes(request.dump())


def request_paths(request_der: bytes) -> list[str]:
    """The file names (relative to the publishing directory) a GET for ``request_der`` maps to."""
    standard = base64.b64encode(request_der).decode("ascii")
    if standard.endswith("/"):
        # a name cannot end in "/": the file is "_" in that directory ("_" is not in the
        # standard alphabet); nginx tries ${uri}_ after $uri
        standard += "_"
    url_safe = base64.urlsafe_b64encode(request_der).decode("ascii")
    names = [standard] if standard == url_safe else [standard, url_safe]
    return [f"{URL_PREFIX}/{name}" for name in names]


@dataclass(frozen=True)
class _Published:
    status: tuple[Any, ...]  # what the answer says (status, time, reason, invalidity date)
    refresh_at: datetime
    paths: tuple[str, ...]


def _status_key(status: CertificateStatus) -> tuple[Any, ...]:
    return (status.status, status.revocation_time, status.reason, status.invalidity_date)


class EdgePublisher:
    """Keeps a directory of pre-signed answers for every unexpired certificate of one CA.

    ``authority`` is a ``ca.authority.CertificateAuthority`` opened with its passphrase (the
    delegated OCSP responder key signs). Not thread-safe: one publisher per directory.
    """

    def __init__(self, authority: Any, directory: Path, *,
                 validity: timedelta = DEFAULT_VALIDITY,
                 refresh_fraction: float = REFRESH_FRACTION) -> None:
        if validity <= timedelta(0):
            raise ValueError("the validity of published answers must be positive")
        if not 0 < refresh_fraction <= 1:
            raise ValueError("refresh_fraction must be in (0, 1]")
        self.authority = authority
        self.directory = directory
        self.validity = validity
        self.fresh_for = validity * refresh_fraction
        self._published: dict[int, _Published] = {}
        self._statuses: dict[int, CertificateStatus] = {}
        self._generation: int | None = None
        self._last_id = 0
        self._responder: OcspResponder | None = None

    # -- the responder ---------------------------------------------------------------------

    def _responder_for(self, now: datetime) -> OcspResponder:
        responder = self._responder
        if responder is None or now + self.validity >= _not_after(responder.signer_cert):
            signer = self.authority.ocsp_signer()  # a fresh one shortly before expiry
            responder = OcspResponder(signer.key, signer.certificate, self.authority.certificate,
                                      self._status, validity=self.validity)
            self._responder = responder
        return responder

    def _status(self, serial: int) -> CertificateStatus:
        return self._statuses[serial]

    # -- reading the CA's database ---------------------------------------------------------

    def _rows(self, *conditions: Any) -> list[Any]:
        from ca.storage import CertificateRecord as C

        query = select(C.id, C.serial, C.status, C.revoked_at, C.revocation_reason,
                       C.invalidity_date, C.not_after).where(
            C.issuer_id == self.authority.database_id, *conditions)
        with self.authority.engine.connect() as conn:
            return list(conn.execute(query))

    @staticmethod
    def _to_status(row: Any) -> CertificateStatus:
        serial = Serial.parse(row.serial)
        if row.status is Status.REVOKED:
            return CertificateStatus(serial, Status.REVOKED, row.revoked_at,
                                     RevocationReason(row.revocation_reason or 0),
                                     row.invalidity_date)
        return CertificateStatus(serial, Status.GOOD)

    # -- publishing ------------------------------------------------------------------------

    def publish_all(self, now: datetime | None = None) -> int:
        """Sign and write an answer for every unexpired certificate whose file is missing,
        stale or says something else than the database; remove those of expired ones.
        Returns how many answers were signed."""
        moment = _now(now)
        self._responder_for(moment)  # first: a new responder certificate is a row to publish
        self._generation = self.authority.revocation_generation()
        rows = self._rows()
        self._last_id = max((row.id for row in rows), default=self._last_id)
        live = [row for row in rows if row.not_after > moment]
        live_serials = {Serial.parse(row.serial) for row in live}
        for serial in [s for s in self._published if s not in live_serials]:
            self._remove(serial)
        return self._publish(live, moment, only_changed=False)

    def refresh(self, now: datetime | None = None) -> int:
        """What ``watch`` does each interval: at once the certificates whose revocation status
        changed (when the CA's revocation generation moved) and those issued since, then any
        answer due for re-signing. Returns how many answers were signed."""
        from ca.storage import CertificateRecord as C

        moment = _now(now)
        if self._generation is None:
            return self.publish_all(moment)
        signed = 0
        generation = self.authority.revocation_generation()
        if generation != self._generation:
            # read after the generation: a revocation landing meanwhile moves it again
            revoked = self._rows(C.status == Status.REVOKED)
            revoked_serials = {Serial.parse(row.serial) for row in revoked}
            was_revoked = [s for s, p in self._published.items()
                           if p.status[0] is Status.REVOKED and s not in revoked_serials]
            if was_revoked:  # no longer revoked (a hold released)
                revoked += self._rows(C.serial.in_([serial_to_hex(s) for s in was_revoked]))
            candidates = revoked
            signed += self._publish([r for r in candidates if r.not_after > moment], moment,
                                    only_changed=True)
            self._generation = generation
        new = self._rows(C.id > self._last_id)
        if new:
            self._last_id = max(row.id for row in new)
            signed += self._publish([r for r in new if r.not_after > moment], moment,
                                    only_changed=True)
        if any(p.refresh_at <= moment for p in self._published.values()):
            signed += self.publish_all(moment)
        return signed

    def watch(self, interval: float, stop: threading.Event) -> None:
        """``refresh`` every ``interval`` seconds until ``stop`` is set; a failed round (the
        database away) is logged and tried again, the files already published stay."""
        while not stop.is_set():
            try:
                signed = self.refresh()
                if signed:
                    log.info("signed %d OCSP answers into %s", signed, self.directory)
            except Exception:
                log.exception("OCSP publishing round failed; retrying in %.1f s", interval)
            stop.wait(interval)

    def _publish(self, rows: Iterable[Any], now: datetime, *, only_changed: bool) -> int:
        responder = self._responder_for(now)
        signed = 0
        for row in rows:
            status = self._to_status(row)
            serial = status.serial
            published = self._published.get(serial)
            key = _status_key(status)
            if published is not None and published.status == key and (
                    only_changed or now < published.refresh_at):
                continue
            self._statuses[serial] = status
            request = canonical_request(self.authority.certificate, serial)
            response, next_update = responder.respond_with_expiry(request, now)
            self._statuses.pop(serial, None)
            if next_update is None:  # an error answer: never published
                log.error("OCSP answer for serial %X could not be made; not published", serial)
                continue
            paths = request_paths(request)
            for path in paths:
                self._write(path, response)
            self._published[serial] = _Published(
                key, min(now + self.fresh_for, next_update), tuple(paths))
            signed += 1
        return signed

    def _write(self, relative: str, data: bytes) -> None:
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(temporary, 0o644)  # public answers, read by the web server's user
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _remove(self, serial: int) -> None:
        published = self._published.pop(serial)
        for path in published.paths:
            (self.directory / path).unlink(missing_ok=True)


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def _not_after(certificate: asn1x509.Certificate) -> datetime:
    value: datetime = certificate["tbs_certificate"]["validity"]["not_after"].native
    return value


# -- sscard ca ocsp-publish ---------------------------------------------------------------

@click.command("ocsp-publish")
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory the web server serves (deploy/nginx/ocsp.conf: its root).")
@click.option("--ca", "ca_name", default=None, help="Issuing CA (default: the first).")
@click.option("--validity-hours", type=click.IntRange(1, 24 * 7), default=24,
              show_default=True,
              help="How long each answer is valid; it is signed again at half of it.")
@click.option("--watch", is_flag=True,
              help="Keep running: revocations and new certificates are published within "
                   "--interval seconds, answers re-signed before they go stale.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True,
              help="Seconds between checks of the CA database with --watch.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="CA key passphrase (default: the one stored by ca init).")
@click.option("--passphrase-stdin", is_flag=True, help="Read the passphrase from stdin.")
@click.pass_context
def command(ctx: click.Context, directory: Path, ca_name: str | None, validity_hours: int,
            watch: bool, interval: float, passphrase_file: Path | None,
            passphrase_stdin: bool) -> None:
    """Write pre-signed OCSP answers as files for nginx to serve (deploy/nginx/ocsp.conf).

    One RFC 5019 answer per unexpired certificate, in a file named by its GET path."""
    import signal

    from ca.cli import _ca_errors, _open, _passphrase

    @_ca_errors
    def run() -> None:
        with _open(ctx, _passphrase(passphrase_file, passphrase_stdin), ca_name) as authority:
            publisher = EdgePublisher(authority, directory,
                                      validity=timedelta(hours=validity_hours))
            try:
                signed = publisher.publish_all()
            except OSError as exc:
                raise click.ClickException(f"cannot write to {directory}: {exc}") from None
            click.echo(f"published {signed} OCSP answers of CA {authority.name} "
                       f"under {directory / URL_PREFIX}", err=True)
            if watch:
                stop = threading.Event()
                for number in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(number, lambda *_: stop.set())
                logging.basicConfig(level=logging.INFO,
                                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
                publisher.watch(interval, stop)

    run()
