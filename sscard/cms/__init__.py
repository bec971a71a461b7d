"""CMS (RFC 5652) and its GM/T 0010 SM2 variants: signed and enveloped data.

    from sscard.cms import sign, encrypt, decrypt, Verifier, TrustConfig
    der = sign(document, key, certificate, chain=[ca_cert], detached=True)
    report = Verifier(TrustConfig([root])).verify(der, document)
    report.valid, report.signer.social_insurance_number, [p.code for p in report.problems]

Each name is loaded from its module when first used (PEP 562): a command that only verifies
does not load the envelope code, one that only signs not the path validator.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from sscard.lazy import lazy_exports

if TYPE_CHECKING:
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

#: each public name and the module that defines it
_WHERE = {
    "Flavour": "content_types",
    **dict.fromkeys(("ContentCipher", "Opened", "Sm2KeyTransport", "decrypt", "encrypt"),
                    "enveloped"),
    **dict.fromkeys(("CmsBuildError", "CmsError", "CmsParseError", "EnvelopeDecryptionError",
                     "NoMatchingRecipient"), "errors"),
    **dict.fromkeys(("SignerIdentity", "identify"), "identity"),
    "load_content_info": "parse",
    "sign": "signed",
    "TimeStamper": "timestamp",
    **dict.fromkeys(("Code", "Problem", "SignatureReport", "TrustConfig", "Verifier", "verify"),
                    "verify"),
}

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


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


class _Package(types.ModuleType):
    """The import system binds each submodule to its name on the package when it is loaded;
    ``verify`` is both a submodule and the function the package exports, and the function
    keeps the name (as it did when this package imported everything at once)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "verify" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
