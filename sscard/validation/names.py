"""RFC 5280 name constraints (§4.2.1.10, §6.1.3 b-c, §6.1.4 g), with a bound on the work.

pyhanko-certvalidator's own name-constraint code has no iPAddress support, crashes on otherName
constraints and compares every name with every subtree without limit (x509-limbo's nc-dos cases
cost it seconds or a RecursionError), so this module does the job instead and the validator
switches pyhanko's off. Syntax rules follow RFC 5280 and x509-limbo: a dNSName constraint is a
plain host name (no wildcard, no leading period), an iPAddress constraint is address + contiguous
mask, an rfc822Name constraint is a mailbox, a host or a ``.domain``. A name of the kind a
constraint speaks of that is itself malformed is not within any subtree (and, for excluded
subtrees, counted as matching): nothing unclear passes. A wildcard dNSName is treated as every
name it could match (CVE-2025-61727): excluded if any of them is.

The work is bounded: at most :data:`MAX_COMPARISONS` name-against-subtree comparisons per path
(Go's crypto/x509 and rustls-webpki use the same 250 000), after which the path is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from asn1crypto import x509

from sscard.x509.names import format_name

MAX_COMPARISONS = 250_000

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


_NAME_TEXT_LIMIT = 120


def name_text(name: x509.Name) -> str:
    """A distinguished name for a message: short, and never an exception (asn1crypto's
    ``human_friendly`` recurses without limit on some names, e.g. one with 2048 RDNs)."""
    try:
        text = format_name(name)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        return "(a name that cannot be shown)"
    if len(text) > _NAME_TEXT_LIMIT:
        text = text[:_NAME_TEXT_LIMIT] + "..."
    return text or "(empty name)"


class NameConstraintViolation(Exception):
    """The path breaks a name constraint, or one cannot be evaluated; the message says which."""


def _dns_labels(name: str, *, wildcard_ok: bool) -> list[str] | None:
    """The lower-case labels of a preferred-syntax host name (RFC 1034 §3.5, RFC 1123 §2.1),
    optionally with ``*`` as the whole left-most label; None when malformed."""
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.lower().split(".")
    if wildcard_ok and labels[0] == "*" and len(labels) > 1:
        rest = labels[1:]
    else:
        rest = labels
    if not all(_LABEL.match(label) for label in rest):
        return None
    if rest[-1].isdigit():  # an all-numeric top label: an IP address written as a name
        return None
    return labels


def valid_dns_name(name: str, *, wildcard_ok: bool = True) -> bool:
    return _dns_labels(name, wildcard_ok=wildcard_ok) is not None


def _within_dns(labels: Sequence[str], base: Sequence[str]) -> bool:
    return len(labels) >= len(base) and list(labels[len(labels) - len(base):]) == list(base)


def _mailbox(value: str) -> tuple[str, str] | None:
    if not value.isascii() or value.count("@") != 1:
        return None
    local, host = value.split("@")
    if not local or _dns_labels(host, wildcard_ok=False) is None:
        return None
    return local, host.lower()


@dataclass(frozen=True)
class Subtree:
    """One GeneralSubtree base, checked and put in comparable form."""

    kind: str
    value: object

    def describe(self) -> str:
        if self.kind == "ip_address":
            return str(self.value)
        if self.kind == "directory_name":
            assert isinstance(self.value, x509.Name)
            return name_text(self.value)
        if isinstance(self.value, tuple) and self.kind == "dns_name":
            return ".".join(self.value) or "(all)"
        return str(self.value)


def _subtree(general_subtree: x509.GeneralSubtree) -> Subtree:
    if general_subtree["minimum"].native != 0 or general_subtree["maximum"].native is not None:
        raise NameConstraintViolation(
            "a name constraint sets minimum or maximum, which RFC 5280 forbids")
    base: x509.GeneralName = general_subtree["base"]
    kind = base.name
    if kind == "dns_name":
        text = base.chosen.native
        labels = [] if text == "" else _dns_labels(text, wildcard_ok=False)
        if labels is None:
            raise NameConstraintViolation(f"malformed dNSName name constraint {text!r}")
        return Subtree(kind, tuple(labels))
    if kind == "ip_address":
        raw = bytes(base.chosen.contents)
        if len(raw) not in (8, 32):
            raise NameConstraintViolation(
                f"malformed iPAddress name constraint ({len(raw)} bytes; needs address and mask)")
        half = len(raw) // 2
        try:
            network = ipaddress.ip_network(
                (ipaddress.ip_address(raw[:half]), _prefix_length(raw[half:])), strict=False)
        except ValueError as exc:
            raise NameConstraintViolation(f"malformed iPAddress name constraint: {exc}") from None
        return Subtree(kind, network)
    if kind == "rfc822_name":
        text = base.chosen.native
        if "@" in text:
            if _mailbox(text) is None:
                raise NameConstraintViolation(f"malformed rfc822Name name constraint {text!r}")
            local, host = text.split("@")
            return Subtree(kind, (local, host.lower()))
        domain = text[1:] if text.startswith(".") else text
        if _dns_labels(domain, wildcard_ok=False) is None:
            raise NameConstraintViolation(f"malformed rfc822Name name constraint {text!r}")
        return Subtree(kind, text.lower())
    if kind == "uniform_resource_identifier":
        text = base.chosen.native
        domain = text[1:] if text.startswith(".") else text
        if _dns_labels(domain, wildcard_ok=False) is None:
            raise NameConstraintViolation(f"malformed URI name constraint {text!r}")
        return Subtree(kind, text.lower())
    if kind == "directory_name":
        return Subtree(kind, base.chosen)
    # otherName, x400Address, ediPartyName, registeredID: compared by exact encoding only
    return Subtree(kind, base.chosen.dump())


def _prefix_length(mask: bytes) -> int:
    bits = "".join(f"{b:08b}" for b in mask)
    ones = bits.count("1")
    if bits != "1" * ones + "0" * (len(bits) - ones):
        raise ValueError("the mask is not contiguous")
    return ones


def parse_subtrees(subtrees: x509.GeneralSubtrees) -> list[Subtree]:
    return [_subtree(s) for s in subtrees]


@dataclass(frozen=True)
class _Name:
    kind: str
    value: object
    shown: str


def _names(cert: x509.Certificate) -> Iterator[_Name]:
    if len(cert.subject.chosen):
        yield _Name("directory_name", cert.subject, name_text(cert.subject))
    san = cert.subject_alt_name_value
    if san is None:
        for rdn in cert.subject.chosen:
            for pair in rdn:
                if pair["type"].native == "email_address":
                    text = str(pair["value"].native)
                    yield _Name("rfc822_name", _mailbox(text), text)
        return
    for general_name in san:
        kind = general_name.name
        if kind == "dns_name":
            text = general_name.chosen.native
            labels = _dns_labels(text, wildcard_ok=True)
            yield _Name(kind, tuple(labels) if labels else None, text)
        elif kind == "rfc822_name":
            text = general_name.chosen.native
            yield _Name(kind, _mailbox(text), text)
        elif kind == "uniform_resource_identifier":
            text = general_name.chosen.native
            yield _Name(kind, _uri_host(text), text)
        elif kind == "ip_address":
            raw = bytes(general_name.chosen.contents)
            try:
                address: object = ipaddress.ip_address(raw) if len(raw) in (4, 16) else None
            except ValueError:
                address = None
            yield _Name(kind, address, str(address) if address else raw.hex())
        elif kind == "directory_name":
            yield _Name(kind, general_name.chosen, name_text(general_name.chosen))
        else:
            yield _Name(kind, general_name.chosen.dump(), kind)


def _uri_host(uri: str) -> str | None:
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return None
    if not host or _dns_labels(host, wildcard_ok=False) is None:
        return None
    return host.lower()


def _rdns_within(name: x509.Name, base: x509.Name) -> bool:
    ours, theirs = name.chosen, base.chosen
    return len(ours) >= len(theirs) and all(
        ours[i].hashable == theirs[i].hashable for i in range(len(theirs)))


def _host_within(host: str, constraint: str) -> bool:
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _within(name: _Name, tree: Subtree, *, excluding: bool) -> bool:
    """Whether ``name`` lies in ``tree`` (for an excluded subtree: whether it might)."""
    kind, value = name.kind, name.value
    if kind in ("dns_name", "ip_address", "rfc822_name", "uniform_resource_identifier") and (
        value is None
    ):
        return excluding  # a malformed name is in no permitted subtree, and maybe excluded
    if kind == "dns_name":
        assert isinstance(value, tuple) and isinstance(tree.value, tuple)
        base = tree.value
        if value[0] == "*":
            if excluding and len(base) == len(value) and _within_dns(value[1:], base[1:]):
                return True  # the wildcard can stand for the excluded host itself
            return _within_dns(value[1:], base)
        return _within_dns(value, base)
    if kind == "ip_address":
        network = tree.value
        assert isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
        assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
        return value.version == network.version and value in network
    if kind == "rfc822_name":
        assert isinstance(value, tuple)
        if isinstance(tree.value, tuple):
            return value == tree.value
        return _host_within(value[1], str(tree.value))
    if kind == "uniform_resource_identifier":
        return _host_within(str(value), str(tree.value))
    if kind == "directory_name":
        assert isinstance(name.value, x509.Name) and isinstance(tree.value, x509.Name)
        return _rdns_within(name.value, tree.value)
    return name.value == tree.value


def _tree_count(value: object) -> int:
    return len(value) if isinstance(value, x509.GeneralSubtrees) else 0


@dataclass
class NameConstraintState:
    """Permitted and excluded subtrees gathered down a path (RFC 5280 §6.1.2 b-c)."""

    permitted: list[dict[str, list[Subtree]]] = field(default_factory=list)
    excluded: dict[str, list[Subtree]] = field(default_factory=dict)
    comparisons: int = 0

    def add(self, cert: x509.Certificate, describe: Callable[[], str]) -> None:
        """Take in ``cert``'s nameConstraints (§6.1.4 g); ``describe()`` names the
        certificate in a message (called only when there is one to write)."""
        value = cert.name_constraints_value
        if value is None:
            return
        permitted, excluded = value["permitted_subtrees"], value["excluded_subtrees"]
        if not _tree_count(permitted) and not _tree_count(excluded):
            raise NameConstraintViolation(
                f"the {describe()}'s nameConstraints is empty (RFC 5280 §4.2.1.10 needs "
                "permitted or excluded subtrees)")
        try:
            if _tree_count(permitted):
                generation: dict[str, list[Subtree]] = {}
                for tree in parse_subtrees(permitted):
                    generation.setdefault(tree.kind, []).append(tree)
                self.permitted.append(generation)
            if _tree_count(excluded):
                for tree in parse_subtrees(excluded):
                    self.excluded.setdefault(tree.kind, []).append(tree)
        except NameConstraintViolation as exc:
            raise NameConstraintViolation(f"the {describe()}: {exc}") from None

    def _count(self, n: int) -> None:
        self.comparisons += n
        if self.comparisons > MAX_COMPARISONS:
            raise NameConstraintViolation(
                f"name-constraint checking stopped after {MAX_COMPARISONS} comparisons "
                "(too many names or constraints in the path)")

    def check(self, cert: x509.Certificate, describe: Callable[[], str]) -> None:
        """Raise :class:`NameConstraintViolation` unless every name of ``cert`` is within the
        permitted subtrees and outside the excluded ones."""
        if not self.permitted and not self.excluded:
            return
        for name in _names(cert):
            for tree in self.excluded.get(name.kind, ()):
                self._count(1)
                if _within(name, tree, excluding=True):
                    raise NameConstraintViolation(
                        f"the {describe()}'s {name.kind} {name.shown!r} is in the excluded subtree "
                        f"{tree.describe()!r}")
            for generation in self.permitted:
                trees = generation.get(name.kind)
                if trees is None:
                    continue  # no constraint on this kind of name from that certificate
                self._count(len(trees))
                if not any(_within(name, tree, excluding=False) for tree in trees):
                    raise NameConstraintViolation(
                        f"the {describe()}'s {name.kind} {name.shown!r} is not in the permitted "
                        f"subtrees ({', '.join(t.describe() for t in trees[:5])}"
                        f"{', ...' if len(trees) > 5 else ''})")
