"""End-to-end personalisation of a blank card with dual certificates (DESIGN §6 flow 1).

Steps, each journaled (``reader_tools.issuance_journal``) as soon as it is done, each safe to
run again:

1. ``data``: external authentication with the update key (PSAM or KMC cryptogram), write EF05
   (card data) and EF06 (holder data), read both back.
2. ``pin``: set the cardholder PIN (PIN reload under secure messaging).
3. ``keygen``: the card generates its SM2 signing key; the journal keeps the public point, so a
   resumed run never generates a second key once a request names the first.
4. ``enroll``: a PKCS#10 request signed by the card (``CardKey``) goes to the RA; the RA checks
   the proof of possession and, once approved (by an officer or a pre-authorised batch), has the
   CA issue the signing certificate and the KMC generate, escrow and wrap the encryption key pair
   for the card, and the CA issue the encryption certificate.
5. ``install``: import the ENVELOPEDKEYBLOB, write both certificates.
6. ``verify``: read everything back; the card signs a challenge that its signing certificate
   verifies, and decrypts a message encrypted to its encryption certificate; the RA then marks
   the card issued.

``rollback`` undoes an unfinished card: the RA revokes whatever was issued for it, the card's
certificate files and holder data are cleared, and the journal says so."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import x509

from reader_tools.issuance_client import IssuanceBackend, IssuanceError, RaUnavailable
from reader_tools.issuance_journal import DONE, IN_PROGRESS, ROLLED_BACK, WAITING, Journal
from sscard.card import codec
from sscard.card.auth import Authenticator
from sscard.card.client import (
    EF06_SFI,
    SIGN_PUB,
    CardClient,
)
from sscard.card.errors import CardMismatch
from sscard.card.integrity import check_certificate, snapshot
from sscard.card.keyhandle import CardKey
from sscard.card.records import EF06_LAYOUT, CardData, HolderData
from sscard.card.validation import CardDataError, validate_new_pin
from sscard.crypto.algorithms import EncryptionScheme, SignatureAlgorithm
from sscard.crypto.asymmetric import PublicKey
from sscard.crypto.envelopes import CipherFormat, EnvelopedKey
from sscard.crypto.errors import CryptoError
from sscard.x509.builder import CsrBuilder
from sscard.x509.names import parse_name

KEY_UPDATE = 0x0B
STEPS = ("data", "pin", "keygen", "enroll", "install", "verify")


class PersonalisationError(Exception):
    """Personalisation stopped; the message names the step and why. The journal is kept, so
    the card can be resumed or rolled back."""


class SystemicFailure(PersonalisationError):
    """The RA cannot be used at all (unreachable, TLS, credential refused, RA failure): no
    other card would fare better. ``card_touched`` says whether this card was written to
    before it happened (its journal is then kept, to resume)."""

    def __init__(self, message: str, card_touched: bool) -> None:
        super().__init__(message)
        self.card_touched = card_touched


class AwaitingApproval(PersonalisationError):
    """The enrollment waits for an officer; run again (resume) once it is approved."""

    def __init__(self, message: str, request_id: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class CardOrder:
    """What goes onto one card."""

    holder: HolderData
    card_number: str
    batch: str | None = None
    validity_years: int = 10


@dataclass(frozen=True)
class Outcome:
    card_id: str
    request_id: str
    status: str  # done | waiting | rolled_back
    sign_serial: str | None = None
    enc_serial: str | None = None
    #: the card was issued for this order by an earlier run; nothing was done now
    already_issued: bool = field(default=False, compare=False)


def card_data(card_id: bytes, order: CardOrder, region: str, today: dt.date) -> CardData:
    """The card data (EF05) written at issuance: type 3, spec 3.00, issued today."""
    return CardData(
        card_id=card_id, card_type="3", spec_version="3.00", init_org=region + "000000",
        issue_date=today.strftime("%Y%m%d"),
        expiry_date=today.replace(year=today.year + order.validity_years).strftime("%Y%m%d"),
        card_number=order.card_number,
    )


class Personalizer:
    """Personalise the card behind ``client`` for ``order``; ``on_step`` is called after each
    journaled step (tests interrupt there)."""

    def __init__(self, client: CardClient, authenticator: Authenticator,
                 backend: IssuanceBackend, journal_dir: Path,
                 on_step: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.auth = authenticator
        self.backend = backend
        self.journal_dir = journal_dir
        self.on_step = on_step or (lambda _step: None)

    def journal(self) -> Journal:
        return Journal.for_card(self.journal_dir, self.client.read_card_data().card_id.hex()
                                .upper())

    # -- the run ------------------------------------------------------------------------------

    def personalise(self, order: CardOrder, pin: str) -> Outcome:
        try:
            validate_new_pin(pin, "new PIN")
            order.holder.validate()
        except CardDataError as exc:
            raise PersonalisationError(str(exc)) from None
        journal = self.journal()
        ssn = journal.get("data").get("ssn")
        if journal.status == DONE:
            if ssn != order.holder.ssn or journal.get("data").get("card_number") != \
                    order.card_number:
                raise CardMismatch(
                    f"card {journal.card_id} is issued to {ssn} (card number "
                    f"{journal.get('data').get('card_number')}), not to {order.holder.ssn} "
                    f"({order.card_number}); it is not personalised again")
            self._check_card(journal, order)
            return self._outcome(journal, DONE, already_issued=True)
        if journal.status == ROLLED_BACK:
            raise PersonalisationError(f"card {journal.card_id} was rolled back (spoiled); "
                                       "it is not issued again")
        if ssn is not None and ssn != order.holder.ssn:
            raise PersonalisationError(f"card {journal.card_id} is being personalised for "
                                       f"{ssn}, not {order.holder.ssn}; roll it back first")
        if not journal.steps:  # (a journal may hold events only, e.g. a forced keygen)
            self._check_blank(journal, order)
            # a refused token or an unreachable RA must stop us before the card is written
            try:
                self.backend.check()
            except RaUnavailable as exc:
                raise SystemicFailure(str(exc), card_touched=False) from None
            except IssuanceError as exc:
                raise PersonalisationError(f"RA check before writing the card: {exc}") from None
        journal.set_status(IN_PROGRESS)
        steps: list[tuple[str, Callable[[Journal], dict[str, Any]]]] = [
            ("data", lambda j: self._write_data(j, order)),
            ("pin", lambda j: self._set_pin(pin)),
            ("keygen", self._keygen),
            ("enroll", lambda j: self._enroll(j, order, pin)),
            ("install", self._install),
            ("verify", lambda j: self._verify(j, order, pin)),
        ]
        for name, run in steps:
            if journal.done(name) and name != "keygen":
                continue
            self._check_card(journal, order)
            try:
                result = run(journal)
            except AwaitingApproval:
                journal.set_status(WAITING)
                raise
            except RaUnavailable as exc:
                raise SystemicFailure(f"step {name}: {exc}", card_touched=True) from None
            except (IssuanceError, CardDataError, CryptoError) as exc:
                raise PersonalisationError(f"step {name}: {exc}") from None
            if not journal.done(name):
                journal.record(name, **result)
            self.on_step(name)
        journal.set_status(DONE)
        return self._outcome(journal, DONE)

    @staticmethod
    def _outcome(journal: Journal, status: str, already_issued: bool = False) -> Outcome:
        enroll = journal.get("enroll")
        return Outcome(journal.card_id, journal.get("request").get("request_id", ""), status,
                       enroll.get("sign_serial"), enroll.get("enc_serial"), already_issued)

    # -- the card is the one the journal and the order are about ------------------------------

    def _check_blank(self, journal: Journal, order: CardOrder) -> None:
        """Without a journal only a blank card is personalised (or one that holds exactly
        this holder's data and no certificate, as a run that died before its first journal
        write leaves it): never a card issued to someone, whose certified key and data a new
        run would replace."""
        found = snapshot(self.client)
        if found.blank or (found.holder == order.holder and not found.certificates):
            return
        if journal.exists and not found.certificates and found.holder.ssn == order.holder.ssn:
            return  # this station's own run, killed while it wrote EF06 record by record
        raise CardMismatch(f"{found.describe()}; it is not blank and no personalisation by "
                           f"this station is under way for it, so it is not personalised for "
                           f"{order.holder.ssn}")

    def _check_card(self, journal: Journal, order: CardOrder) -> None:
        """Before each step: the card in the reader is the journal's card, and once its data
        is written it still holds this order's holder and card number."""
        card = self.client.read_card_data()
        card_id = card.card_id.hex().upper()
        if card_id != journal.card_id:
            raise CardMismatch(f"the card in the reader is {card_id}, not {journal.card_id} "
                               "whose personalisation this is")
        if journal.done("data"):
            holder = self.client.read_holder_data()
            if holder != order.holder or card.card_number != order.card_number:
                raise CardMismatch(
                    f"card {card_id} now holds data for {holder.ssn or 'nobody'} "
                    f"{holder.name} (card number {card.card_number or 'none'}), not the "
                    f"{order.holder.ssn} / {order.card_number} this run wrote; it was "
                    "changed outside this personalisation: roll it back")

    def _authenticate(self) -> None:
        self.client.select_ssse()
        self.client.external_authenticate(KEY_UPDATE, self.auth)

    def _write_data(self, journal: Journal, order: CardOrder) -> dict[str, Any]:
        current = self.client.read_card_data()
        card = card_data(current.card_id, order, current.region_code, dt.date.today())
        card.validate()
        self._authenticate()
        self.client.write_card_data(card)
        self.client.write_holder_data(order.holder)
        if self.client.read_card_data() != card or self.client.read_holder_data() != \
                order.holder:
            raise PersonalisationError("step data: the card data read back differs from what "
                                       "was written")
        return {"ssn": order.holder.ssn, "card_number": order.card_number,
                "issue_date": card.issue_date, "expiry_date": card.expiry_date}

    def _set_pin(self, pin: str) -> dict[str, Any]:
        self.client.reload_pin(pin, self.auth)
        self.client.verify_pin(pin)
        return {}

    def _keygen(self, journal: Journal) -> dict[str, Any]:
        recorded = journal.get("keygen").get("point")
        if recorded is not None:
            if self.client.public_point(SIGN_PUB).hex() != recorded:
                raise PersonalisationError("step keygen: the card's signing key is not the one "
                                           "this journal recorded; roll the card back")
            return journal.get("keygen")
        # Not journaled yet: no request can name an earlier key, so generating again is safe.
        self._authenticate()
        return {"point": self.client.generate_signing_key().hex()}

    def _enroll(self, journal: Journal, order: CardOrder, pin: str) -> dict[str, Any]:
        known = journal.get("request")
        request_id = known.get("request_id")
        if request_id is not None:
            answer = self.backend.status(request_id)
            if answer["state"] == "approved" and "csr" in known:
                # approved but not issued: the RA may have stopped mid-issuance; the same
                # request again lets it finish (it skips what it already issued)
                answer = self.backend.submit(order.holder, journal.card_id, order.card_number,
                                             base64.b64decode(known["csr"]), order.batch)
        else:
            key = CardKey(self.client, lambda: pin)
            subject = parse_name(f"CN={order.holder.name},serialNumber={order.holder.ssn},C=CN")
            csr = CsrBuilder().subject(subject).sign(key)
            # Killed before the next line? The RA answers a second submission for the same
            # card and key with the same request, so nothing is issued twice.
            answer = self.backend.submit(order.holder, journal.card_id, order.card_number,
                                         csr.dump(), order.batch)
            # journaled at once: a rollback must find (and revoke) what the RA issues for it
            journal.record("request", request_id=answer["request_id"],
                           csr=base64.b64encode(csr.dump()).decode("ascii"))
        state = answer["state"]
        if state in ("submitted", "approved"):
            raise AwaitingApproval(f"enrollment {answer['request_id']} waits for an officer's "
                                   "approval; run again to resume", answer["request_id"])
        if state != "done":
            raise PersonalisationError(f"step enroll: request {answer['request_id']} is "
                                       f"{state}: {answer.get('error') or 'refused'}")
        card = answer["card"]
        return {"request_id": answer["request_id"], "sign_serial": card["sign_serial"],
                "enc_serial": card["enc_serial"], "sign_cert": answer["sign_cert"],
                "enc_cert": answer["enc_cert"],
                "enveloped_key_blob": answer["enveloped_key_blob"]}

    def _install(self, journal: Journal) -> dict[str, Any]:
        enroll = journal.get("enroll")
        sign_der = base64.b64decode(enroll["sign_cert"])
        enc_der = base64.b64decode(enroll["enc_cert"])
        blob = EnvelopedKey.from_blob(base64.b64decode(enroll["enveloped_key_blob"]))
        ssn = journal.get("data").get("ssn")
        # nothing goes onto the card that is not for its own keys and its holder
        check_certificate(self.client, "sign", sign_der, ssn)
        check_certificate(self.client, "enc", enc_der, ssn, point=blob.public_point)
        self._authenticate()
        self.client.import_enveloped_key(blob)
        check_certificate(self.client, "enc", enc_der, ssn)  # the key the card now holds
        self.client.write_certificate("sign", sign_der)
        self.client.write_certificate("enc", enc_der)
        if self.client.read_certificate("sign") != sign_der or \
                self.client.read_certificate("enc") != enc_der:
            raise PersonalisationError("step install: a certificate read back differs from "
                                       "what was written")
        return {}

    def _verify(self, journal: Journal, order: CardOrder, pin: str) -> dict[str, Any]:
        enroll = journal.get("enroll")
        sign_der = base64.b64decode(enroll["sign_cert"])
        enc_der = base64.b64decode(enroll["enc_cert"])
        info = self.client.read_info()
        if info.holder != order.holder or info.card.card_number != order.card_number:
            raise PersonalisationError("step verify: EF05/EF06 differ from the order")
        if self.client.read_certificate("sign") != sign_der or \
                self.client.read_certificate("enc") != enc_der:
            raise PersonalisationError("step verify: a certificate read back differs")
        sign_cert, enc_cert = x509.Certificate.load(sign_der), x509.Certificate.load(enc_der)
        check_certificate(self.client, "sign", sign_der, order.holder.ssn)
        check_certificate(self.client, "enc", enc_der, order.holder.ssn)
        challenge = secrets.token_bytes(32)
        signature = CardKey(self.client, lambda: pin).sign(challenge)
        PublicKey.from_spki(sign_cert["tbs_certificate"]["subject_public_key_info"].dump()) \
            .verify(signature, challenge, SignatureAlgorithm.SM2_SM3)
        message = secrets.token_bytes(24)
        enc_key = PublicKey.from_spki(enc_cert["tbs_certificate"]["subject_public_key_info"]
                                      .dump())
        ciphertext = enc_key.raw.encrypt(message, CipherFormat.C1C3C2)
        if CardKey(self.client, lambda: pin, which="enc").decrypt(
                ciphertext, EncryptionScheme.SM2_C1C3C2) != message:
            raise PersonalisationError("step verify: the card did not decrypt a message "
                                       "encrypted to its encryption certificate")
        self.backend.confirm(enroll["request_id"])
        return {"checked_at": dt.datetime.now(dt.UTC).isoformat()}

    # -- rollback -----------------------------------------------------------------------------

    def rollback(self, reason: str) -> Journal:
        """Revoke what was issued for this card, clear its certificates and holder data."""
        journal = self.journal()
        if journal.status == DONE:
            raise PersonalisationError(f"card {journal.card_id} is issued; revoke it through "
                                       "the RA instead of rolling back")
        if not journal.steps:
            raise PersonalisationError(f"no personalisation journal for card {journal.card_id}")
        request_id = journal.get("request").get("request_id")
        if request_id:
            try:
                self.backend.rollback(request_id, reason)
            except IssuanceError as exc:
                raise PersonalisationError(f"rollback: {exc}") from None
        self._authenticate()
        for which in ("sign", "enc"):
            self.client.clear_certificate(which)
        self.client.select_ssse()
        for tag, (number, length) in EF06_LAYOUT.items():
            self.client.update_record(EF06_SFI, number, codec.Tlv(tag, b"\x00" * length))
        journal.set_status(ROLLED_BACK)
        return journal
