"""PKCS#11 key handles (HSMs, SoftHSM2) through python-pkcs11.

``Pkcs11Token`` owns one logged-in read/write session on one token. Every call into the token goes
through ``Pkcs11Token.run``, which holds a lock (a PKCS#11 session must not be used by two threads
at once) and, if the session was lost (library re-initialised, token re-inserted), opens and logs
in again once and retries. Keys remember their CKA_ID rather than object handles, so they survive
such a reopen.

``Pkcs11Key`` is a ``KeyHandle``: RSA (PKCS#1 v1.5, PSS, OAEP) and ECDSA P-256/P-384. SM2 needs a
vendor mechanism that SoftHSM2 lacks; asking for it raises ``OperationNotSupported`` naming the
missing mechanism. Secret (AES) keys for the KMC's storage key live in ``pkcs11_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11
from asn1crypto import algos as asn1algos
from asn1crypto import core as asn1core
from asn1crypto import keys as asn1keys
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11exc
from pkcs11.util.ec import encode_named_curve_parameters

from sscard.crypto.algorithms import EncryptionScheme, KeyAlgorithm, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.errors import DecryptionError, InvalidKey, UnsupportedAlgorithm
from sscard.crypto.hashes import NAME_TO_OID
from sscard.crypto.sm2 import DEFAULT_UID
from sscard.keys.base import (
    DEFAULT_PKCS11_MODULE,
    KeyHandle,
    KeyHandleError,
    OperationNotSupported,
)

if TYPE_CHECKING:
    from sscard.keys.pkcs11_secret import Pkcs11SecretKey

DEFAULT_MODULE = DEFAULT_PKCS11_MODULE

T = TypeVar("T")


class Pkcs11Error(KeyHandleError):
    """The PKCS#11 module or token refused or failed an operation."""


class TokenNotFound(Pkcs11Error):
    """No token with the requested label in the module."""


class PinError(Pkcs11Error):
    """Login failed: wrong, locked or expired PIN."""


class KeyNotFound(Pkcs11Error):
    """No key on the token matches the label or id asked for."""


class DuplicateKey(Pkcs11Error):
    """A key with that label or id already exists, or a search matched several keys."""


#: vendor-defined SM2 mechanisms differ per HSM maker; none is standard PKCS#11 (up to 3.1)
SM2_MECHANISM_NAMES = "CKM_SM2_KEY_PAIR_GEN / CKM_SM2 (SM2 with SM3, a vendor-defined mechanism)"
_VENDOR_DEFINED = 0x80000000  # CKM_VENDOR_DEFINED

_SESSION_LOST = (
    p11exc.SessionHandleInvalid,
    p11exc.SessionClosed,
    p11exc.DeviceRemoved,
    p11exc.TokenNotPresent,
    p11exc.UserNotLoggedIn,
)

_HASH_MECH = {"sha1": Mechanism.SHA_1, "sha256": Mechanism.SHA256, "sha384": Mechanism.SHA384,
              "sha512": Mechanism.SHA512}
_MGF = {"sha1": MGF.SHA1, "sha256": MGF.SHA256, "sha384": MGF.SHA384, "sha512": MGF.SHA512}
_RSA_PKCS1_MECH = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS,
                   "sha512": Mechanism.SHA512_RSA_PKCS}
_RSA_PSS_MECH = {"sha256": Mechanism.SHA256_RSA_PKCS_PSS,
                 "sha384": Mechanism.SHA384_RSA_PKCS_PSS,
                 "sha512": Mechanism.SHA512_RSA_PKCS_PSS}
_ECDSA_MECH = {"sha256": Mechanism.ECDSA_SHA256, "sha384": Mechanism.ECDSA_SHA384,
               "sha512": Mechanism.ECDSA_SHA512}
_CURVE_OF = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}

# Logins are per application and token in PKCS#11: a second C_Login in this process returns
# CKR_USER_ALREADY_LOGGED_IN without checking the PIN. So we remember a keyed digest of the PIN
# that did log in and compare later PINs against it (never the PIN itself).
_LOGIN_KEY = secrets.token_bytes(32)
_logins: dict[tuple[str, str], bytes] = {}
_logins_lock = threading.Lock()


def _pin_digest(pin: bytes) -> bytes:
    return hmac.new(_LOGIN_KEY, pin, hashlib.sha256).digest()


# C_Finalize/C_Initialize invalidates every session, and SoftHSM2 then hands out the same
# session handle numbers again: a stale handle would silently act on someone else's session.
# So re-initialisation goes through reinitialize_module, which bumps this epoch, and every
# token compares its epoch before touching its session.
_module_epochs: dict[str, int] = {}


def reinitialize_module(module: str | os.PathLike[str]) -> None:
    """C_Finalize + C_Initialize (to see tokens created since); open tokens reopen lazily."""
    path = os.fspath(module)
    with _logins_lock:
        lib = _load_module(path)
        lib.reinitialize()
        _module_epochs[path] = _module_epochs.get(path, 0) + 1
        for key in [k for k in _logins if k[0] == path]:
            del _logins[key]  # nobody is logged in any more


def _load_module(path: str) -> Any:
    if not Path(path).is_file():
        raise Pkcs11Error(f"PKCS#11 module {path} does not exist")
    try:
        lib = pkcs11.lib(path)
    except p11exc.PKCS11Error as exc:
        raise Pkcs11Error(f"cannot load PKCS#11 module {path}: {exc}") from None
    if not lib.initialized:  # someone finalised it; python-pkcs11 keeps one object per path
        lib.initialize()
    return lib


@dataclass(frozen=True)
class TokenKeyInfo:
    """One key object on a token, as ``sscard key list`` shows it."""

    object_class: str  # "private", "public", "secret"
    label: str
    key_id: bytes
    key_type: str  # "rsa", "ec", "aes", "generic-secret", ...
    size: int | None  # bits: RSA modulus, EC field, secret key length
    curve: str | None = None
    extractable: bool | None = None


class Pkcs11Token:
    """One logged-in session on one token of a PKCS#11 module. Thread-safe; closes on exit."""

    def __init__(
        self,
        token_label: str,
        pin: bytes | None,
        module: str | os.PathLike[str] = DEFAULT_MODULE,
        *,
        hash_on_token: bool = True,
    ) -> None:
        """Open ``token_label`` in ``module`` and log in with ``pin`` (from
        ``sscard.secrets_input.read_secret``; ``None``: public session, no private keys).

        ``hash_on_token``: use combined hash-and-sign mechanisms (CKM_SHA256_RSA_PKCS, ...) when
        the token offers them; otherwise hash here and sign the digest (CKM_RSA_PKCS with a
        DigestInfo, CKM_RSA_PKCS_PSS, CKM_ECDSA). Both give the same signatures.
        """
        self.module_path = os.fspath(module)
        self.token_label = token_label
        self.hash_on_token = hash_on_token
        self._pin = pin
        self._lock = threading.RLock()
        self._session: Any = None
        self._mechanisms: frozenset[int] = frozenset()
        self._epoch = 0
        #: bumped on every (re)open; keys re-find their objects when it changes
        self.generation = 0
        with self._lock:
            self._open()

    @classmethod
    def open_with_pin_from(
        cls,
        token_label: str,
        module: str | os.PathLike[str] = DEFAULT_MODULE,
        *,
        pin_file: os.PathLike[str] | str | None = None,
        pin_stdin: bool = False,
        pin_env: str | None = None,
    ) -> Pkcs11Token:
        """Open a token with its user PIN read by ``sscard.secrets_input.read_secret`` (a file,
        stdin, a named environment variable, else a prompt without echo)."""
        from sscard.secrets_input import read_secret

        pin = read_secret(file=Path(pin_file) if pin_file is not None else None,
                          from_stdin=pin_stdin, env_var=pin_env,
                          prompt=f"PIN for token {token_label}")
        return cls(token_label, pin, module)

    # -- session management -------------------------------------------------------------------

    def _open(self) -> None:
        lib = _load_module(self.module_path)
        try:
            token = lib.get_token(token_label=self.token_label)
        except p11exc.NoSuchToken:
            labels = sorted(
                t.label for t in (s.get_token() for s in lib.get_slots(token_present=True))
                if t.label
            )
            raise TokenNotFound(
                f"no token labelled {self.token_label!r} in {self.module_path}"
                f" (tokens: {', '.join(labels) or 'none'})"
            ) from None
        except p11exc.MultipleTokensReturned:
            raise TokenNotFound(
                f"several tokens are labelled {self.token_label!r} in {self.module_path}"
            ) from None
        self._epoch = _module_epochs.get(self.module_path, 0)
        login_key = (self.module_path, f"{token.label}/{token.serial.hex()}")
        self._session = self._login(token, login_key)
        self._mechanisms = frozenset(int(m) for m in token.slot.get_mechanisms())
        self.generation += 1

    def _login(self, token: Any, login_key: tuple[str, str]) -> Any:
        if self._pin is None:
            return token.open(rw=True)
        pin = self._pin.decode("utf-8")
        try:
            session = token.open(rw=True, user_pin=pin)
        except p11exc.PinIncorrect:
            raise PinError(f"wrong PIN for token {self.token_label!r}") from None
        except p11exc.PinLocked:
            raise PinError(f"the user PIN of token {self.token_label!r} is locked") from None
        except p11exc.PinExpired:
            raise PinError(f"the user PIN of token {self.token_label!r} has expired") from None
        except (p11exc.PinLenRange, p11exc.PinInvalid):
            raise PinError(
                f"PIN for token {self.token_label!r} has the wrong length or characters"
            ) from None
        except p11exc.UserAlreadyLoggedIn:
            with _logins_lock:
                known = _logins.get(login_key)
            if known is None:
                raise Pkcs11Error(
                    f"token {self.token_label!r} is already logged in by other code in this"
                    " process; cannot check the PIN"
                ) from None
            if not hmac.compare_digest(known, _pin_digest(self._pin)):
                raise PinError(f"wrong PIN for token {self.token_label!r}") from None
            return token.open(rw=True)  # shares the process's existing login
        with _logins_lock:
            _logins[login_key] = _pin_digest(self._pin)
        return session

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except p11exc.PKCS11Error:
                pass  # the handle is already gone (library re-initialised): nothing to close

    def run(self, operation: Callable[[Any], T]) -> T:
        """Call ``operation(session)`` under the lock; reopen once if the session was lost."""
        with self._lock:
            if self._session is not None and self._epoch != _module_epochs.get(
                self.module_path, 0
            ):
                self._session = None  # its handle died with the old initialisation
            if self._session is None:
                self._open()
            try:
                return operation(self._session)
            except _SESSION_LOST:
                self._drop_session()
                self._open()
                return operation(self._session)

    def reopen(self) -> None:
        """Close and open the session again (after a library re-initialisation, say)."""
        with self._lock:
            self._drop_session()
            self._open()

    def close(self) -> None:
        with self._lock:
            self._drop_session()

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the PIN
        return f"Pkcs11Token({self.token_label!r}, module={self.module_path!r})"

    # -- mechanisms ---------------------------------------------------------------------------

    @property
    def mechanisms(self) -> frozenset[int]:
        """The mechanism numbers the token's slot lists (CKM_*)."""
        return self._mechanisms

    def has_mechanism(self, mechanism: int) -> bool:
        return int(mechanism) in self._mechanisms

    def _vendor_mechanisms(self) -> str:
        """What the token offers beyond the standard: SM2 can only come from there."""
        vendor = sorted(m for m in self._mechanisms if m >= _VENDOR_DEFINED)
        if not vendor:
            return f"{len(self._mechanisms)} mechanisms listed, none vendor-defined"
        return "vendor-defined mechanisms listed: " + ", ".join(f"0x{m:08X}" for m in vendor)

    def require_mechanism(self, mechanism: Mechanism, purpose: str) -> None:
        if not self.has_mechanism(mechanism):
            raise OperationNotSupported(
                f"token {self.token_label!r} lacks mechanism CKM_{mechanism.name} needed"
                f" for {purpose}"
            )

    # -- asymmetric keys ----------------------------------------------------------------------

    def generate_key(
        self,
        algorithm: KeyAlgorithm | str,
        label: str,
        key_id: bytes | None = None,
    ) -> Pkcs11Key:
        """Generate a key pair on the token (private key sensitive, never extractable)."""
        alg = KeyAlgorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
        if alg is KeyAlgorithm.SM2:
            raise OperationNotSupported(
                f"token {self.token_label!r} has no SM2 key generation: its mechanism list lacks"
                f" {SM2_MECHANISM_NAMES} ({self._vendor_mechanisms()});"
                " keep SM2 keys in software or on the card"
            )
        if alg is KeyAlgorithm.ED25519:
            raise OperationNotSupported(
                "Ed25519 keys on PKCS#11 tokens are not supported by sscard"
                " (CKM_EC_EDWARDS_KEY_PAIR_GEN)"
            )
        if not label:
            raise ValueError("a PKCS#11 key needs a label")
        key_id = key_id if key_id is not None else secrets.token_bytes(16)
        private_template = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
        }

        def generate(session: Any) -> None:
            self._check_free(session, label, key_id)
            if alg.key_type.value == "rsa":
                self.require_mechanism(Mechanism.RSA_PKCS_KEY_PAIR_GEN, f"{alg.value} keys")
                session.generate_keypair(
                    KeyType.RSA, alg.rsa_bits, id=key_id, label=label, store=True,
                    capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY
                    | pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT,
                    private_template=private_template,
                )
            else:
                self.require_mechanism(Mechanism.EC_KEY_PAIR_GEN, f"{alg.value} keys")
                session.generate_keypair(
                    KeyType.EC, id=key_id, label=label, store=True,
                    capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY,
                    public_template={
                        Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVE_OF[alg])
                    },
                    private_template=private_template,
                )

        self._call(generate, f"generating {alg.value} key {label!r}")
        return self.find_key(key_id=key_id)

    def _check_free(self, session: Any, label: str, key_id: bytes) -> None:
        for attrs, what in (({Attribute.LABEL: label}, f"label {label!r}"),
                            ({Attribute.ID: key_id}, f"id {key_id.hex()}")):
            for obj in session.get_objects(attrs):
                if obj[Attribute.CLASS] in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY,
                                            ObjectClass.SECRET_KEY):
                    raise DuplicateKey(
                        f"token {self.token_label!r} already holds a key with {what}"
                    )

    def find_key(self, label: str | None = None, key_id: bytes | None = None) -> Pkcs11Key:
        """The private key with this label and/or CKA_ID, with its public key."""
        if label is None and key_id is None:
            raise ValueError("find_key needs a label or an id")
        what = " and ".join(
            p for p in (f"label {label!r}" if label is not None else "",
                        f"id {key_id.hex()}" if key_id is not None else "") if p
        )

        def find(session: Any) -> Pkcs11Key:
            attrs: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
            if label is not None:
                attrs[Attribute.LABEL] = label
            if key_id is not None:
                attrs[Attribute.ID] = key_id
            found = list(session.get_objects(attrs))
            if not found:
                raise KeyNotFound(f"no private key with {what} on token {self.token_label!r}")
            if len(found) > 1:
                raise DuplicateKey(
                    f"{len(found)} private keys match {what} on token {self.token_label!r};"
                    " give the id to choose one"
                )
            priv = found[0]
            found_id = bytes(priv[Attribute.ID])
            public = self._public_key_of(session, priv, found_id)
            return Pkcs11Key(self, str(priv[Attribute.LABEL]), found_id, public)

        return self._call(find, f"finding the key with {what}")

    def _public_key_of(self, session: Any, priv: Any, key_id: bytes) -> PublicKey:
        key_type = priv[Attribute.KEY_TYPE]
        pubs = list(session.get_objects(
            _identity(ObjectClass.PUBLIC_KEY, key_id, str(priv[Attribute.LABEL]))))
        if key_type == KeyType.RSA:
            source = pubs[0] if pubs else priv  # RSA private keys carry modulus and exponent
            spki = asn1keys.PublicKeyInfo({
                "algorithm": {"algorithm": "rsa", "parameters": None},
                "public_key": asn1keys.RSAPublicKey({
                    "modulus": int.from_bytes(source[Attribute.MODULUS], "big"),
                    "public_exponent": int.from_bytes(source[Attribute.PUBLIC_EXPONENT], "big"),
                }),
            }).dump()
        elif key_type == KeyType.EC:
            if not pubs:
                raise KeyNotFound(
                    f"EC key id {key_id.hex()} on token {self.token_label!r} has no public key"
                    " object (CKA_EC_POINT is only on the public key)"
                )
            spki = _ec_spki(bytes(pubs[0][Attribute.EC_PARAMS]),
                            bytes(pubs[0][Attribute.EC_POINT]))
        else:
            raise UnsupportedAlgorithm(
                f"key id {key_id.hex()} on token {self.token_label!r} has unsupported key type"
                f" {KeyType(key_type).name}"
            )
        try:
            return PublicKey.from_spki(spki)
        except InvalidKey as exc:
            raise UnsupportedAlgorithm(
                f"key id {key_id.hex()} on token {self.token_label!r}: {exc}"
            ) from None

    def list_keys(self) -> list[TokenKeyInfo]:
        """Every key object visible in this session, private first, sorted by label."""

        def collect(session: Any) -> list[TokenKeyInfo]:
            out = []
            for cls, name in ((ObjectClass.PRIVATE_KEY, "private"),
                              (ObjectClass.PUBLIC_KEY, "public"),
                              (ObjectClass.SECRET_KEY, "secret")):
                for obj in session.get_objects({Attribute.CLASS: cls}):
                    out.append(_describe(obj, name))
            order = {"private": 0, "public": 1, "secret": 2}
            return sorted(out, key=lambda k: (order[k.object_class], k.label, k.key_id))

        return self._call(collect, "listing keys")

    # -- secret keys --------------------------------------------------------------------------

    def generate_aes_key(
        self, label: str, bits: int = 256, extractable: bool = False
    ) -> Pkcs11SecretKey:
        """An AES key stored on the token (for the KMC's storage key: non-extractable)."""
        from sscard.keys.pkcs11_secret import generate_aes_key

        return generate_aes_key(self, label, bits, extractable)

    def find_secret_key(self, label: str) -> Pkcs11SecretKey:
        from sscard.keys.pkcs11_secret import find_secret_key

        return find_secret_key(self, label)

    # -- error translation --------------------------------------------------------------------

    def _call(self, operation: Callable[[Any], T], what: str) -> T:
        """``run`` with PKCS#11 errors turned into ones that name the token and the action."""
        try:
            return self.run(operation)
        except p11exc.MechanismInvalid:
            raise OperationNotSupported(
                f"token {self.token_label!r} refused the mechanism for {what}"
            ) from None
        except p11exc.SessionReadOnly:
            raise Pkcs11Error(f"{what}: token {self.token_label!r} session is read-only") from None
        except p11exc.UserNotLoggedIn:
            raise PinError(f"{what}: not logged in to token {self.token_label!r}") from None
        except p11exc.PKCS11Error as exc:
            detail = str(exc) or type(exc).__name__
            raise Pkcs11Error(f"{what} on token {self.token_label!r} failed: {detail}") from None


def _identity(object_class: ObjectClass, key_id: bytes, label: str) -> dict[Attribute, Any]:
    """Search attributes for one half of a key pair: by CKA_ID, which pairs the halves; keys
    made by other tools without an id fall back to the label."""
    attrs: dict[Attribute, Any] = {Attribute.CLASS: object_class}
    if key_id:
        attrs[Attribute.ID] = key_id
    else:
        attrs[Attribute.LABEL] = label
    return attrs


def _ec_spki(ec_params: bytes, ec_point: bytes) -> bytes:
    params = asn1keys.ECDomainParameters.load(ec_params)
    # CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give the raw point)
    try:
        point = asn1core.OctetString.load(ec_point).native
    except ValueError:
        point = ec_point
    # an SM2 key is id-ecPublicKey with the SM2 curve OID; PublicKey.from_spki tells them apart
    algorithm = {"algorithm": "ec", "parameters": params}
    return asn1keys.PublicKeyInfo({"algorithm": algorithm, "public_key": point}).dump()


_KEY_TYPE_NAMES = {KeyType.RSA: "rsa", KeyType.EC: "ec", KeyType.AES: "aes",
                   KeyType.GENERIC_SECRET: "generic-secret", KeyType.DES3: "des3",
                   KeyType.EC_EDWARDS: "ec-edwards", KeyType.DSA: "dsa", KeyType.DH: "dh"}


def _describe(obj: Any, object_class: str) -> TokenKeyInfo:
    key_type = KeyType(obj[Attribute.KEY_TYPE])
    size: int | None = None
    curve: str | None = None
    if key_type == KeyType.RSA:
        size = len(bytes(obj[Attribute.MODULUS]).lstrip(b"\0")) * 8
    elif key_type == KeyType.EC:
        params = asn1keys.ECDomainParameters.load(bytes(obj[Attribute.EC_PARAMS]))
        if params.name == "named":
            curve = params.chosen.native
            size = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521,
                    "sm2p256v1": 256}.get(str(curve))
    elif object_class == "secret":
        try:
            size = int(obj[Attribute.VALUE_LEN]) * 8
        except p11exc.PKCS11Error:
            size = None
    extractable: bool | None = None
    if object_class != "public":
        extractable = bool(obj[Attribute.EXTRACTABLE])
    return TokenKeyInfo(
        object_class=object_class,
        label=str(obj[Attribute.LABEL]),
        key_id=bytes(obj[Attribute.ID]),
        key_type=_KEY_TYPE_NAMES.get(key_type, key_type.name.lower()),
        size=size,
        curve=curve,
        extractable=extractable,
    )


def digest(hash_name: str, data: bytes) -> bytes:
    """SHA-1/SHA-2 digest (hashlib: the cheapest call for the short inputs signing sees)."""
    return hashlib.new(hash_name, data).digest()


def _digest_info(hash_name: str, digest_value: bytes) -> bytes:
    """The PKCS#1 v1.5 DigestInfo that CKM_RSA_PKCS signs when we hash locally."""
    return asn1algos.DigestInfo({
        # RFC 8017 §9.2 note 1: the parameters are an explicit NULL, as every verifier expects
        "digest_algorithm": {"algorithm": NAME_TO_OID[hash_name], "parameters": asn1core.Null()},
        "digest": digest_value,
    }).dump()


def _oaep_param_names(scheme: EncryptionScheme) -> str:
    if scheme is EncryptionScheme.RSA_OAEP_SHA256:
        return "hashAlg CKM_SHA256 and CKG_MGF1_SHA256"
    if scheme is EncryptionScheme.RSA_OAEP_SHA1:
        return "hashAlg CKM_SHA_1 and CKG_MGF1_SHA1"
    return "these parameters"


def _raw_to_der(raw: bytes) -> bytes:
    """PKCS#11 gives ECDSA as r || s (each the order's length); X.509 wants SEQUENCE {r, s}."""
    half = len(raw) // 2
    return bytes(encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                      int.from_bytes(raw[half:], "big")))


class Pkcs11Key(KeyHandle):
    """A private key on a PKCS#11 token, found by label or CKA_ID."""

    def __init__(self, token: Pkcs11Token, label: str, key_id: bytes, public: PublicKey) -> None:
        self.token = token
        self.key_label = label
        self.key_id = key_id
        self._public = public
        self.label = f"pkcs11:token={token.token_label};object={label};id={key_id.hex()}"
        self._object: Any = None
        self._generation = -1

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self._public.algorithm

    def public_key(self) -> PublicKey:
        return self._public

    def _private(self, session: Any) -> Any:
        """The private key object in the current session (re-found after a reopen)."""
        if self._object is None or self._generation != self.token.generation:
            attrs = _identity(ObjectClass.PRIVATE_KEY, self.key_id, self.key_label)
            found = list(session.get_objects(attrs))
            if len(found) != 1:
                raise KeyNotFound(
                    f"private key {self.key_label!r} (id {self.key_id.hex() or 'empty'}) is"
                    f" {'no longer' if not found else 'no longer uniquely'} on token"
                    f" {self.token.token_label!r}"
                )
            self._object = found[0]
            self._generation = self.token.generation
        return self._object

    def sign(
        self,
        data: bytes,
        algorithm: SignatureAlgorithm | None = None,
        uid: bytes = DEFAULT_UID,
    ) -> bytes:
        alg = algorithm or self.default_signature_algorithm
        if alg.key_type is not self.algorithm.key_type:
            raise UnsupportedAlgorithm(
                f"signature algorithm {alg.name} does not fit a {self.algorithm.value} key"
            )
        alg.check_can_sign()
        if self.algorithm is KeyAlgorithm.SM2:
            raise OperationNotSupported(
                f"token {self.token.token_label!r} cannot sign with SM2 key {self.key_label!r}:"
                f" its mechanism list lacks {SM2_MECHANISM_NAMES}"
                f" ({self.token._vendor_mechanisms()})"
            )
        mechanism, param, payload = self._sign_plan(alg, data)
        self.token.require_mechanism(mechanism, f"{alg.name} signatures")

        def do_sign(session: Any) -> bytes:
            return bytes(self._private(session).sign(
                payload, mechanism=mechanism, mechanism_param=param
            ))

        raw = self.token._call(do_sign, f"signing with {self.key_label!r} ({alg.name})")
        return _raw_to_der(raw) if alg.key_type.value == "ec" else raw

    def _sign_plan(
        self, alg: SignatureAlgorithm, data: bytes
    ) -> tuple[Mechanism, Any, bytes]:
        """Mechanism, its parameter and what to feed it: the message, or a local digest."""
        hash_name = alg.hash_name
        assert hash_name is not None  # Ed25519 is refused at generation and lookup
        on_token = self.token.hash_on_token
        if alg.key_type.value == "ec":
            combined = _ECDSA_MECH[hash_name]
            if on_token and self.token.has_mechanism(combined):
                return combined, None, data
            return Mechanism.ECDSA, None, digest(hash_name, data)
        if alg.is_pss:
            salt = hashlib.new(hash_name).digest_size
            param = (_HASH_MECH[hash_name], _MGF[hash_name], salt)
            combined = _RSA_PSS_MECH[hash_name]
            if on_token and self.token.has_mechanism(combined):
                return combined, param, data
            return Mechanism.RSA_PKCS_PSS, param, digest(hash_name, data)
        combined = _RSA_PKCS1_MECH[hash_name]
        if on_token and self.token.has_mechanism(combined):
            return combined, None, data
        return Mechanism.RSA_PKCS, None, _digest_info(hash_name, digest(hash_name, data))

    def decrypt(self, ciphertext: bytes, scheme: EncryptionScheme | None = None) -> bytes:
        if self.algorithm.key_type.value != "rsa":
            raise OperationNotSupported(
                f"{self.algorithm.value} key {self.key_label!r} on token"
                f" {self.token.token_label!r} cannot decrypt"
            )
        scheme = scheme or EncryptionScheme.RSA_OAEP_SHA256
        param: Any
        if scheme is EncryptionScheme.RSA_OAEP_SHA256:
            mechanism, param = Mechanism.RSA_PKCS_OAEP, (Mechanism.SHA256, MGF.SHA256, None)
        elif scheme is EncryptionScheme.RSA_OAEP_SHA1:
            mechanism, param = Mechanism.RSA_PKCS_OAEP, (Mechanism.SHA_1, MGF.SHA1, None)
        elif scheme is EncryptionScheme.RSA_PKCS1V15:
            mechanism, param = Mechanism.RSA_PKCS, None
        else:
            raise UnsupportedAlgorithm(f"{scheme.value} does not fit an RSA key")
        self.token.require_mechanism(mechanism, f"{scheme.value} decryption")

        def do_decrypt(session: Any) -> bytes:
            return bytes(self._private(session).decrypt(
                ciphertext, mechanism=mechanism, mechanism_param=param
            ))

        try:
            return self.token.run(do_decrypt)
        except (p11exc.EncryptedDataInvalid, p11exc.EncryptedDataLenRange,
                p11exc.GeneralError):
            # SoftHSM2 reports a failed OAEP/PKCS#1 decoding as CKR_GENERAL_ERROR
            raise DecryptionError(
                f"RSA decryption ({scheme.value}) with {self.key_label!r} failed:"
                " wrong key or corrupt ciphertext"
            ) from None
        except (p11exc.MechanismParamInvalid, p11exc.ArgumentsBad):
            # SoftHSM2 2.6 answers CKR_ARGUMENTS_BAD to OAEP with anything but SHA-1
            raise OperationNotSupported(
                f"token {self.token.token_label!r} does not accept {scheme.value}:"
                f" CKM_RSA_PKCS_OAEP with {_oaep_param_names(scheme)} was refused"
            ) from None
        except p11exc.PKCS11Error as exc:
            raise Pkcs11Error(
                f"decrypting with {self.key_label!r} on token {self.token.token_label!r}"
                f" failed: {str(exc) or type(exc).__name__}"
            ) from None
