"""The opt-in ``webpki`` profile: CA/Browser Forum Baseline Requirements rules for TLS chains.

On top of the RFC 5280 profile: the leaf's subjectAltName, CN, EKU, basicConstraints and key
(BR 7.1.2.7, 7.1.4.3, 6.1.5, 7.1.3.1), the root's EKU and authorityKeyIdentifier (7.1.2.1),
wildcards never over a public suffix (the Public Suffix List, ICANN and private parts), and the
EKU checked through the intermediates as Chromium and Windows do: an intermediate that carries
extendedKeyUsage must allow the purpose too.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

from asn1crypto import keys, x509
from publicsuffixlist import PublicSuffixList

from sscard.validation.profile import Position, describe

_ANY_EKU = "2.5.29.37.0"


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def _key_problem(public_key: keys.PublicKeyInfo) -> str | None:
    name = public_key["algorithm"]["algorithm"].native
    if name == "rsa":
        bits = public_key["public_key"].parsed["modulus"].native.bit_length()
        if bits < 2048 or bits % 8:
            return f"a {bits}-bit RSA key (BR 6.1.5: at least 2048 bits, a multiple of 8)"
        return None
    if name == "ec":
        params = public_key["algorithm"]["parameters"]
        if params.name != "named" or params.chosen.native not in (
            "secp256r1", "secp384r1", "secp521r1"
        ):
            return "an EC key that is not on a named P-256, P-384 or P-521 curve (BR 6.1.5)"
        return None
    return f"a {name} key (BR 6.1.5 allows RSA and ECDSA only)"


def _lenient_ip(text: str) -> str | None:
    """The canonical form of ``text`` read as an IP address the way lenient parsers read it
    (inet_aton: hex, octal, leading zeros), or None when it is no address at all."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ":" not in text:
        try:
            return str(ipaddress.ip_address(socket.inet_aton(text)))
        except OSError:
            return None
    return None


def _leaf_problems(leaf: x509.Certificate, ekus_wanted: frozenset[str]) -> list[str]:
    problems: list[str] = []
    what = describe(leaf, Position.LEAF)
    critical = {e["extn_id"].native: bool(e["critical"].native)
                for e in leaf["tbs_certificate"]["extensions"] or ()}
    if leaf["tbs_certificate"]["version"].native != "v3":
        problems.append(f"the {what} is not version 3 (BR 7.1.1)")
    bc = leaf.basic_constraints_value
    if bc is not None and bc["ca"].native:
        problems.append(f"the {what} has basicConstraints cA (BR 7.1.2.7.8)")
    ku = leaf.key_usage_value
    if ku is not None and "key_cert_sign" in ku.native:
        problems.append(f"the {what} has keyUsage keyCertSign (BR 7.1.2.7.11)")
    eku = leaf.extended_key_usage_value
    if eku is None:
        problems.append(f"the {what} has no extendedKeyUsage (BR 7.1.2.7.6)")
    else:
        present = {e.dotted for e in eku}
        if _ANY_EKU in present:
            problems.append(f"the {what} has anyExtendedKeyUsage (BR 7.1.2.7.10)")
        if critical.get("extended_key_usage"):
            problems.append(f"the {what} has a critical extendedKeyUsage (BR 7.1.2.7.6)")
        missing = ekus_wanted - present
        if missing:
            problems.append(f"the {what}'s extendedKeyUsage lacks {', '.join(sorted(missing))}")
    san = leaf.subject_alt_name_value
    if san is None:
        problems.append(f"the {what} has no subjectAltName (BR 7.1.2.7.12)")
        return problems
    if len(leaf.subject.chosen) and critical.get("subject_alt_name"):
        problems.append(f"the {what} has a critical subjectAltName with a non-empty subject "
                        "(BR 7.1.2.7.12)")
    dns_names = [g.chosen.native for g in san if g.name == "dns_name"]
    ip_names = {str(ipaddress.ip_address(bytes(g.chosen.contents)))
                for g in san if g.name == "ip_address" and len(g.chosen.contents) in (4, 16)}
    for name in dns_names:
        if name.startswith("*."):
            suffix = name[2:].lower()
            if _public_suffixes().is_public(suffix):
                problems.append(f"the {what}'s wildcard {name!r} covers the public suffix "
                                f"{suffix!r} (BR 3.2.2.6)")
    problems.extend(_cn_problems(leaf, what, dns_names, ip_names))
    return problems


def _cn_problems(leaf: x509.Certificate, what: str, dns_names: list[str],
                 ip_names: set[str]) -> list[str]:
    """BR 7.1.4.3: a CN that names a subjectAltName entry must spell it exactly (an IP address
    in RFC 5952 / dotted-decimal form, a host name character for character). A CN written
    differently from the name it stands for lets a reader of the CN see another name than the
    one that was matched. (A CN that names nothing in the SAN is not refused: see
    docs/validation.md on x509-limbo's webpki::cn::not-in-san.)"""
    problems = []
    lowered = {name.lower() for name in dns_names}
    for cn in _common_names(leaf):
        ip = _lenient_ip(cn)
        if ip is not None:
            if cn != ip or ip not in ip_names:
                problems.append(f"the {what}'s CN {cn!r} is not one of its subjectAltName "
                                "iPAddresses in RFC 5952 / dotted-decimal form (BR 7.1.4.3)")
        elif cn not in dns_names and cn.lower() in lowered:
            problems.append(f"the {what}'s CN {cn!r} is not a character-for-character copy of "
                            "its subjectAltName dNSName (BR 7.1.4.3)")
    return problems


def _common_names(cert: x509.Certificate) -> list[str]:
    found = []
    for rdn in cert.subject.chosen:
        for pair in rdn:
            if pair["type"].native == "common_name":
                found.append(str(pair["value"].native))
    return found


def _root_problems(root: x509.Certificate) -> list[str]:
    problems: list[str] = []
    what = describe(root, Position.ANCHOR)
    if root.extended_key_usage_value is not None:
        problems.append(f"the {what} has extendedKeyUsage (BR 7.1.2.1.2)")
    aki = root.authority_key_identifier_value
    if aki is not None:
        if aki["key_identifier"].native is None:
            problems.append(f"the {what}'s authorityKeyIdentifier has no keyIdentifier "
                            "(BR 7.1.2.1.3)")
        elif aki["key_identifier"].native != root.key_identifier:
            problems.append(f"the {what}'s authorityKeyIdentifier differs from its "
                            "subjectKeyIdentifier (BR 7.1.2.1.3)")
        if aki["authority_cert_issuer"].native is not None or (
            aki["authority_cert_serial_number"].native is not None
        ):
            problems.append(f"the {what}'s authorityKeyIdentifier names an issuer or serial "
                            "(BR 7.1.2.1.3)")
    return problems


def path_problems(path: list[x509.Certificate], ekus_wanted: frozenset[str],
                  anchor_checked: bool) -> list[str]:
    """The BR rules that ``path`` (trust anchor first) breaks."""
    problems: list[str] = []
    leaf = path[-1]
    problems.extend(_leaf_problems(leaf, ekus_wanted))
    if anchor_checked:
        problems.extend(_root_problems(path[0]))
    for index, cert in enumerate(path):
        position = (Position.ANCHOR if index == 0 else
                    Position.LEAF if index == len(path) - 1 else Position.CA)
        if position is Position.ANCHOR and not anchor_checked:
            continue
        problem = _key_problem(cert.public_key)
        if problem:
            problems.append(f"the {describe(cert, position)} has {problem}")
        if position is Position.CA:
            eku = cert.extended_key_usage_value
            if eku is not None:
                present = {e.dotted for e in eku}
                if _ANY_EKU not in present and not ekus_wanted <= present:
                    problems.append(f"the {describe(cert, position)} restricts extendedKeyUsage "
                                    f"to {', '.join(sorted(present))}, which does not allow "
                                    f"{', '.join(sorted(ekus_wanted))}")
    return problems
