"""Bounded caches of the validator's pure steps, keyed by encodings.

A gateway validates many leaves under a few issuing CAs: the same CA certificates, trust
anchors and CRLs come back on every call, as new objects with the same bytes. What is worked
out from those bytes alone (a parsed copy, the profile verdict, a name's comparison form) is
kept here, keyed by the encoding and every other input the answer depends on, so a cache can
never change a verdict. Every cache is bounded (least recently used out): callers choose the
encodings.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable
from contextvars import ContextVar
from typing import Any, Generic, ParamSpec, TypeVar

from asn1crypto import core

from sscard.asn1.mutation import is_never_changed, never_changed
from sscard.asn1.signed import SignedParts, signed_parts

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_Asn1T = TypeVar("_Asn1T", bound=core.Asn1Value)
_P = ParamSpec("_P")

_ALL: list[BoundedCache[object, object]] = []


class BoundedCache(Generic[_K, _V]):
    """A least-recently-used map of at most ``size`` entries, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.append(self)  # type: ignore[arg-type]

    def get(self, key: _K, default: _V | None = None) -> _V | None:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get_or_make(self, key: _K, make: Callable[[], _V]) -> _V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: make() may use other caches
        self.put(key, value)
        return value

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_SHORT = 128


def digest_of(encoded: bytes) -> bytes:
    """The key a cache keeps for an encoding: callers choose encodings and their sizes, so a
    bounded number of entries must not hold their octets. A long one is keyed by its SHA-256
    (equal keys, equal octets); a short one (most names) by itself, as hashing it would cost
    more than the lookup saves; the first octet keeps the two kinds apart."""
    if len(encoded) <= _SHORT:
        return b"=" + encoded
    return b"#" + hashlib.sha256(encoded).digest()


# What this thread's validations worked out about the objects they hold, by identity. Reading
# an asn1crypto value's encoding (dump) first walks everything parsed of it for changes, and
# every validation asks for the same CA certificates' fingerprints, signed parts and names'
# comparison forms. Nothing changes an object once it is in here:
# - the kept private copies (private_copy) and everything in them are only read, by the
#   validator and pyhanko, and never reach a caller (handed_back gives new parses);
# - any other object a validation holds (a leaf's new parse, what pyhanko builds) is never
#   seen by identity by a later validation: private_copy never hands out the caller's object,
#   and pyhanko copies a name before it extends one.
# Each entry holds its object, so no other object can take its id. Bounded: emptied when full
# (a gateway's new leaves add a few entries each; the CA certificates' come straight back).
_THIS_VALIDATION: ContextVar[dict[tuple[str, int], tuple[object, object]] | None] = ContextVar(
    "sscard_validation_identity_memo", default=None)
_LASTING_MAX = 8192


class _ThreadMemo(threading.local):
    """The identity memo of one thread's validations (its objects are that thread's)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int], tuple[object, object]] = {}


_LASTING = _ThreadMemo()


def _thread_memo() -> dict[tuple[str, int], tuple[object, object]]:
    items = getattr(_LASTING, "items", None)
    if items is None:  # after forget_all
        _LASTING.__init__()  # type: ignore[misc]
        items = _LASTING.items
    if len(items) > _LASTING_MAX:
        items.clear()
    return items


def one_validation_each(
    validation: Callable[_P, Coroutine[Any, Any, _V]],
) -> Callable[_P, Coroutine[Any, Any, _V]]:
    """Make each call of the coroutine function ``validation`` a validation, in which
    :func:`within_validation` remembers (the thread's memo)."""

    @functools.wraps(validation)
    async def one(*args: _P.args, **kwargs: _P.kwargs) -> _V:
        token = _THIS_VALIDATION.set(_thread_memo())
        try:
            return await validation(*args, **kwargs)
        finally:
            _THIS_VALIDATION.reset(token)

    return one


def within_validation(kind: str, value: object, make: Callable[[], _V]) -> _V:
    """``make()``, worked out once per ``value`` object (and ``kind``) by this thread's
    validations (see _THIS_VALIDATION: ``make`` must depend on the object alone); outside a
    validation, every time."""
    memo = _THIS_VALIDATION.get()
    if memo is None:
        return make()
    key = (kind, id(value))
    kept = memo.get(key)
    if kept is not None and kept[0] is value:
        return kept[1]  # type: ignore[return-value]
    made = make()
    memo[key] = (value, made)
    return made


def _remembered(copy: _Asn1T, encoded: bytes, digest: bytes) -> _Asn1T:
    """``copy``, a kept private copy whose dump() is ``encoded`` (``digest_of`` it:
    ``digest``): so :func:`encoding` and :func:`encoding_key` need not work them out again."""
    memo = _THIS_VALIDATION.get()
    if memo is not None:
        memo[("kept", id(copy))] = (copy, encoded)
        memo[("digest", id(copy))] = (copy, digest)
    return copy


def kept_encoding(value: core.Asn1Value) -> bytes | None:
    """The encoding of ``value`` when it is a kept private copy handed out by this thread's
    validations (its dump() equal to the octets it was parsed from), else None."""
    memo = _THIS_VALIDATION.get()
    kept = None if memo is None else memo.get(("kept", id(value)))
    return kept[1] if kept is not None and kept[0] is value else None  # type: ignore[return-value]


def kept_signed_parts(value: core.Asn1Value) -> SignedParts | None:
    """The signed parts of a certificate or CRL that is a kept private copy handed out in
    this validation (read off the octets it was parsed from, once per validation); None for
    any other value."""
    encoded = kept_encoding(value)
    if encoded is None:
        return None
    return within_validation("signed", value, lambda: _signed_parts_or_none(encoded))


def _signed_parts_or_none(encoded: bytes) -> SignedParts | None:
    try:
        return signed_parts(encoded)
    except (ValueError, IndexError):  # BER: asn1crypto reads it
        return None


def encoding(value: core.Asn1Value) -> bytes:
    """``value.dump()``, once per object in a validation (known already for a kept private
    copy): asn1crypto walks everything parsed of a value for changes on each dump()."""
    kept = kept_encoding(value)
    if kept is not None:
        return kept
    return within_validation("encoding", value, lambda: bytes(value.dump()))


def encoding_key(value: core.Asn1Value) -> bytes:
    """``digest_of(encoding(value))``, once per object in a validation (known already for a
    kept private copy): a large CRL's SHA-256 is worth computing once."""
    return within_validation("digest", value, lambda: digest_of(encoding(value)))


def forget_all() -> None:
    """Empty every cache of the validator, and this thread's parsed copies (for measurements
    and tests without them)."""
    for cache in _ALL:
        cache.clear()
    _COPIES.__dict__.clear()
    _LASTING.__dict__.clear()


class _ThreadCopies(threading.local):
    """Parsed private copies per thread: asn1crypto parses lazily and memoises what it parsed
    on the object, so a copy shared by threads would be written by two at once."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple[type, bytes], tuple[core.Asn1Value, int]] = OrderedDict()
        self.size = 0
        self.ids: dict[int, core.Asn1Value] = {}  # the kept copies by identity


_COPIES = _ThreadCopies()
# per thread: the CA certificates, anchors and CRLs a deployment uses, and at most this many
# octets of encodings (a parsed copy takes several times its encoding's size)
_COPIES_MAX = 256
_COPIES_MAX_OCTETS = 16 * 1024 * 1024


def _round_trips(value: core.Asn1Value, encoded: bytes) -> bool:
    """Whether a fully parsed copy of ``value`` encodes again to exactly ``encoded``. asn1crypto
    can re-encode a value it has parsed differently (a BIT STRING with unused bits loses them:
    PKITS 4.3.6's CA, whose length also triggered the bug sscard.asn1.lengths corrects), and a
    reused copy in that state would break a later signature check."""
    probe = _parse(value, encoded)
    try:
        probe.native  # noqa: B018
        return bytes(probe.dump(force=True)) == encoded
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
            UnicodeDecodeError, RecursionError):
        return False


_ROUND_TRIPS: BoundedCache[tuple[type, bytes], bool] = BoundedCache(4096)
_SEEN: BoundedCache[tuple[type, bytes], bool] = BoundedCache(4096)


def _parse(value: _Asn1T, encoded: bytes) -> _Asn1T:
    """A new parse of ``encoded``, which ``value`` was parsed from: cheaper than a deep copy of
    a value already read (asn1crypto parses lazily)."""
    if value.explicit is not None or value.implicit:
        return value.copy()  # keeps the tagging a spec gave it
    return type(value).load(encoded)


def encoding_of(value: core.Asn1Value) -> bytes | None:
    """The octets ``value`` was parsed from, read without ``dump()`` (which may re-encode the
    caller's object); None for a value built or changed since."""
    header = value._header
    mutated = getattr(value, "_is_mutated", None)
    if header is None or (mutated is not None and mutated()):
        return None
    return bytes(header + value._contents + (value._trailer or b""))


def fresh_copy(value: _Asn1T) -> _Asn1T:
    """A new parse of what ``value`` was parsed from (a deep copy of one built or changed):
    to be read without changing ``value``."""
    encoded = encoding_of(value)
    return value.copy() if encoded is None else _parse(value, encoded)


def private_copy(value: _Asn1T) -> _Asn1T:
    """A parse of ``value``'s encoding that the caller does not hold. An encoding seen before
    that survives asn1crypto's re-encoding unchanged gets the copy of that encoding kept for
    this thread, with what was parsed of it so far (parsing is the costliest part of a
    validation); any other a new parse."""
    encoded = encoding_of(value)
    if encoded is None:
        return value.copy()
    key = (type(value), digest_of(encoded))
    if not _SEEN.get(key):
        _SEEN.put(key, True)  # a leaf comes once: kept, and probed, from its second coming on
        return _parse(value, encoded)
    if not _ROUND_TRIPS.get_or_make(key, lambda: _round_trips(value, encoded)):
        return _parse(value, encoded)
    if getattr(_COPIES, "items", None) is None:
        _COPIES.__init__()  # type: ignore[misc]  # after forget_all
    items = _COPIES.items
    kept = items.get(key)
    if kept is not None:
        # reused without a change check (a walk of all that was parsed of it): a kept copy
        # is only read while a validation runs, and never handed to a caller (handed_back)
        items.move_to_end(key)
        return _remembered(kept[0], encoded, key[1])
    copy = _parse(value, encoded)
    # its dump() and its signed part's (pyhanko dumps a certificate's tbsCertificate for each
    # signature check) without a change walk: it is never changed
    never_changed(copy)
    never_changed(copy[0])
    items[key] = (copy, len(encoded))
    _COPIES.ids[id(copy)] = copy
    _COPIES.size += len(encoded)
    while len(items) > _COPIES_MAX or (_COPIES.size > _COPIES_MAX_OCTETS and len(items) > 1):
        _, (gone, octets) = items.popitem(last=False)
        del _COPIES.ids[id(gone)]
        _COPIES.size -= octets
    return _remembered(copy, encoded, key[1])


def handed_back(value: _Asn1T) -> Callable[[], _Asn1T]:
    """What makes the value a validation gives its caller for ``value``: a new parse of a
    kept private copy (the caller could change what it is given, and kept copies are reused
    unchecked), when first asked for; any other value itself."""
    kept = getattr(_COPIES, "ids", {}).get(id(value))
    # one dropped from the kept copies during this validation is still declared unchanged
    if kept is not value and not is_never_changed(value):
        return lambda: value
    if value.explicit is not None or value.implicit:
        copy = value.copy()  # keeps the tagging a spec gave it
        return lambda: copy
    # a kept copy is never changed: the octets it was parsed from, without a walk
    encoded = bytes(value._header + value._contents + (value._trailer or b""))
    return functools.partial(type(value).load, encoded)
