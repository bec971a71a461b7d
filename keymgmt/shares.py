"""M-of-N custodian shares of the KMC's key-encryption secret (Shamir secret sharing).

The splitting is pycryptodome's ``Crypto.Protocol.SecretSharing.Shamir`` (GF(2^128), a
maintained library already in the dependency list) rather than hand-written polynomial code. It
shares 16-byte secrets, so the 32-byte secret is shared as two independent 16-byte halves at the
same custodian indices: each custodian holds one 32-byte share, and any M of them rebuild both
halves. Shamir alone cannot tell a wrong reconstruction from a right one (M-1 shares give *some*
value), so two checks guard :func:`combine`: each share carries M and the ceremony id, and the
caller authenticates the result (the sealed storage key is AES-GCM under the rebuilt secret).

Each share is written to its own file, encrypted under that custodian's passphrase (scrypt ->
AES-256-GCM, with the ceremony id, index and threshold as associated data, so a share cannot be
moved to another ceremony or relabelled without detection).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keymgmt.errors import ShareError

SECRET_LEN = 32
SHARE_FORMAT = "sscard-kmc-custodian-share"
SHARE_VERSION = 1
#: scrypt cost for share files: ~0.1 s and 32 MiB per unlock, paid once per custodian per unseal.
DEFAULT_SCRYPT_N = 2**15
MAX_CUSTODIANS = 255  # Shamir indices are one byte in the file format


@dataclass(frozen=True)
class Share:
    """One custodian's share in clear (only ever in memory)."""

    ceremony_id: str
    custodian: str
    index: int
    threshold: int
    total: int
    value: bytes  # 32 bytes: the shares of both halves

    def __repr__(self) -> str:  # never print the share value
        return (f"Share(ceremony={self.ceremony_id!r}, custodian={self.custodian!r}, "
                f"index={self.index}, threshold={self.threshold}/{self.total})")


def check_parameters(threshold: int, custodians: list[str]) -> None:
    """Raise ShareError unless ``threshold`` of these distinct custodians is a valid split."""
    total = len(custodians)
    if len(set(custodians)) != total:
        raise ShareError("custodian names must be distinct")
    if not 2 <= threshold <= total:
        raise ShareError(
            f"threshold must be at least 2 and at most the number of custodians ({total}); "
            f"got {threshold}"
        )
    if total > MAX_CUSTODIANS:
        raise ShareError(f"at most {MAX_CUSTODIANS} custodians")


def split(secret: bytes, threshold: int, custodians: list[str], ceremony_id: str) -> list[Share]:
    """Split ``secret`` (32 bytes) so that any ``threshold`` of the custodians rebuild it."""
    if len(secret) != SECRET_LEN:
        raise ValueError(f"the shared secret must be {SECRET_LEN} bytes")
    check_parameters(threshold, custodians)
    total = len(custodians)
    hi = Shamir.split(threshold, total, secret[:16], ssss=False)
    lo = Shamir.split(threshold, total, secret[16:], ssss=False)
    shares = []
    for name, (i_hi, s_hi), (i_lo, s_lo) in zip(custodians, hi, lo, strict=True):
        assert i_hi == i_lo
        shares.append(Share(ceremony_id, name, i_hi, threshold, total, s_hi + s_lo))
    return shares


def combine(shares: list[Share]) -> bytes:
    """Rebuild the secret from at least ``threshold`` shares of one ceremony.

    Raises ShareError naming the problem when there are too few, duplicate or mixed shares.
    The result still needs authenticating by the caller (see the module docstring).
    """
    if not shares:
        raise ShareError("no custodian shares given")
    first = shares[0]
    for s in shares:
        if s.ceremony_id != first.ceremony_id:
            raise ShareError(
                f"shares come from different ceremonies ({first.ceremony_id} and {s.ceremony_id})"
            )
        if (s.threshold, s.total) != (first.threshold, first.total):
            raise ShareError("shares disagree about the threshold: a share file was altered")
    indices = [s.index for s in shares]
    if len(set(indices)) != len(indices):
        dup = sorted({s.custodian for s in shares if indices.count(s.index) > 1})
        raise ShareError(f"the same custodian share was given twice: {', '.join(dup)}")
    if len(shares) < first.threshold:
        raise ShareError(
            f"{len(shares)} custodian share(s) given, {first.threshold} of {first.total} "
            "are needed"
        )
    use = shares[: first.threshold]
    hi = Shamir.combine([(s.index, s.value[:16]) for s in use], ssss=False)
    lo = Shamir.combine([(s.index, s.value[16:]) for s in use], ssss=False)
    return bytes(hi) + bytes(lo)


def _kdf(passphrase: bytes, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase)


def _aad(ceremony_id: str, custodian: str, index: int, threshold: int, total: int) -> bytes:
    return json.dumps(
        [SHARE_FORMAT, SHARE_VERSION, ceremony_id, custodian, index, threshold, total]
    ).encode()


def protect(share: Share, passphrase: bytes, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """The share file's content: JSON, the share encrypted under the custodian's passphrase."""
    if len(passphrase) < 8:
        raise ShareError(f"custodian {share.custodian}: passphrase must be at least 8 characters")
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    key = _kdf(passphrase, salt, scrypt_n)
    aad = _aad(share.ceremony_id, share.custodian, share.index, share.threshold, share.total)
    sealed = AESGCM(key).encrypt(nonce, share.value, aad)
    doc: dict[str, Any] = {
        "format": SHARE_FORMAT,
        "version": SHARE_VERSION,
        "ceremony_id": share.ceremony_id,
        "custodian": share.custodian,
        "index": share.index,
        "threshold": share.threshold,
        "total": share.total,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1,
                "salt": base64.b64encode(salt).decode()},
        "cipher": "aes-256-gcm",
        "nonce": base64.b64encode(nonce).decode(),
        "sealed_share": base64.b64encode(sealed).decode(),
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def unprotect(data: bytes, passphrase: bytes, source: str = "share") -> Share:
    """Open a share file with its custodian's passphrase."""
    try:
        doc = json.loads(data)
        if doc.get("format") != SHARE_FORMAT:
            raise ShareError(f"{source}: not a KMC custodian share file")
        if doc.get("version") != SHARE_VERSION:
            raise ShareError(f"{source}: unsupported share file version {doc.get('version')}")
        kdf = doc["kdf"]
        if kdf.get("name") != "scrypt" or doc.get("cipher") != "aes-256-gcm":
            raise ShareError(f"{source}: unsupported key derivation or cipher")
        n = int(kdf["n"])
        if n < 2**10 or n > 2**20 or n & (n - 1):
            raise ShareError(f"{source}: scrypt cost n={n} out of range")
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        sealed = base64.b64decode(doc["sealed_share"], validate=True)
        ceremony_id, custodian = str(doc["ceremony_id"]), str(doc["custodian"])
        index, threshold, total = int(doc["index"]), int(doc["threshold"]), int(doc["total"])
    except ShareError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ShareError(f"{source}: malformed share file ({type(exc).__name__}: {exc})") from None
    if not (1 <= index <= total and 2 <= threshold <= total) or len(nonce) != 12:
        raise ShareError(f"{source}: inconsistent share parameters")
    key = _kdf(passphrase, salt, n)
    try:
        value = AESGCM(key).decrypt(
            nonce, sealed, _aad(ceremony_id, custodian, index, threshold, total)
        )
    except InvalidTag:
        raise ShareError(
            f"{source}: wrong passphrase for custodian {custodian!r}, or the file was altered"
        ) from None
    if len(value) != SECRET_LEN:
        raise ShareError(f"{source}: share has the wrong length")
    return Share(ceremony_id, custodian, index, threshold, total, value)


def write_share_file(path: Path, share: Share, passphrase: bytes,
                     scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
    """Write one custodian's protected share (mode 0600, refusing to overwrite)."""
    blob = protect(share, passphrase, scrypt_n)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)


def read_share_file(path: Path, passphrase: bytes) -> Share:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ShareError(f"cannot read share file {path}: {exc.strerror}") from None
    return unprotect(data, passphrase, source=str(path))
