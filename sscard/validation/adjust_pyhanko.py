"""Adjustments to pyhanko-certvalidator, made once when sscard.validation is loaded.

pyhanko-certvalidator runs RFC 5280 §6 for this package (see validator.py); where its behaviour
is wrong for a PKI validator it is changed here, in one place, by name:
- its name-constraint processing is switched off (sscard.validation.names does it instead:
  iPAddress, otherName, malformed and wildcard names, bounded comparisons);
- a CRL signed by a trust anchor that is not self-signed becomes usable;
- names compare through the validator's cached comparison forms (building.name_key), as
  asn1crypto prepares every attribute of both names again on each ==, and pyhanko compares
  names many times per validation (asn1crypto's Name == and hashable, so process-wide; same
  verdicts);
- the paths it validates on the side (a CRL issuer's, a delegated OCSP responder's) also go
  through the validator's own checks (name constraints, the RFC 5280 profile), which it cannot
  otherwise see;
- a plain full CRL from the certificate's own issuer is settled by sscard.validation.crl_fast
  (an indexed lookup; anything unusual still goes through pyhanko's general CRL check).
(signatures.install_as_pyhanko_default makes SM2 known to the contexts pyhanko builds itself.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from asn1crypto import x509
from pyhanko_certvalidator import validate as _pv_validate
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import PathValidationError
from pyhanko_certvalidator.path import ValidationPath

from sscard.validation import crl_fast
from sscard.validation.building import fingerprint, name_key
from sscard.validation.memo import BoundedCache, digest_of, within_validation

_done = False

SidePathCheck = Callable[[Sequence[x509.Certificate]], str | None]
"""Why a side path (its certificates, the trust anchor's first) is not acceptable, or None."""
_side_path_check: SidePathCheck | None = None


def _switch_off_pyhanko_name_constraints() -> None:
    """Name constraints are checked by :mod:`sscard.validation.names` (bounded, iPAddress,
    otherName); pyhanko's own pass would refuse valid paths or crash on those, so it is made a
    no-op in its path-validation state."""
    def _no_subtrees(_subtrees: object) -> dict[object, object]:
        return {}

    def _no_check(self: object, cert: object, proc_state: object) -> None:
        return None

    _pv_validate.process_general_subtrees = _no_subtrees  # type: ignore[assignment]
    _pv_validate._PathValidationState.check_name_constraints = _no_check  # type: ignore[method-assign]
    # the subtree state each path validation starts with is then never read: not built either
    # (a universal tree per name type, every validation and side validation)
    _pv_validate.default_permitted_subtrees = dict
    _pv_validate.default_excluded_subtrees = dict
    _pv_validate.PermittedSubtrees = _NoSubtrees  # type: ignore[assignment,misc]
    _pv_validate.ExcludedSubtrees = _NoSubtrees  # type: ignore[assignment,misc]


class _NoSubtrees:
    """pyhanko's subtree state, switched off with its name-constraint checks: accepts what it
    is given and keeps nothing; asked to judge a certificate it refuses to (it never is)."""

    def __init__(self, _initial: object = None) -> None:
        pass

    def intersect_with(self, _trees: object) -> None:
        pass

    def union_with(self, _trees: object) -> None:
        pass

    def accept_cert(self, _cert: object) -> None:
        raise NotImplementedError("name constraints are checked by sscard.validation.names")


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


def _check_side_paths() -> None:
    """pyhanko validates a CRL issuer's and a delegated OCSP responder's path by calling its
    intl_validate_path again, with a processing state marked as a side validation (the
    revocation code imports the function when it runs, so the module attribute is the hook).
    A side path the check refuses fails as pyhanko's own findings do: the CRL or OCSP answer is
    not used."""
    original = _pv_validate.intl_validate_path

    async def intl_validate_path(validation_context: Any, path: ValidationPath,
                                 proc_state: Any, *args: Any, **kwargs: Any) -> Any:
        # every anchor here has a certificate: the validator's own, or the issuing CA's that
        # pyhanko anchors a responder's path at
        if (_side_path_check is not None and proc_state.is_side_validation
                and isinstance(path.trust_anchor.authority, AuthorityWithCert)):
            problem = _side_path_check(list(path.iter_certs(include_root=True)))
            if problem:
                raise PathValidationError.from_state(problem, proc_state)
        return await original(validation_context, path, proc_state, *args, **kwargs)

    _pv_validate.intl_validate_path = intl_validate_path


def _settle_plain_crls_fast() -> None:
    """pyhanko's path validation calls verify_crl by the name it imported: wrapped there, so a
    plain CRL (crl_fast's rules) is settled without the general search and entry scan."""
    original = _pv_validate.verify_crl

    async def verify_crl(cert: Any, path: ValidationPath, validation_context: Any,
                         use_deltas: bool = True, proc_state: Any = None) -> None:
        if crl_fast.settle(cert, path, validation_context, proc_state):
            return
        await original(cert, path, validation_context, use_deltas=use_deltas,
                       proc_state=proc_state)

    _pv_validate.verify_crl = verify_crl


def _compare_names_through_cached_forms() -> None:
    original = x509.Name.__eq__

    def __eq__(self: x509.Name, other: object) -> bool:
        if not isinstance(other, x509.Name):
            return False
        try:
            return name_key(self) == name_key(other)
        except (TypeError, ValueError, AttributeError):  # not comparable: asn1crypto says why
            return bool(original(self, other))

    x509.Name.__eq__ = __eq__

    # pyhanko files every certificate by its names' asn1crypto hashable form when it builds a
    # validation's registries (and looks them up the same way); asn1crypto prepares every
    # attribute again on each read. Kept by the name's encoding, as the comparison forms are.
    hashable = x509.Name.hashable.fget
    assert hashable is not None
    forms: BoundedCache[bytes, str] = BoundedCache(4096)

    def cached_hashable(self: x509.Name) -> str:
        return within_validation("hashable", self, lambda: forms.get_or_make(
            digest_of(bytes(self.dump())), lambda: hashable(self)))

    x509.Name.hashable = property(cached_hashable, doc=x509.Name.hashable.__doc__)


def adjust_pyhanko(side_path_check: SidePathCheck | None = None) -> None:
    """Apply the adjustments (idempotent: each wraps or replaces by name, once);
    ``side_path_check`` is what side paths are checked with."""
    global _done, _side_path_check
    if side_path_check is not None:
        _side_path_check = side_path_check
    if _done:
        return
    _switch_off_pyhanko_name_constraints()
    _let_the_anchor_sign_crls()
    _check_side_paths()
    _compare_names_through_cached_forms()
    _settle_plain_crls_fast()
    _done = True
