"""The encrypted container of a backup: a passphrase, scrypt, and chunked AES-256-GCM.

Layout::

    MAGIC | u32 header length | header (JSON) | chunk* ; chunk = u32 length | ciphertext+tag

The header names the KDF parameters (scrypt, random salt), the nonce prefix and a key-check
value, so a wrong passphrase is told apart from an altered body. The body is cut into chunks
sealed one by one (the STREAM construction): chunk ``i`` uses nonce ``prefix || i`` and
associated data ``SHA-256(header) || i || final``, so a changed, dropped, reordered or appended
chunk and a truncated tail all fail authentication, and the header itself is bound to every
chunk. Chunking keeps memory flat for databases of any size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sscard.backup.errors import BackupFormatError, BackupIntegrityError, WrongBackupPassphrase

MAGIC = b"SSCARD-BACKUP\x00"
FORMAT = "sscard-backup"
VERSION = 1
CIPHER = "AES-256-GCM"
CHUNK_SIZE = 1 << 20
DEFAULT_SCRYPT_N = 1 << 15
# A tampered header must not make the reader burn memory or hours: bound what it accepts.
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 1 << 20, 16, 4
MAX_HEADER = 64 * 1024
TAG_LEN = 16
_KEY_CHECK_LABEL = b"sscard-backup key check v1"


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    """(encryption key, key-check key) from the passphrase."""
    material = Scrypt(salt=salt, length=64, n=n, r=r, p=p).derive(passphrase)
    return material[:32], material[32:]


def _key_check(check_key: bytes) -> bytes:
    return hmac.new(check_key, _KEY_CHECK_LABEL, hashlib.sha256).digest()[:16]


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, 1 if final else 0)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, passphrase: bytes, *,
                   scrypt_n: int = DEFAULT_SCRYPT_N, chunk_size: int = CHUNK_SIZE) -> None:
    """Seal everything read from ``src`` into ``dst``."""
    if not passphrase:
        raise WrongBackupPassphrase("the backup passphrase is empty")
    salt = secrets.token_bytes(16)
    prefix = secrets.token_bytes(8)
    r, p = 8, 1
    key, check_key = _derive(passphrase, salt, scrypt_n, r, p)
    header = json.dumps({
        "format": FORMAT, "version": VERSION, "cipher": CIPHER,
        "kdf": {"name": "scrypt", "salt": base64.b64encode(salt).decode(), "n": scrypt_n,
                "r": r, "p": p},
        "nonce_prefix": base64.b64encode(prefix).decode(),
        "key_check": base64.b64encode(_key_check(check_key)).decode(),
    }, sort_keys=True).encode()
    digest = hashlib.sha256(header).digest()
    dst.write(MAGIC + struct.pack(">I", len(header)) + header)
    aead = AESGCM(key)
    index = 0
    current = src.read(chunk_size)
    while True:
        following = src.read(chunk_size) if current else b""
        final = not following
        sealed = aead.encrypt(_nonce(prefix, index), current, _aad(digest, index, final))
        dst.write(struct.pack(">I", len(sealed)) + sealed)
        if final:
            return
        index += 1
        if index >= 1 << 32:
            raise BackupFormatError("backup too large for one nonce prefix (2^32 chunks)")
        current = following


def _read_exact(src: BinaryIO, n: int, what: str) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise BackupIntegrityError(f"the backup is truncated (in the {what})")
    return data


def read_header(src: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """The parsed header and its raw bytes; checks magic, version and parameter bounds."""
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupFormatError("not an sscard backup (wrong magic at the start of the file)")
    (length,) = struct.unpack(">I", _read_exact(src, 4, "header length"))
    if length > MAX_HEADER:
        raise BackupFormatError(f"backup header length {length} is implausible")
    raw = _read_exact(src, length, "header")
    try:
        header = json.loads(raw)
        kdf = header["kdf"]
        if header["format"] != FORMAT or header["version"] != VERSION:
            raise BackupFormatError(
                f"unsupported backup format {header['format']!r} version {header['version']!r}")
        if header["cipher"] != CIPHER or kdf["name"] != "scrypt":
            raise BackupFormatError(f"unsupported cipher/KDF {header['cipher']}/{kdf['name']}")
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        base64.b64decode(kdf["salt"], validate=True)
        if len(base64.b64decode(header["nonce_prefix"], validate=True)) != 8:
            raise BackupFormatError("backup header: the nonce prefix must be 8 bytes")
        base64.b64decode(header["key_check"], validate=True)
    except BackupFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupFormatError(f"backup header is malformed: {exc!r}") from None
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= MAX_SCRYPT_R
            and 1 <= p <= MAX_SCRYPT_P):
        raise BackupFormatError(f"backup header: scrypt parameters n={n} r={r} p={p} are out "
                                "of bounds")
    return header, raw


def decrypt_stream(src: BinaryIO, dst: BinaryIO, passphrase: bytes) -> dict[str, Any]:
    """Open a backup into ``dst``; raises on a wrong passphrase or any alteration.

    ``dst`` may hold a partial plaintext when this raises: callers write it to a private
    temporary file and discard it on error.
    """
    header, raw = read_header(src)
    kdf = header["kdf"]
    key, check_key = _derive(passphrase, base64.b64decode(kdf["salt"]), int(kdf["n"]),
                             int(kdf["r"]), int(kdf["p"]))
    if not hmac.compare_digest(_key_check(check_key), base64.b64decode(header["key_check"])):
        raise WrongBackupPassphrase("the passphrase does not open this backup (or the backup's "
                                    "header was altered)")
    prefix = base64.b64decode(header["nonce_prefix"])
    digest = hashlib.sha256(raw).digest()
    aead = AESGCM(key)
    index = 0
    pending = _read_chunk(src, index)
    while True:
        if pending is None:
            raise BackupIntegrityError(f"the backup is truncated: chunk {index} is missing and "
                                       "no final chunk was seen")
        following = _read_chunk(src, index + 1)
        final = following is None
        try:
            plain = aead.decrypt(_nonce(prefix, index), pending, _aad(digest, index, final))
        except InvalidTag:
            if final:
                raise BackupIntegrityError(
                    f"chunk {index} of the backup does not authenticate: altered, or the backup "
                    "was truncated after it") from None
            raise BackupIntegrityError(f"chunk {index} of the backup does not authenticate "
                                       "(altered, reordered or replaced)") from None
        dst.write(plain)
        if final:
            return header
        index += 1
        pending = following


def _read_chunk(src: BinaryIO, index: int) -> bytes | None:
    head = src.read(4)
    if not head:
        return None
    if len(head) != 4:
        raise BackupIntegrityError(f"the backup is truncated (in the length of chunk {index})")
    (length,) = struct.unpack(">I", head)
    if length < TAG_LEN or length > CHUNK_SIZE * 4 + TAG_LEN:
        raise BackupIntegrityError(f"chunk {index} of the backup has an implausible length "
                                   f"{length}")
    return _read_exact(src, length, f"chunk {index}")
