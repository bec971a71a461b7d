"""sscard.asn1.mutation: the quicker change check answers as asn1crypto's own, so a changed
value (at any depth) is still re-encoded by dump() and an unchanged one is not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asn1crypto import core, x509

import sscard.asn1  # noqa: F401  (applies the check)
from sscard.asn1.mutation import _is_mutated, never_changed
from tests.validation.chain import make_ca, make_leaf

CA = make_ca("CN=Mutation CA,C=CN")
LEAF = make_leaf("CN=Mutation Leaf,C=CN", CA, dns_names=["a.example", "b.example"])


def _asn1crypto_is_mutated(value: core.Asn1Value) -> bool:
    """asn1crypto 1.5.1's own walk (core.Sequence._is_mutated), written out to compare."""
    mutated = value._mutated
    if value.children is not None:
        for child in value.children:
            if isinstance(child, core.Sequence) or isinstance(child, core.SequenceOf):
                mutated = mutated or _asn1crypto_is_mutated(child)
    return mutated


def _walked(value: core.Asn1Value) -> list[core.Asn1Value]:
    found = [value]
    for child in value.children or ():
        if isinstance(child, (core.Sequence, core.SequenceOf)):
            found.extend(_walked(child))
    return found


def _set_serial(cert: x509.Certificate) -> None:
    cert["tbs_certificate"]["serial_number"] = 7


def _set_san(cert: x509.Certificate) -> None:
    for ext in cert["tbs_certificate"]["extensions"]:
        if ext["extn_id"].native == "subject_alt_name":
            names = ext["extn_value"].parsed
            names[0] = x509.GeneralName(name="dns_name", value="evil.example")
            ext["extn_value"] = names  # asn1crypto marks the OCTET STRING's holder


def _append_rdn(cert: x509.Certificate) -> None:
    rdns = cert["tbs_certificate"]["subject"].chosen
    value = x509.DirectoryString(name="utf8_string", value="x")
    rdns.append(x509.RelativeDistinguishedName([{"type": "common_name", "value": value}]))


def _nothing(cert: x509.Certificate) -> None:
    cert.native  # noqa: B018  (parses everything, changes nothing)


@pytest.mark.parametrize("change", [_nothing, _set_serial, _set_san, _append_rdn])
def test_answers_as_asn1crypto(change: Callable[[x509.Certificate], None]) -> None:
    cert = x509.Certificate.load(LEAF.cert.dump())
    cert.native  # noqa: B018
    change(cert)
    for value in _walked(cert):
        assert _is_mutated(value) == _asn1crypto_is_mutated(value)
    assert type(cert)._is_mutated is _is_mutated
    # asn1crypto does not look inside a CHOICE (the subject Name): the RDN appended there
    # goes unseen by both, as before
    changed = change in (_set_serial, _set_san)
    assert cert._is_mutated() is changed
    assert (cert.dump() == LEAF.cert.dump()) is not changed


def test_a_value_never_changed_dumps_its_octets_without_a_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = LEAF.cert.dump()
    cert = x509.Certificate.load(encoded)
    cert.native  # noqa: B018
    never_changed(cert)
    never_changed(cert["tbs_certificate"])

    def no_walk(self: object) -> bool:
        raise AssertionError("walked")

    monkeypatch.setattr(core.Sequence, "_is_mutated", no_walk)
    assert cert.dump() == encoded
    assert cert["tbs_certificate"].dump() == x509.Certificate.load(encoded)[0].dump()
    monkeypatch.undo()
    # a copy is an ordinary value again: changed, it is re-encoded
    copy = cert.copy()
    copy["tbs_certificate"]["serial_number"] = 5
    assert copy.dump() != encoded and copy["tbs_certificate"]["serial_number"].native == 5


def test_a_value_already_changed_is_not_declared_unchanged() -> None:
    cert = x509.Certificate.load(LEAF.cert.dump())
    cert["tbs_certificate"]["serial_number"] = 5
    never_changed(cert)
    assert cert.dump() != LEAF.cert.dump()  # re-encoded with the change, as before
    assert x509.Certificate.load(cert.dump())["tbs_certificate"]["serial_number"].native == 5
