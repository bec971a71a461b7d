"""Plain values the KMC hands to its callers (the RA, the CA, the published client): what an
escrow and a completed recovery return, the same in process and over HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EscrowResult:
    key_id: str
    owner: str
    algorithm: str
    public_key_spki: bytes
    #: GM/T 0009 SM2EnvelopedKey DER and GM/T 0016 ENVELOPEDKEYBLOB (SM2 keys only)
    enveloped_key_der: bytes | None
    enveloped_key_blob: bytes | None
    #: other algorithms: the PKCS#8 in a CMS EnvelopedData for the recipient (SM2 or RSA key)
    enveloped_pkcs8: bytes | None = None


@dataclass(frozen=True)
class RecoveryResult:
    request_id: str
    key_id: str
    enveloped_key_der: bytes | None = None
    enveloped_key_blob: bytes | None = None
    pkcs12: bytes | None = None
    pkcs12_passphrase: str | None = field(default=None, repr=False)
