"""Two adjustments to pyhanko-certvalidator, made once when sscard.validation is loaded.

pyhanko-certvalidator runs RFC 5280 §6 for this package (see validator.py); where its behaviour
is wrong for a PKI validator it is changed here, in one place, by name:
- its name-constraint processing is switched off (sscard.validation.names does it instead:
  iPAddress, otherName, malformed and wildcard names, bounded comparisons);
- a CRL signed by a trust anchor that is not self-signed becomes usable.
(signatures.install_as_pyhanko_default makes SM2 known to the contexts pyhanko builds itself.)
"""

from __future__ import annotations

from asn1crypto import x509
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.path import ValidationPath

from sscard.validation.building import fingerprint

_done = False


def _switch_off_pyhanko_name_constraints() -> None:
    """Name constraints are checked by :mod:`sscard.validation.names` (bounded, iPAddress,
    otherName); pyhanko's own pass would refuse valid paths or crash on those, so it is made a
    no-op in its path-validation state."""
    from pyhanko_certvalidator import validate as _pv_validate

    def _no_subtrees(_subtrees: object) -> dict[object, object]:
        return {}

    def _no_check(self: object, cert: object, proc_state: object) -> None:
        return None

    _pv_validate.process_general_subtrees = _no_subtrees  # type: ignore[assignment]
    _pv_validate._PathValidationState.check_name_constraints = _no_check  # type: ignore[method-assign]


def _let_the_anchor_sign_crls() -> None:
    """pyhanko finds a CRL issuer's path by cutting the certificate's path back to the CRL
    issuer's issuer; when the CRL issuer is a trust anchor that is not self-signed (an issuing
    CA configured as the anchor), there is no such issuer in the path and the CRL is never
    used, so revocation of that anchor's leaves could not be established from CRLs. The anchor
    needs no path: it is trusted as it is."""
    original = ValidationPath.truncate_to_issuer_and_append

    def truncate_to_issuer_and_append(self: ValidationPath, cert: x509.Certificate
                                      ) -> ValidationPath:
        authority = self.trust_anchor.authority
        if isinstance(authority, AuthorityWithCert) and (
            fingerprint(authority.certificate) == fingerprint(cert)
        ):
            return ValidationPath(self.trust_anchor, interm=[], leaf=None)
        return original(self, cert)

    ValidationPath.truncate_to_issuer_and_append = truncate_to_issuer_and_append  # type: ignore[method-assign]


def adjust_pyhanko() -> None:
    """Apply both adjustments (idempotent: each wraps or replaces by name)."""
    global _done
    if _done:
        return
    _switch_off_pyhanko_name_constraints()
    _let_the_anchor_sign_crls()
    _done = True
