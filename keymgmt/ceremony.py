"""The key ceremony and unsealing: create the storage key under M-of-N custodians, restore it.

Ceremony (``run_ceremony``):
1. draw a random 256-bit key-encryption secret (KES) and split it among the N custodians with
   threshold M (:mod:`keymgmt.shares`); each share goes to its own file under its custodian's
   passphrase;
2. create the storage key: in software, a random 256-bit AES key sealed (AES-256-GCM) under a
   key derived from the KES; with PKCS#11, a non-extractable AES key generated in the token,
   whose new random user PIN is what gets sealed under the KES;
3. optionally create the root CA key (encrypted PKCS#8 for CA core's ``SoftwareKey.load``);
4. write the sealed state to ``<home>/kmc/ceremony.json``; record every step in the
   hash-chained ``<home>/kmc/ceremony.log``.

Unseal (``unseal``): M shares rebuild the KES, which opens the sealed storage key (or PIN). With
M-1 shares :func:`keymgmt.shares.combine` refuses by count; a wrong or forged share that slips
past the count fails the GCM tag of the sealed value, so a wrong secret is never used.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keymgmt import ceremony_log, shares
from keymgmt.errors import CeremonyError, ShareError
from keymgmt.storage import SoftwareStorageKey, StorageKey
from sscard.audit import AuditAction, AuditLog

STATE_FORMAT = "sscard-kmc-ceremony"
STATE_VERSION = 1


def kmc_dir(home: Path) -> Path:
    return Path(home) / "kmc"


def state_path(home: Path) -> Path:
    return kmc_dir(home) / "ceremony.json"


def log_path(home: Path) -> Path:
    return kmc_dir(home) / "ceremony.log"


@dataclass(frozen=True)
class Custodian:
    name: str
    passphrase: bytes = field(repr=False)


@dataclass(frozen=True)
class Pkcs11Target:
    """Generate the storage key in this token; ``admin_pin`` is the PIN it was initialised with
    (the ceremony replaces it)."""

    module: str
    token_label: str
    admin_pin: bytes = field(repr=False)
    key_label: str = "sscard-kmc-storage"


@dataclass(frozen=True)
class RootCaKeyRequest:
    """Also create the root CA key: algorithm name (``sm2``, ``ec-p256``, ...), written as
    encrypted PKCS#8 under ``passphrase`` to ``path`` (default ``<home>/kmc/root-ca.key.pem``);
    or, with ``hsm_token``, generated non-extractable in that PKCS#11 token (the CA's token,
    opened with ``hsm_pin``) under ``hsm_label``. SM2 needs a token with vendor SM2 mechanisms;
    SoftHSM2 has none, so an HSM root there is ECDSA or RSA."""

    algorithm: str = "sm2"
    passphrase: bytes = field(default=b"", repr=False)
    path: Path | None = None
    hsm_module: str | None = None
    hsm_token: str | None = None
    hsm_pin: bytes = field(default=b"", repr=False)
    hsm_label: str = "root-ca"

    @property
    def in_hsm(self) -> bool:
        return self.hsm_token is not None


@dataclass(frozen=True)
class CeremonyResult:
    ceremony_id: str
    storage_key_id: str
    backend: str
    share_files: dict[str, Path]
    root_ca_key: Path | None
    root_ca_public_key: Path | None


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _kek(secret: bytes, ceremony_id: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=f"sscard-kmc-seal/{ceremony_id}".encode()).derive(secret)
    return AESGCM(key)


def _seal_aad(ceremony_id: str, storage_key_id: str, backend: str) -> bytes:
    return json.dumps([STATE_FORMAT, ceremony_id, storage_key_id, backend]).encode()


def run_ceremony(
    home: Path,
    custodians: list[Custodian],
    threshold: int,
    share_dir: Path,
    *,
    pkcs11_target: Pkcs11Target | None = None,
    root_ca: RootCaKeyRequest | None = None,
    officiant: str = "administrator",
    scrypt_n: int = shares.DEFAULT_SCRYPT_N,
    audit: AuditLog,
) -> CeremonyResult:
    """Run the whole ceremony; refuses to run twice on one home (the state would be lost).

    Recorded in ``audit`` (``kmc.ceremony.run``: custodians, threshold, backend, then the
    ceremony and storage key ids) besides the ceremony's own log."""
    with audit.operation(officiant, AuditAction.KMC_CEREMONY, f"kmc:{home}"[:512], details={
            "custodians": [c.name for c in custodians], "threshold": threshold,
            "backend": "pkcs11" if pkcs11_target else "software",
            "root_ca_algorithm": root_ca.algorithm if root_ca else None},
            refusals=(CeremonyError, ShareError)) as op:
        result = _run_ceremony(home, custodians, threshold, share_dir, pkcs11_target, root_ca,
                               officiant, scrypt_n)
        op.set(ceremony_id=result.ceremony_id, storage_key_id=result.storage_key_id)
    return result


def _run_ceremony(home: Path, custodians: list[Custodian], threshold: int, share_dir: Path,
                  pkcs11_target: Pkcs11Target | None, root_ca: RootCaKeyRequest | None,
                  officiant: str, scrypt_n: int) -> CeremonyResult:
    state_file = state_path(home)
    if state_file.exists():
        raise CeremonyError(
            f"{state_file} exists: a ceremony already ran for this KMC; move it away to start over"
        )
    names = [c.name for c in custodians]
    shares.check_parameters(threshold, names)
    for c in custodians:
        if not c.name.strip():
            raise CeremonyError("custodian names must not be empty")
        if len(c.passphrase) < 8:
            raise CeremonyError(f"custodian {c.name}: passphrase must be at least 8 characters")
    if len({c.passphrase for c in custodians}) != len(custodians):
        raise CeremonyError("every custodian must choose a different passphrase")
    share_dir = Path(share_dir)
    targets = {c.name: share_dir / f"share-{i + 1:02d}-{_safe(c.name)}.json"
               for i, c in enumerate(custodians)}
    for p in targets.values():
        if p.exists():
            raise CeremonyError(f"share file {p} already exists; refusing to overwrite it")
    if pkcs11_target is not None:
        from keymgmt.hsm import TokenRef, check_target

        check_target(TokenRef(pkcs11_target.module, pkcs11_target.token_label,
                              pkcs11_target.key_label), pkcs11_target.admin_pin)
    if root_ca is not None and not root_ca.in_hsm and len(root_ca.passphrase) < 8:
        raise CeremonyError("the root CA key passphrase must be at least 8 characters")
    if root_ca is not None and root_ca.in_hsm and not (root_ca.hsm_module and root_ca.hsm_pin):
        raise CeremonyError("a root CA key in an HSM needs the module and the token PIN")
    ceremony_id = str(uuid.uuid4())
    storage_key_id = "sk-" + secrets.token_hex(8)
    log = log_path(home)
    kmc_dir(home).mkdir(parents=True, exist_ok=True)
    ceremony_log.append(log, "ceremony.start", ceremony_id=ceremony_id, officiant=officiant,
                        custodians=names, threshold=threshold, total=len(custodians),
                        backend="pkcs11" if pkcs11_target else "software")

    try:
        # 1. the key-encryption secret and its shares (split first: bad parameters stop here)
        kes = secrets.token_bytes(shares.SECRET_LEN)
        split = shares.split(kes, threshold, names, ceremony_id)
        share_dir.mkdir(parents=True, exist_ok=True)
        for share, custodian in zip(split, custodians, strict=True):
            shares.write_share_file(targets[custodian.name], share, custodian.passphrase, scrypt_n)
            ceremony_log.append(log, "ceremony.share_written", ceremony_id=ceremony_id,
                                custodian=custodian.name, index=share.index,
                                file=str(targets[custodian.name]))

        # 2. the storage key
        aead = _kek(kes, ceremony_id)
        nonce = secrets.token_bytes(12)
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "ceremony_id": ceremony_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "threshold": threshold,
            "total": len(custodians),
            "custodians": [{"name": s.custodian, "index": s.index} for s in split],
            "storage_key_id": storage_key_id,
            "nonce": _b64(nonce),
        }
        if pkcs11_target is None:
            storage_key = secrets.token_bytes(32)
            state["backend"] = "software"
            state["sealed"] = _b64(aead.encrypt(nonce, storage_key,
                                                _seal_aad(ceremony_id, storage_key_id, "software")))
            ceremony_log.append(log, "ceremony.storage_key_generated", ceremony_id=ceremony_id,
                                storage_key_id=storage_key_id, backend="software",
                                algorithm="aes-256-gcm")
        else:
            from keymgmt.hsm import generate_storage_key

            ref = TokenRef(pkcs11_target.module, pkcs11_target.token_label, pkcs11_target.key_label)
            pin = generate_storage_key(ref, pkcs11_target.admin_pin)
            state["backend"] = "pkcs11"
            state["pkcs11"] = {"module": ref.module, "token_label": ref.token_label,
                               "key_label": ref.key_label}
            state["sealed"] = _b64(aead.encrypt(nonce, pin,
                                                _seal_aad(ceremony_id, storage_key_id, "pkcs11")))
            ceremony_log.append(log, "ceremony.storage_key_generated", ceremony_id=ceremony_id,
                                storage_key_id=storage_key_id, backend="pkcs11",
                                token=ref.token_label, key_label=ref.key_label,
                                algorithm="aes-256-gcm", extractable=False)
            ceremony_log.append(log, "ceremony.token_pin_replaced", ceremony_id=ceremony_id,
                                token=ref.token_label,
                                note="the new user PIN exists only sealed under the custodians' "
                                     "secret")

        # 3. the root CA key
        root_key_path = root_pub_path = None
        if root_ca is not None:
            if root_ca.in_hsm:
                root_key_path, root_pub_path = _create_root_ca_key_in_hsm(home, root_ca)
                state["root_ca"] = {"pkcs11": {"module": root_ca.hsm_module,
                                               "token_label": root_ca.hsm_token,
                                               "key_label": root_ca.hsm_label},
                                    "public_key": str(root_pub_path),
                                    "algorithm": root_ca.algorithm}
            else:
                root_key_path, root_pub_path = _create_root_ca_key(home, root_ca)
                state["root_ca"] = {"key": str(root_key_path), "public_key": str(root_pub_path),
                                    "algorithm": root_ca.algorithm}
            ceremony_log.append(log, "ceremony.root_ca_key_generated", ceremony_id=ceremony_id,
                                algorithm=root_ca.algorithm,
                                key_file=str(root_key_path) if root_key_path else None,
                                hsm_token=root_ca.hsm_token, hsm_label=root_ca.hsm_label
                                if root_ca.in_hsm else None,
                                public_key_file=str(root_pub_path))

        _write_state(state_file, state)
        ceremony_log.append(log, "ceremony.end", ceremony_id=ceremony_id,
                            storage_key_id=storage_key_id, state_file=str(state_file))
        return CeremonyResult(ceremony_id, storage_key_id, state["backend"], targets,
                              root_key_path, root_pub_path)
    except BaseException as exc:
        # A half-done ceremony must not leave usable-looking pieces: the shares of a secret
        # that seals nothing would only mislead the custodians. (A storage key already made in
        # a token stays there, unusable: its PIN was random and is gone; the log says so.)
        for path in targets.values():
            path.unlink(missing_ok=True)
        ceremony_log.append(log, "ceremony.failed", ceremony_id=ceremony_id,
                            error=type(exc).__name__, reason=str(exc)[:500],
                            share_files_removed=True)
        raise


def _safe(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return cleaned[:40] or "custodian"


def _write_state(path: Path, state: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _create_root_ca_key(home: Path, req: RootCaKeyRequest) -> tuple[Path, Path]:
    from sscard.keys.software import SoftwareKey

    if len(req.passphrase) < 8:
        raise CeremonyError("the root CA key passphrase must be at least 8 characters")
    path = Path(req.path) if req.path else kmc_dir(home) / "root-ca.key.pem"
    if path.exists():
        raise CeremonyError(f"{path} exists; refusing to overwrite a root CA key")
    key = SoftwareKey.generate(req.algorithm, label="root-ca")
    key.store(path, req.passphrase)
    pub = path.with_name(path.name.replace(".key.pem", "") + ".pub.pem")
    pub.write_bytes(key.public_key().spki_pem())
    return path, pub


def _create_root_ca_key_in_hsm(home: Path, req: RootCaKeyRequest) -> tuple[None, Path]:
    from sscard.crypto.errors import CryptoError
    from sscard.keys.pkcs11 import Pkcs11Token

    assert req.hsm_token is not None and req.hsm_module is not None
    pub = kmc_dir(home) / "root-ca.pub.pem"
    if pub.exists():
        raise CeremonyError(f"{pub} exists; refusing to overwrite a root CA public key")
    try:
        with Pkcs11Token(req.hsm_token, req.hsm_pin, req.hsm_module) as token:
            key = token.generate_key(req.algorithm, req.hsm_label)
            pub.write_bytes(key.public_key().spki_pem())
    except CryptoError as exc:
        raise CeremonyError(f"cannot create the root CA key in token {req.hsm_token!r}: {exc}"
                            ) from None
    return None, pub


def read_state(home: Path) -> dict[str, Any]:
    path = state_path(home)
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CeremonyError(
            f"no ceremony state at {path}: run `sscard kmc ceremony` first"
        ) from None
    except json.JSONDecodeError as exc:
        raise CeremonyError(f"{path} is not valid JSON: {exc}") from None
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise CeremonyError(f"{path} is not a KMC ceremony state file of a known version")
    return state


def unseal(home: Path, given: list[shares.Share], *, actor: str = "administrator",
           audit: AuditLog) -> StorageKey:
    """Rebuild the storage key (software) or open the token (PKCS#11) from M shares; recorded
    in ``audit`` (``kmc.ceremony.unseal``, naming the custodians) besides the ceremony log."""
    with audit.operation(actor, AuditAction.KMC_UNSEAL, f"kmc:{home}"[:512],
                         details={"custodians": [s.custodian for s in given]},
                         refusals=(CeremonyError, ShareError)) as op:
        key = _unseal(home, given, actor)
        op.set(storage_key_id=key.key_id)
    return key


def _unseal(home: Path, given: list[shares.Share], actor: str) -> StorageKey:
    state = read_state(home)
    ceremony_id = state["ceremony_id"]
    log = log_path(home)
    wrong = [s.custodian for s in given if s.ceremony_id != ceremony_id]
    if wrong:
        ceremony_log.append(log, "unseal.refused", ceremony_id=ceremony_id, actor=actor,
                            reason="shares from another ceremony", custodians=wrong)
        raise ShareError(f"share(s) of {', '.join(wrong)} belong to another ceremony")
    try:
        kes = shares.combine(given)
    except ShareError as exc:
        ceremony_log.append(log, "unseal.refused", ceremony_id=ceremony_id, actor=actor,
                            reason=str(exc), custodians=[s.custodian for s in given])
        raise
    backend = state["backend"]
    try:
        secret = _kek(kes, ceremony_id).decrypt(
            base64.b64decode(state["nonce"]), base64.b64decode(state["sealed"]),
            _seal_aad(ceremony_id, state["storage_key_id"], backend),
        )
    except InvalidTag:
        ceremony_log.append(log, "unseal.refused", ceremony_id=ceremony_id, actor=actor,
                            reason="shares do not open the sealed key",
                            custodians=[s.custodian for s in given])
        raise ShareError(
            "the shares do not open the sealed storage key: a share is wrong or altered, "
            "or the ceremony state was changed"
        ) from None
    key: StorageKey
    if backend == "software":
        key = SoftwareStorageKey(secret, state["storage_key_id"])
    elif backend == "pkcs11":
        from keymgmt.hsm import HsmStorageKey, TokenRef

        p = state["pkcs11"]
        key = HsmStorageKey(TokenRef(p["module"], p["token_label"], p["key_label"]), secret,
                            state["storage_key_id"])
    else:
        raise CeremonyError(f"unknown storage key backend {backend!r} in the ceremony state")
    ceremony_log.append(log, "unseal.ok", ceremony_id=ceremony_id, actor=actor, backend=backend,
                        storage_key_id=state["storage_key_id"],
                        custodians=[s.custodian for s in given])
    return key


def read_share_files(files: list[tuple[Path, bytes]]) -> list[shares.Share]:
    """``files``: (share file, that custodian's passphrase) pairs, opened (for ``unseal``;
    a served KMC keeps them to unseal again in each worker it starts)."""
    return [shares.read_share_file(p, pw) for p, pw in files]


def unseal_from_files(home: Path, files: list[tuple[Path, bytes]], *,
                      actor: str = "administrator", audit: AuditLog) -> StorageKey:
    """``files``: (share file, that custodian's passphrase) pairs."""
    return unseal(home, read_share_files(files), actor=actor, audit=audit)
