"""Signature checking for pyhanko-certvalidator: SM2-with-SM3 added, DSA parameters inherited.

pyhanko-certvalidator checks every signature in a path (certificates, CRLs, OCSP responses)
through one pluggable ``SignatureValidator``. This one verifies SM2-with-SM3 (GM/T 0009, user ID
1234567812345678) with ``sscard.crypto.sm2`` and hands everything else to pyhanko's default.
It also fills in DSA domain parameters that a key leaves out (RFC 3279 §2.3.2: they are
inherited from the issuer), which pyhanko does for certificates in the path but not for CRL
and OCSP signers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from asn1crypto import algos, crl, keys, x509
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _PycaUnsupported
from pyhanko_certvalidator.errors import AlgorithmNotSupported
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_VALIDATION_CONTEXT,
    DefaultSignatureValidator,
    SignatureValidationContext,
    SignatureValidator,
)

import sscard.asn1  # noqa: F401  (registers the SM OIDs with asn1crypto)
from sscard.crypto import oids
from sscard.crypto.errors import CryptoError
from sscard.crypto.sm2 import DEFAULT_UID, SM2PublicKey
from sscard.validation.memo import BoundedCache, encoding, kept_signed_parts

# Signatures found good, by a digest of everything that went into the check: the path builder
# checks each issuer->subject link and pyhanko the same link again on the chosen path, and the
# same CA certificates and CRLs come back in every validation (a gateway's callers share a
# few issuing CAs). Only successes are kept, so a failure is always checked afresh; bounded
# (least recently used out), as callers choose what is checked.
_GOOD: BoundedCache[bytes, bool] = BoundedCache(8192)

# A chain of parameter-less DSA keys longer than this is not a real PKI.
_MAX_DSA_INHERITANCE_DEPTH = 8


class SM2AwareSignatureValidator(SignatureValidator):
    """SM2-with-SM3 here, all else delegated; ``known_certificates`` feed DSA inheritance."""

    def __init__(
        self,
        known_certificates: Iterable[x509.Certificate] = (),
        uid: bytes = DEFAULT_UID,
    ) -> None:
        self._uid = uid
        self._default = DefaultSignatureValidator()
        self._certs = list(known_certificates)

    def verifies(
        self, value: x509.Certificate | crl.CertificateList, issuer: x509.Certificate
    ) -> bool:
        """Whether ``issuer``'s key verifies the signature of ``value`` (a certificate or a
        CRL; False on any failure)."""
        try:
            # a kept private copy's signed octets come off the encoding it was parsed from;
            # asn1crypto's dump() would first walk all that was parsed of it for changes
            parts = kept_signed_parts(value)
            signature = None if parts is None else parts.signature
            if parts is None or signature is None:
                signature, signed = value[2].native, bytes(value[0].dump())
            else:
                signed = parts.signed
            self.validate_signature(signature, signed, issuer.public_key, value[1])
        except (InvalidSignature, AlgorithmNotSupported, CryptoError, ValueError, TypeError,
                KeyError, AssertionError, _PycaUnsupported):
            return False
        return True

    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
    ) -> None:
        digest = hashlib.sha256()
        # the key's and algorithm's encodings once per validation: the path builder and
        # pyhanko ask about the same objects; each part fed as is (no joined copy of a CRL)
        for part in (signature, signed_data, encoding(public_key_info),
                     encoding(signature_algorithm), b"1" if context.prehashed else b"0"):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        memo = digest.digest()
        if _GOOD.get(memo):
            return
        self._validate(signature, signed_data, public_key_info, signature_algorithm, context)
        _GOOD.put(memo, True)

    def _validate(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext,
    ) -> None:
        if signature_algorithm["algorithm"].dotted == oids.SM2_WITH_SM3:
            self._verify_sm2(signature, signed_data, public_key_info, context)
            return
        if (
            public_key_info.algorithm == "dsa"
            and public_key_info["algorithm"]["parameters"].native is None
        ):
            self._verify_dsa_inherited(
                signature, signed_data, public_key_info, signature_algorithm, context
            )
            return
        self._delegate(signature, signed_data, public_key_info, signature_algorithm, context)

    def _verify_sm2(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        context: SignatureValidationContext,
    ) -> None:
        if context.prehashed:
            # SM2's digest covers Z (derived from the key and user ID), so a bare SM3 of the
            # message cannot be checked.
            raise AlgorithmNotSupported("SM2-with-SM3 cannot verify a pre-hashed message")
        try:
            key = _sm2_key(encoding(public_key_info))
        except CryptoError as exc:
            raise InvalidSignature(f"SM2-with-SM3 signature, but not an SM2 key: {exc}") from None
        try:
            key.verify(signature, signed_data, self._uid)
        except CryptoError as exc:
            raise InvalidSignature(f"SM2 signature does not verify: {exc}") from None

    def _delegate(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext,
    ) -> None:
        try:
            self._default.validate_signature(
                signature, signed_data, public_key_info, signature_algorithm, context
            )
        except InvalidSignature:
            raise
        except (ValueError, TypeError, AssertionError, _PycaUnsupported) as exc:
            # A key that does not fit the algorithm, or one pyca cannot load: the signature
            # cannot be valid, and the path must fail cleanly rather than crash.
            algo = signature_algorithm["algorithm"].native
            raise AlgorithmNotSupported(
                f"cannot verify a {algo} signature with a {public_key_info.algorithm} key: "
                f"{exc or type(exc).__name__}"
            ) from None

    def _verify_dsa_inherited(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext,
    ) -> None:
        candidates = self._inherited_dsa_parameters(public_key_info, depth=0)
        if not candidates:
            raise InvalidSignature(
                "DSA key without domain parameters, and no issuer to inherit them from"
            )
        for params in candidates:
            completed = public_key_info.copy()
            completed["algorithm"] = {"algorithm": "dsa", "parameters": params}
            try:
                self._delegate(signature, signed_data, completed, signature_algorithm, context)
                return
            except InvalidSignature:
                continue
        raise InvalidSignature("DSA signature does not verify with the inherited parameters")

    def _inherited_dsa_parameters(
        self, key: keys.PublicKeyInfo, depth: int
    ) -> list[keys.DSAParams]:
        if depth > _MAX_DSA_INHERITANCE_DEPTH:
            return []
        found: list[keys.DSAParams] = []
        key_der = key.dump()
        for cert in self._certs:
            if cert.public_key.dump() != key_der:
                continue
            for issuer in self._certs:
                if issuer.subject != cert.issuer or issuer.public_key.algorithm != "dsa":
                    continue
                params = issuer.public_key["algorithm"]["parameters"]
                if params.native is not None:
                    found.append(params)
                elif issuer.public_key.dump() != key_der:
                    found.extend(self._inherited_dsa_parameters(issuer.public_key, depth + 1))
        return found


# Loaded SM2 public keys by SubjectPublicKeyInfo: loading one costs more than a verification
# (OpenSSL decodes and checks the point), and the same CA keys verify every chain.
_SM2_KEYS: BoundedCache[bytes, SM2PublicKey] = BoundedCache(256)


def _sm2_key(spki: bytes) -> SM2PublicKey:
    return _SM2_KEYS.get_or_make(spki, lambda: SM2PublicKey.from_spki(spki))


def forget_verified_signatures() -> None:
    """Empty the cache of signatures found good (for measurements that verify every one)."""
    _GOOD.clear()


def install_as_pyhanko_default() -> None:
    """Make SM2 known to ValidationContexts that pyhanko builds on its own.

    pyhanko-certvalidator 0.33 checks a delegated OCSP responder that carries
    id-pkix-ocsp-nocheck in a fresh ValidationContext without passing our signature validator
    (revinfo/validate_ocsp.py), so an SM2 responder certificate would fail with pyca's
    "curve not supported". The context falls back to ``DefaultSignatureValidator`` by the name
    it imported; pointing that name at this class fixes every such internal context at once.
    """
    import pyhanko_certvalidator.context as _context

    _context.DefaultSignatureValidator = SM2AwareSignatureValidator  # type: ignore[misc,assignment]
