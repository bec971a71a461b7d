"""CMS (RFC 5652) and its GM/T 0010 SM2 variants: signed and enveloped data.

    from sscard.cms import sign, encrypt, decrypt, Verifier, TrustConfig
    der = sign(document, key, certificate, chain=[ca_cert], detached=True)
    report = Verifier(TrustConfig([root])).verify(der, document)
    report.valid, report.signer.social_insurance_number, [p.code for p in report.problems]
"""

from sscard.cms.content_types import Flavour
from sscard.cms.enveloped import ContentCipher, Opened, Sm2KeyTransport, decrypt, encrypt
from sscard.cms.errors import (
    CmsBuildError,
    CmsError,
    CmsParseError,
    EnvelopeDecryptionError,
    NoMatchingRecipient,
)
from sscard.cms.identity import SignerIdentity, identify
from sscard.cms.parse import load_content_info
from sscard.cms.signed import sign
from sscard.cms.timestamp import TimeStamper
from sscard.cms.verify import Code, Problem, SignatureReport, TrustConfig, Verifier, verify

__all__ = [
    "CmsBuildError",
    "CmsError",
    "CmsParseError",
    "Code",
    "ContentCipher",
    "EnvelopeDecryptionError",
    "Flavour",
    "NoMatchingRecipient",
    "Opened",
    "Problem",
    "SignatureReport",
    "SignerIdentity",
    "Sm2KeyTransport",
    "TimeStamper",
    "TrustConfig",
    "Verifier",
    "decrypt",
    "encrypt",
    "identify",
    "load_content_info",
    "sign",
    "verify",
]
