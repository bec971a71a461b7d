"""Escrow named by the caller's own request id (the RA's lost-answer retry): the same id gives
the same escrowed key, enveloped afresh for the same card; the id is the caller's own, and used
for another escrow it is refused by name. No second key pair is ever made for one request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keymgmt.errors import Conflict, KmcError
from keymgmt.service import KeyManagementCentre
from sscard.crypto import envelopes
from sscard.crypto.sm2 import SM2PrivateKey
from tests.kmc.kmc_helpers import new_kmc, principals

SSN = "11010519491231002X"


@pytest.fixture
def kmc(tmp_path: Path) -> Iterator[KeyManagementCentre]:
    k = new_kmc(f"sqlite:///{tmp_path / 'kmc.db'}")
    yield k
    k.close()


def test_the_same_request_id_escrows_once(kmc: KeyManagementCentre) -> None:
    who = principals(kmc)
    card = SM2PrivateKey.generate()
    spki = card.public_key().spki_der()
    first = kmc.escrow(who["ra"], SSN, spki, request_id="rq-1.escrow")
    again = kmc.escrow(who["ra"], SSN, spki, request_id="rq-1.escrow")
    assert (again.key_id, again.public_key_spki) == (first.key_id, first.public_key_spki)
    assert again.enveloped_key_blob is not None and first.enveloped_key_blob is not None
    # enveloped afresh, the same private key inside
    assert envelopes.unwrap(again.enveloped_key_blob, card).private_value() == \
        envelopes.unwrap(first.enveloped_key_blob, card).private_value()
    assert len(kmc.find_keys(who["auditor"], owner=SSN)) == 1
    assert len(kmc.events(who["auditor"], "escrow.generate")) == 1
    # the id used for another card or owner: refused, named, nothing made
    with pytest.raises(Conflict, match="was used for another escrow"):
        kmc.escrow(who["ra"], SSN, SM2PrivateKey.generate().public_key().spki_der(),
                   request_id="rq-1.escrow")
    with pytest.raises(Conflict, match="was used for another escrow"):
        kmc.escrow(who["ra"], "110105194912310029", spki, request_id="rq-1.escrow")
    with pytest.raises(KmcError, match="request_id must be"):
        kmc.escrow(who["ra"], SSN, spki, request_id="no spaces here")
    # another caller's id space is its own; and without an id every call is a new key
    other = kmc.escrow(who["ca"], SSN, spki, request_id="rq-1.escrow")
    assert other.key_id != first.key_id
    assert kmc.escrow(who["ra"], SSN, spki).key_id != first.key_id
    assert len(kmc.find_keys(who["auditor"], owner=SSN)) == 3
