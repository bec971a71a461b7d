"""A SignedData template for signing many documents with one key and certificate.

Everything that does not change between signatures (certificates, signer identifier,
algorithm identifiers, content types, the ESS signing-certificate attribute) is encoded once by
asn1crypto; each signature then only writes the signing time, the message digest, the signature
value and the content. ``sign()`` uses it; its output equals asn1crypto's for the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from asn1crypto import cms, core, x509

from sscard import der as _der
from sscard.cms.content_types import Flavour, content_type
from sscard.crypto.algorithms import KeyType, SignatureAlgorithm
from sscard.crypto.hashes import digest
from sscard.crypto.sm2 import DEFAULT_UID
from sscard.keys.base import KeyHandle

_SIGNING_TIME_OID = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()
_MESSAGE_DIGEST_OID = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
_V1 = core.Integer(1).dump()


class SignedDataTemplate:
    """Signs with ``key`` as ``certificate`` (with ``chain``), one algorithm and flavour."""

    def __init__(self, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                 algorithm: SignatureAlgorithm, flavour: Flavour) -> None:
        from sscard.cms.signed import digest_name_for, signing_certificate_v2

        self.algorithm = algorithm
        self.digest_name = digest_name_for(algorithm)
        data_type = content_type("data", flavour)
        ess_hash = "sm3" if algorithm.key_type is KeyType.SM2 else "sha256"
        self._ct_attr = cms.CMSAttribute({"type": "content_type", "values": [data_type]}).dump()
        self._ess_attr = cms.CMSAttribute({
            "type": "signing_certificate_v2",
            "values": [signing_certificate_v2(certificate, ess_hash)]}).dump()
        digest_alg = cms.DigestAlgorithm({"algorithm": self.digest_name}).dump()
        sid = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": certificate.issuer,
                   "serial_number": certificate.serial_number}).dump()
        self._signer_head = _V1 + sid + digest_alg
        self._sig_alg = cms.SignedDigestAlgorithm(algorithm.asn1_algorithm_identifier()).dump()
        # DER sorts the elements of a SET OF by their encodings (X.690 §11.6), as asn1crypto does
        certs = b"".join(sorted(c.dump() for c in (certificate, *chain)))
        self._sd_head = (_V1 + _der.tlv(0x31, digest_alg))
        self._data_type = core.ObjectIdentifier(
            cms.ContentType(data_type).dotted).dump()
        self._certificates = _der.tlv(0xA0, certs)
        self._outer_type = core.ObjectIdentifier(
            cms.ContentType(content_type("signed_data", flavour)).dotted).dump()

    def signed_attributes(self, content_digest: bytes, when: datetime) -> bytes:
        """The DER SET OF signed attributes (what the signature covers)."""
        time_attr = _der.tlv(0x30, _SIGNING_TIME_OID + _der.tlv(0x31, _der.time(when)))
        md_attr = _der.tlv(0x30, _MESSAGE_DIGEST_OID + _der.tlv(0x31, _der.tlv(0x04,
                                                                             content_digest)))
        return _der.tlv(0x31, b"".join(sorted((self._ct_attr, time_attr, md_attr,
                                               self._ess_attr))))

    def assemble(self, attrs: bytes, signature: bytes, content: bytes | None,
                 unsigned_attrs: bytes = b"") -> bytes:
        """The ContentInfo DER from the signed attributes and the signature over them
        (``unsigned_attrs``: a DER SET OF attributes, e.g. a time-stamp token)."""
        unsigned = b"\xa1" + unsigned_attrs[1:] if unsigned_attrs else b""
        signer = _der.tlv(0x30, self._signer_head + b"\xa0" + attrs[1:] + self._sig_alg
                          + _der.tlv(0x04, signature) + unsigned)
        encap = self._data_type
        if content is not None:
            encap += _der.tlv(0xA0, _der.tlv(0x04, content))
        signed = _der.tlv(0x30, self._sd_head + _der.tlv(0x30, encap) + self._certificates
                          + _der.tlv(0x31, signer))
        return _der.tlv(0x30, self._outer_type + _der.tlv(0xA0, signed))

    def sign(self, key: KeyHandle, content: bytes, when: datetime, detached: bool,
             uid: bytes = DEFAULT_UID,
             unsigned_attrs: Callable[[bytes], bytes] | None = None) -> bytes:
        """``unsigned_attrs`` maps the signature value to the unsigned attributes' DER."""
        attrs = self.signed_attributes(digest(self.digest_name, content), when)
        signature = key.sign(attrs, self.algorithm, uid)
        unsigned = unsigned_attrs(signature) if unsigned_attrs is not None else b""
        return self.assemble(attrs, signature, None if detached else content, unsigned)
