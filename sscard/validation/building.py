"""Path building with a budget (RFC 4158 §2-3; budgets after Go's crypto/x509 and rustls-webpki).

A caller controls the certificates it sends, so path building must not cost more than a fixed
amount whatever they are: 100 certificates sharing one subject (and maybe one key) would give
pyhanko-certvalidator's exhaustive builder an exponential number of paths. Here the search is an
explicit-stack depth-first walk from the leaf to the trust anchors that

- checks each issuer->subject signature once (cached) and counts the checks (at most
  ``Budget.signature_checks``, Go's and rustls-webpki's 100);
- counts every candidate it considers (at most ``Budget.steps``);
- never puts a certificate, or a (subject, key) pair, twice in one path (RFC 4158 §5.2);
- stops at ``Budget.max_intermediates`` below the anchor, self-issued ones not counted (at most
  :data:`MAX_SELF_ISSUED` of those);
- hands out at most ``Budget.paths`` complete paths, best first (AKI/SKI match, anchors first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from asn1crypto import x509

from sscard.validation.memo import (
    BoundedCache,
    digest_of,
    encoding_key,
    kept_signed_parts,
    within_validation,
)

DEFAULT_MAX_INTERMEDIATES = 8
# Self-issued intermediates (key rollover) do not count towards the depth, as they do not
# towards pathLenConstraint (RFC 5280 §4.2.1.9); this many of them at most in one path.
MAX_SELF_ISSUED = 4


@dataclass(frozen=True)
class Budget:
    signature_checks: int = 100
    steps: int = 2_000
    paths: int = 16
    max_intermediates: int = DEFAULT_MAX_INTERMEDIATES


class BudgetExhausted(Exception):
    """Path building stopped before it was done; the message says which limit was hit."""


@dataclass(frozen=True)
class _Node:
    """A certificate and what the search compares about it, computed once (asn1crypto
    computes a name's comparison form afresh on every comparison)."""

    cert: x509.Certificate
    key: tuple[bytes, bytes]  # (subject, public key): a path holds each pair once
    issuer_key: bytes
    self_issued: bool
    fingerprint: bytes


@dataclass(frozen=True)
class _Facts:
    """What the search compares about a certificate, all of it read off its encoding."""

    subject: bytes  # the names' comparison forms (name_key)
    issuer: bytes
    public_key: bytes  # the SubjectPublicKeyInfo's DER
    fingerprint: bytes


# By encoding, for the kept copies (memo.private_copy) of the CA certificates and anchors that
# every validation builds from: one look-up instead of two names, a key and a fingerprint.
_FACTS: BoundedCache[bytes, _Facts] = BoundedCache(4096)


def _facts(cert: x509.Certificate) -> _Facts:
    return within_validation("facts", cert, lambda: _facts_of(cert))


def _facts_of(cert: x509.Certificate) -> _Facts:
    if kept_signed_parts(cert) is None:
        # not a kept copy (a leaf seen once, a certificate that does not re-encode to its
        # octets): its facts may depend on what was read of it, so are not shared
        return _work_out_facts(cert)
    return _FACTS.get_or_make(encoding_key(cert), lambda: _work_out_facts(cert))


def _work_out_facts(cert: x509.Certificate) -> _Facts:
    return _Facts(name_key(cert.subject), name_key(cert.issuer), bytes(cert.public_key.dump()),
                  fingerprint(cert))


def fingerprint(cert: x509.Certificate) -> bytes:
    """What tells two certificates apart: the signed part and its signature. Not
    ``cert.dump()``: asn1crypto re-encodes a certificate it has parsed, and loses a
    subjectUniqueID's unused-bits count doing so (PKITS 4.3.6), after which the signature
    no longer verifies."""
    return within_validation("fingerprint", cert, lambda: _fingerprint(cert))


def _fingerprint(cert: x509.Certificate) -> bytes:
    # a kept copy's parts are read off the octets it was parsed from: what
    # tbs_certificate.dump() and signature_value.contents give a certificate that re-encodes
    # to them, without asn1crypto walking it twice more
    parts = kept_signed_parts(cert)
    if parts is not None:
        return parts.signed + parts.signature_bits
    return bytes(cert["tbs_certificate"].dump()) + bytes(cert["signature_value"].contents)


def _key_ids_agree(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    aki, ski = cert.authority_key_identifier, issuer.key_identifier
    return aki is None or ski is None or aki == ski


# Comparison forms of names by their encoding: asn1crypto computes one (RFC 4518 string
# preparation of every attribute) afresh on each call, and the same CA names recur in every
# validation. Bounded, least recently used out.
_NAME_KEYS: BoundedCache[bytes, bytes] = BoundedCache(4096)


def name_key(name: x509.Name) -> bytes:
    """The comparison form of ``name`` (RFC 5280 §7.1), as bytes; raises what asn1crypto
    raises for a name it cannot compare (TypeError, ValueError, AttributeError)."""
    return within_validation("name", name, lambda: _NAME_KEYS.get_or_make(
        digest_of(bytes(name.dump())), lambda: _comparison_form(name)))


def _comparison_form(name: x509.Name) -> bytes:
    # asn1crypto's form of each RDN, with its number of attributes: the form keeps one value
    # per attribute type, and asn1crypto's == also compares the counts
    return repr([(len(rdn), rdn.hashable) for rdn in name.chosen]).encode()


def self_issued(cert: x509.Certificate) -> bool:
    """Whether subject and issuer are the same name (RFC 5280 §7.1 comparison), through the
    cached comparison forms: asn1crypto's Name == prepares every attribute again each time."""
    try:
        return name_key(cert.subject) == name_key(cert.issuer)
    except (TypeError, ValueError, AttributeError):
        return bool(cert.subject == cert.issuer)


class PathBuilder:
    """Build candidate paths, trust anchor first, leaf last."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate],
        signed_by: Callable[[x509.Certificate, x509.Certificate], bool],
        budget: Budget,
    ) -> None:
        self._budget = budget
        self._signed_by = signed_by
        self._by_subject: dict[bytes, list[tuple[bool, x509.Certificate]]] = {}
        seen: set[bytes] = set()
        for is_anchor, cert in [(True, a) for a in anchors] + [(False, c) for c in intermediates]:
            facts = _facts(cert)
            if facts.fingerprint in seen:
                continue
            seen.add(facts.fingerprint)
            self._by_subject.setdefault(facts.subject, []).append((is_anchor, cert))
        self._checked: dict[tuple[bytes, bytes], bool] = {}
        self._nodes: dict[int, _Node] = {}
        self.signature_checks = 0
        self.steps = 0
        # (issuer, subject) pairs whose names chain but whose signature did not verify: the
        # reason to give when no path is found
        self.bad_signatures: list[tuple[x509.Certificate, x509.Certificate]] = []
        # every certificate some partial path reached, leaf first
        self.reached: list[x509.Certificate] = []

    def _node(self, cert: x509.Certificate) -> _Node:
        node = self._nodes.get(id(cert))
        if node is None or node.cert is not cert:
            facts = _facts(cert)
            node = _Node(cert, (facts.subject, facts.public_key), facts.issuer,
                         facts.subject == facts.issuer, facts.fingerprint)
            self._nodes[id(cert)] = node
        return node

    def _verified(self, issuer: _Node, cert: _Node) -> bool:
        key = (issuer.key[1], cert.fingerprint)
        if key not in self._checked:
            if self.signature_checks >= self._budget.signature_checks:
                raise BudgetExhausted(
                    f"path building stopped after {self.signature_checks} signature checks")
            self.signature_checks += 1
            self._checked[key] = self._signed_by(issuer.cert, cert.cert)
        return self._checked[key]

    def _candidates(self, node: _Node) -> list[tuple[bool, x509.Certificate]]:
        found = self._by_subject.get(node.issuer_key, [])
        aki = node.cert.authority_key_identifier

        def rank(item: tuple[bool, x509.Certificate]) -> tuple[int, int]:
            is_anchor, candidate = item
            ski = candidate.key_identifier
            mismatch = int(aki is not None and ski is not None and aki != ski)
            return (mismatch, 0 if is_anchor else 1)

        return sorted(found, key=rank)

    def paths(self, leaf: x509.Certificate) -> Iterator[list[x509.Certificate]]:
        """Complete paths (anchor, intermediates..., leaf); raises :class:`BudgetExhausted`
        when a limit is hit before the search is over."""
        handed_out = 0
        self.reached.append(leaf)
        # each frame: the path so far (leaf first) and the candidates still to try above it
        stack: list[tuple[list[_Node], Iterator[tuple[bool, x509.Certificate]]]] = [
            ([self._node(leaf)], iter(self._candidates(self._node(leaf))))
        ]
        while stack:
            path, pending = stack[-1]
            step = next(pending, None)
            if step is None:
                stack.pop()
                continue
            self.steps += 1
            if self.steps > self._budget.steps:
                raise BudgetExhausted(f"path building stopped after {self._budget.steps} steps")
            is_anchor, candidate = step
            node = self._node(candidate)
            if any(n.cert is candidate or n.key == node.key for n in path):
                continue
            if not self._verified(node, path[-1]):
                if _key_ids_agree(candidate, path[-1].cert):
                    # named as the issuer and not ruled out by key identifiers: a signature
                    # that should have verified (else: another CA of the same name)
                    self.bad_signatures.append((candidate, path[-1].cert))
                continue
            if is_anchor:
                yield [candidate, *(n.cert for n in reversed(path))]
                handed_out += 1
                if handed_out >= self._budget.paths:
                    return
                continue
            self_issued = node.self_issued
            counted = sum(1 for n in path[1:] if not n.self_issued)
            if self_issued and len(path) - 1 - counted >= MAX_SELF_ISSUED:
                continue
            if not self_issued and counted >= self._budget.max_intermediates:
                continue  # one more intermediate would pass the depth limit
            self.reached.append(candidate)
            stack.append(([*path, node], iter(self._candidates(node))))
