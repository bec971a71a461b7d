"""Human-readable descriptions of certificates, CSRs and CRLs (Chinese names intact)."""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import crl, csr, x509

from sscard.x509.names import format_name


def _hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def _key_desc(spki: Any) -> str:
    algo = spki["algorithm"]["algorithm"].native
    if algo == "ec":
        params = spki["algorithm"]["parameters"]
        curve = params.chosen.native if params.name == "named" else "explicit"
        return f"EC ({curve}), {len(spki['public_key'].native)} byte point"
    if algo == "rsa":
        return f"RSA {spki['public_key'].parsed['modulus'].native.bit_length()} bits"
    return str(algo)


def _value_text(value: Any) -> str:
    if isinstance(value, bytes):
        return _hex(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | set | tuple):
        return "; ".join(_value_text(v) for v in value)
    return str(value)


def _extensions(exts: Any, indent: str = "    ") -> list[str]:
    lines = []
    for ext in exts or []:
        crit = " (critical)" if ext["critical"].native else ""
        name = ext["extn_id"].native
        try:
            value = _value_text(ext["extn_value"].parsed.native)
        except (ValueError, TypeError):
            value = _hex(ext["extn_value"].contents)
        lines.append(f"{indent}{name}{crit}: {value}")
    return lines


def describe_certificate(cert: x509.Certificate) -> str:
    tbs = cert["tbs_certificate"]
    lines = [
        "Certificate",
        f"  Serial:     {tbs['serial_number'].native:X}",
        f"  Signature:  {cert['signature_algorithm']['algorithm'].native}",
        f"  Issuer:     {format_name(tbs['issuer'])}",
        f"  Subject:    {format_name(tbs['subject'])}",
        f"  Not before: {tbs['validity']['not_before'].native.isoformat()}",
        f"  Not after:  {tbs['validity']['not_after'].native.isoformat()}",
        f"  Public key: {_key_desc(tbs['subject_public_key_info'])}",
        # what the gateway registers a business system by (systems.<name>.certificates)
        f"  SHA-256:    {hashlib.sha256(cert.dump()).hexdigest()}",
    ]
    ext_lines = _extensions(tbs["extensions"])
    if ext_lines:
        lines.append("  Extensions:")
        lines.extend(ext_lines)
    return "\n".join(lines)


def describe_csr(req: csr.CertificationRequest) -> str:
    info = req["certification_request_info"]
    lines = [
        "Certificate request",
        f"  Subject:    {format_name(info['subject'])}",
        f"  Signature:  {req['signature_algorithm']['algorithm'].native}",
        f"  Public key: {_key_desc(info['subject_pk_info'])}",
    ]
    for attr in info["attributes"]:
        if attr["type"].native == "extension_request":
            lines.append("  Requested extensions:")
            for exts in attr["values"]:
                lines.extend(_extensions(exts))
        else:
            lines.append(f"  Attribute {attr['type'].native}: {_value_text(attr['values'].native)}")
    return "\n".join(lines)


def describe_crl(cl: crl.CertificateList) -> str:
    tbs = cl["tbs_cert_list"]
    nxt = tbs["next_update"].native
    revoked = tbs["revoked_certificates"]
    lines = [
        "Certificate revocation list",
        f"  Issuer:      {format_name(tbs['issuer'])}",
        f"  Signature:   {cl['signature_algorithm']['algorithm'].native}",
        f"  This update: {tbs['this_update'].native.isoformat()}",
        f"  Next update: {nxt.isoformat() if nxt else '-'}",
    ]
    ext_lines = _extensions(tbs["crl_extensions"])
    if ext_lines:
        lines.append("  Extensions:")
        lines.extend(ext_lines)
    lines.append(f"  Revoked certificates: {len(revoked)}")
    for entry in list(revoked)[:50]:
        reason = ""
        for ext in entry["crl_entry_extensions"] or []:
            if ext["extn_id"].native == "crl_reason":
                reason = f" reason={ext['extn_value'].native}"
        lines.append(f"    {entry['user_certificate'].native:X} "
                     f"{entry['revocation_date'].native.isoformat()}{reason}")
    if len(revoked) > 50:
        lines.append(f"    ... and {len(revoked) - 50} more")
    return "\n".join(lines)


def describe(obj: x509.Certificate | csr.CertificationRequest | crl.CertificateList) -> str:
    if isinstance(obj, x509.Certificate):
        return describe_certificate(obj)
    if isinstance(obj, csr.CertificationRequest):
        return describe_csr(obj)
    return describe_crl(obj)


def _extension_rows(exts: Any) -> list[dict[str, Any]]:
    rows = []
    for ext in exts or []:
        try:
            value = _value_text(ext["extn_value"].parsed.native)
        except (ValueError, TypeError):
            value = _hex(ext["extn_value"].contents)
        rows.append({"name": ext["extn_id"].native, "critical": bool(ext["critical"].native),
                     "value": value})
    return rows


def as_dict(obj: x509.Certificate | csr.CertificationRequest | crl.CertificateList
            ) -> dict[str, Any]:
    """What :func:`describe` prints, as data (``sscard x509 show --format json``)."""
    if isinstance(obj, x509.Certificate):
        tbs = obj["tbs_certificate"]
        return {
            "kind": "certificate",
            "serial": f"{tbs['serial_number'].native:X}",
            "signature_algorithm": obj["signature_algorithm"]["algorithm"].native,
            "issuer": format_name(tbs["issuer"]),
            "subject": format_name(tbs["subject"]),
            "not_before": tbs["validity"]["not_before"].native.isoformat(),
            "not_after": tbs["validity"]["not_after"].native.isoformat(),
            "public_key": _key_desc(tbs["subject_public_key_info"]),
            "sha256": hashlib.sha256(obj.dump()).hexdigest(),
            "extensions": _extension_rows(tbs["extensions"]),
        }
    if isinstance(obj, csr.CertificationRequest):
        info = obj["certification_request_info"]
        requested = [row for attr in info["attributes"]
                     if attr["type"].native == "extension_request"
                     for exts in attr["values"] for row in _extension_rows(exts)]
        return {
            "kind": "certificate request",
            "subject": format_name(info["subject"]),
            "signature_algorithm": obj["signature_algorithm"]["algorithm"].native,
            "public_key": _key_desc(info["subject_pk_info"]),
            "requested_extensions": requested,
        }
    tbs = obj["tbs_cert_list"]
    nxt = tbs["next_update"].native
    entries = []
    for entry in tbs["revoked_certificates"]:
        reason = None
        for ext in entry["crl_entry_extensions"] or []:
            if ext["extn_id"].native == "crl_reason":
                reason = ext["extn_value"].native
        entries.append({"serial": f"{entry['user_certificate'].native:X}",
                        "revocation_date": entry["revocation_date"].native.isoformat(),
                        "reason": reason})
    return {
        "kind": "certificate revocation list",
        "issuer": format_name(tbs["issuer"]),
        "signature_algorithm": obj["signature_algorithm"]["algorithm"].native,
        "this_update": tbs["this_update"].native.isoformat(),
        "next_update": nxt.isoformat() if nxt else None,
        "extensions": _extension_rows(tbs["crl_extensions"]),
        "revoked": entries,
    }
