"""A fast path for the common CRL check: one plain full CRL from the certificate's own issuer.

pyhanko-certvalidator's CRL check (RFC 5280 §6.3) is general: it looks for the CRL's issuer
among every certificate it knows, validates that issuer's path, handles indirect and delta CRLs
and distribution-point scopes, and then scans the revoked entries one by one. Nearly every check
a relying party makes is the simple case: the certificate's issuer (already validated as part of
the same path) signed one full CRL. That case is settled here with the same rules, and the
entries are looked up in an index built once per CRL encoding instead of scanned.

Whatever is not plain is handed back to pyhanko unchanged, which then gives its own answer or
its own reason: so the fast path can only answer GOOD or REVOKED where pyhanko would answer the
same, never fail where pyhanko would not. Plain means all of:

- the certificate's issuer in the path has a certificate, has been validated in this
  validation (pyhanko would not validate it again either), and may sign CRLs (keyUsage absent
  or with cRLSign, as pyhanko requires);
- exactly one of the CRLs at hand is issued under that issuer's name; it is a full CRL (no
  deltaCRLIndicator, no freshestCRL to pair it with a delta), not indirect, its signature
  verifies with the issuer's key, it is fresh at the validation time (pyhanko's own freshness
  rule and tolerance), and within its scope covers the certificate for every reason (pyhanko's
  own scope step: distribution points, issuingDistributionPoint, unknown critical extensions);
- no other CRL at hand could speak for the certificate (an indirect one, one whose issuer the
  certificate's issuer certified, or any other when fetching is on);
- no entry names a certificate issuer (an indirect CRL's entries), and the certificate's entry,
  if any, has no unknown critical extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import crl, x509
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import CRLValidationError, RevokedError
from pyhanko_certvalidator.revinfo.archival import CRLContainer
from pyhanko_certvalidator.revinfo.constants import (
    KNOWN_CRL_ENTRY_EXTENSIONS,
    VALID_REVOCATION_REASONS,
)
from pyhanko_certvalidator.revinfo.validate_crl import (
    _check_crl_freshness,
    _CRLErrs,
    _get_crl_scope_assuming_authority,
    _verify_crl_signature,
)

from sscard.validation.building import name_key
from sscard.validation.memo import BoundedCache, encoding, encoding_key
from sscard.validation.signatures import SM2AwareSignatureValidator

# the DER of the certificateIssuer entry extension's OID: an entry holding these octets may
# name another issuer for itself and the entries after it (pyhanko's own test for it)
_CERTIFICATE_ISSUER_OID = crl.CRLEntryExtensionId("certificate_issuer").dump()


@dataclass(frozen=True)
class _Entries:
    """A CRL's revoked entries by the encoding of their serial number (the first entry for
    a serial, as pyhanko's scan finds it)."""

    by_serial: dict[bytes, bytes]  # serial INTEGER's DER -> the entry's DER
    names_issuers: bool  # some entry may carry a certificateIssuer extension


# By the CRL's encoding. An index takes ~150 bytes per revoked entry (15 MB for 100,000):
# a deployment checks against the CRLs of a few issuing CAs, so few are kept.
_ENTRIES: BoundedCache[bytes, _Entries] = BoundedCache(8)


def _index(encoded: bytes) -> _Entries:
    # a parse of its own: reading every entry of the validator's kept copy would make each
    # later mutation check (asn1crypto's dump) walk every entry
    revoked = crl.CertificateList.load(encoded)["tbs_cert_list"]["revoked_certificates"]
    by_serial: dict[bytes, bytes] = {}
    names_issuers = False
    for entry in revoked:
        entry_der = bytes(entry.dump())
        if _CERTIFICATE_ISSUER_OID in entry_der:
            names_issuers = True
            break
        by_serial.setdefault(bytes(entry["user_certificate"].dump()), entry_der)
    return _Entries(by_serial, names_issuers)


def _others_may_speak(containers: list[CRLContainer], cert: x509.Certificate,
                      context: Any) -> bool:
    """Whether a CRL not issued under the certificate's issuer name could still cover it for
    pyhanko: an indirect CRL, one signed by a certificate its issuer certified, or (fetching
    on) one whose signer pyhanko might fetch."""
    if not containers:
        return False
    if context.revinfo_manager.fetching_allowed:
        return True
    issuer_key = name_key(cert.issuer)
    for container in containers:
        data = container.crl_data
        idp = data.issuing_distribution_point_value
        if idp is not None and idp["indirect_crl"].native:
            return True
        for signer in context.certificate_registry.retrieve_by_name(data.issuer):
            if name_key(signer.issuer) == issuer_key:
                return True
    return False


def _signature_verifies(data: crl.CertificateList, issuer: x509.Certificate,
                        validator: Any) -> bool:
    if isinstance(validator, SM2AwareSignatureValidator):
        return validator.verifies(data, issuer)  # the signed octets without a dump()
    try:
        _verify_crl_signature(data, issuer.public_key, validator)
    except CRLValidationError:
        return False
    return True


def settle(cert: object, path: Any, context: Any, proc_state: Any) -> bool:
    """Settle ``cert``'s revocation status from a plain CRL (see the module's description):
    True when it is not revoked; raises pyhanko's RevokedError when it is; False when the case
    is not plain and pyhanko's general check must decide."""
    if not isinstance(cert, x509.Certificate) or proc_state is None:
        return False
    try:
        authority = path.find_issuing_authority(cert)
    except LookupError:
        return False
    if not isinstance(authority, AuthorityWithCert):
        return False
    issuer: x509.Certificate = authority.certificate
    if context.check_validation(issuer) is None:
        return False
    usage = issuer.key_usage_value
    if usage is not None and "crl_sign" not in usage.native:
        return False
    issuer_key = name_key(cert.issuer)
    own: list[CRLContainer] = []
    others: list[CRLContainer] = []
    for container in context.revinfo_manager.currently_available_crls():
        (own if name_key(container.crl_data.issuer) == issuer_key else others).append(container)
    if len(own) != 1 or _others_may_speak(others, cert, context):
        return False
    container = own[0]
    data: crl.CertificateList = container.crl_data
    if data.delta_crl_indicator_value is not None or data.freshest_crl_value is not None:
        return False
    recorded = context.revinfo_manager.check_crl_issuer(data)
    if recorded is not None and recorded.signature != issuer.signature:
        return False
    errs = _CRLErrs()
    scope = _get_crl_scope_assuming_authority(
        crl_issuer=issuer, cert=cert, certificate_list_cont=container, is_indirect=False,
        errs=errs)
    if scope is None or set(scope) - {"unused"} != VALID_REVOCATION_REASONS:
        return False
    if not _check_crl_freshness(container, context.revinfo_policy, context.timing_params, errs,
                                is_delta=False):
        return False
    if not _signature_verifies(data, issuer, context.sig_validator):
        return False
    entries = _ENTRIES.get_or_make(encoding_key(data), lambda: _index(encoding(data)))
    if entries.names_issuers:
        return False
    found = entries.by_serial.get(bytes(cert["tbs_certificate"]["serial_number"].dump()))
    if found is None:
        return True
    entry = crl.RevokedCertificate.load(found)
    if entry.critical_extensions - KNOWN_CRL_ENTRY_EXTENSIONS:
        return False
    reason = entry.crl_reason_value or crl.CRLReason("unspecified")
    if reason.native == "remove_from_crl":
        return True
    revoked_at = entry["revocation_date"].native
    timing = context.timing_params
    control_time = timing.validation_time if timing.point_in_time_validation else None
    if control_time is None or revoked_at < control_time:
        raise RevokedError.format(reason=reason, revocation_dt=revoked_at, revinfo_type="CRL",
                                  proc_state=proc_state)
    return True
