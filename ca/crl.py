"""CRLs, full and delta, as a pure function of the revoked entries (RFC 5280 §5).

A provincial CA revokes hundreds of thousands of certificates, so ``revokedCertificates`` is
written by ``sscard.der`` directly: one bytes join per entry, with the encoded times cached (many
revocations share a second). asn1crypto's object-per-node encoding needs minutes for a million
entries; this needs seconds. The few CRL extensions (CRL number, delta indicator, AKI, issuing
distribution point) are encoded by asn1crypto and spliced into the TBS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from asn1crypto import core, crl, x509

from ca.issuance import Issuer, algorithm_der
from sscard import der

_REASON_OID = core.ObjectIdentifier("2.5.29.21").dump()
_INVALIDITY_OID = core.ObjectIdentifier("2.5.29.24").dump()


@dataclass(frozen=True)
class RevokedItem:
    serial: int
    revoked_at: dt.datetime
    reason: int | None = None  # RFC 5280 CRLReason code; None or 0: no reasonCode extension
    invalidity_date: dt.datetime | None = None


class _TimeCache:
    """Encoded Time per whole second: a CRL's entries share far fewer seconds than entries."""

    def __init__(self, encode: object) -> None:
        self._encode = encode
        self._cache: dict[dt.datetime, bytes] = {}

    def __call__(self, when: dt.datetime) -> bytes:
        found = self._cache.get(when)
        if found is None:
            found = self._encode(when)  # type: ignore[operator]
            if len(self._cache) < 1_000_000:
                self._cache[when] = found
        return found


def encode_entries(items: Iterable[RevokedItem]) -> bytes:
    """The DER of ``revokedCertificates`` contents (the entries, without the outer SEQUENCE)."""
    time_of = _TimeCache(der.time)
    gtime_of = _TimeCache(der.generalized_time)
    reason_ext = {
        code: der.extension(_REASON_OID, der.enumerated(code)) for code in range(1, 11)
    }
    out: list[bytes] = []
    tlv = der.tlv
    seq = der.sequence
    integer = der.integer
    for item in items:
        exts = b""
        if item.reason:
            exts = reason_ext[item.reason]
        if item.invalidity_date is not None:
            exts += der.extension(_INVALIDITY_OID, gtime_of(item.invalidity_date))
        body = integer(item.serial) + time_of(item.revoked_at)
        if exts:
            body += tlv(0x30, exts)
        out.append(seq(body))
    return b"".join(out)


def encode_rows(rows: Iterable[tuple[str, Any, int | None, Any]]) -> bytes:
    """Like ``encode_entries``, straight from database rows: the serial as upper-case hex,
    times as datetimes (naive means UTC) or as the ISO text SQLite stores. No per-row objects
    and no per-row time formatting (a CRL's entries share far fewer seconds than entries),
    since a province-scale CRL has millions of rows."""
    times: dict[Any, bytes] = {}
    gtimes: dict[Any, bytes] = {}
    reason_ext = {
        code: der.extension(_REASON_OID, der.enumerated(code)) for code in range(1, 11)
    }
    tlv = der.tlv
    out: list[bytes] = []
    append = out.append
    for serial_hex, revoked_at, reason, invalidity in rows:
        serial = bytes.fromhex(serial_hex)
        if serial[0] & 0x80:
            serial = b"\x00" + serial
        when = times.get(revoked_at)
        if when is None:
            when = times[revoked_at] = der.time(_as_utc(revoked_at))
        body = b"\x02" + bytes((len(serial),)) + serial + when  # serials are <= 21 octets
        exts = reason_ext[reason] if reason else b""
        if invalidity is not None:
            gtime = gtimes.get(invalidity)
            if gtime is None:
                gtime = gtimes[invalidity] = der.extension(
                    _INVALIDITY_OID, der.generalized_time(_as_utc(invalidity)))
            exts += gtime
        if exts:
            body += b"\x30" + bytes((len(exts),)) + exts if len(exts) < 0x80 \
                else tlv(0x30, exts)
        append(b"\x30" + bytes((len(body),)) + body if len(body) < 0x80 else tlv(0x30, body))
    return b"".join(out)


def _as_utc(when: Any) -> dt.datetime:
    if isinstance(when, str):  # SQLite's stored text, read without SQLAlchemy's processing
        when = dt.datetime.fromisoformat(when)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _ext(name: str, value: object, critical: bool = False) -> bytes:
    return bytes(crl.TBSCertListExtension(
        {"extn_id": name, "critical": critical, "extn_value": value}).dump())


def crl_tbs(
    issuer: Issuer,
    entries_der: bytes,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    delta_base: int | None = None,
    distribution_point: str | None = None,
    freshest: str | None = None,
) -> bytes:
    """TBSCertList: version v2, the issuer's algorithm and name, times, entries, extensions."""
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    alg = issuer.signature_algorithm or issuer.key.default_signature_algorithm
    exts = [
        _ext("authority_key_identifier", {"key_identifier": issuer.key_id}),
        _ext("crl_number", number),
    ]
    if delta_base is not None:
        exts.append(_ext("delta_crl_indicator", delta_base, critical=True))
    if distribution_point:
        exts.append(_ext("issuing_distribution_point", {
            "distribution_point": x509.DistributionPointName(
                name="full_name",
                value=[x509.GeneralName(name="uniform_resource_identifier",
                                        value=distribution_point)]),
        }, critical=True))
    if freshest and delta_base is None:  # where the deltas of this full CRL are published
        exts.append(_ext("freshest_crl", [{
            "distribution_point": x509.DistributionPointName(
                name="full_name",
                value=[x509.GeneralName(name="uniform_resource_identifier", value=freshest)]),
        }]))
    return der.sequence(
        der.integer(1),  # v2
        algorithm_der(alg),
        issuer.subject_der,
        der.time(this_update),
        der.time(next_update),
        der.sequence(entries_der) if entries_der else b"",
        der.explicit(0, der.sequence(*exts)),
    )


def sign_crl(issuer: Issuer, tbs: bytes) -> bytes:
    alg = issuer.signature_algorithm or issuer.key.default_signature_algorithm
    return der.sequence(tbs, algorithm_der(alg), der.bit_string(issuer.key.sign(tbs, alg)))


def build_crl(
    issuer: Issuer,
    items: Iterable[RevokedItem] | bytes,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    delta_base: int | None = None,
    distribution_point: str | None = None,
    freshest: str | None = None,
) -> bytes:
    """A signed CRL (DER): full, or delta when ``delta_base`` names the base CRL number.
    ``items`` may be entries already encoded (``encode_rows``).
    A full CRL names in ``freshest`` (Freshest CRL, RFC 5280 §5.2.6) where its deltas are."""
    entries = items if isinstance(items, bytes) else encode_entries(items)
    tbs = crl_tbs(issuer, entries, number, this_update, next_update, delta_base,
                  distribution_point, freshest)
    return sign_crl(issuer, tbs)
