"""Is the card what the operator thinks it is? The checks that card tools run before and after
each step that writes a card: whom the card is issued to, whether its certificates certify the
card's own keys and name its holder. A mismatch raises :class:`CardMismatch` (exit code 12 in
the card commands), never a silent success."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import x509

from sscard.card.client import ENC_PUB, SIGN_PUB, CardClient
from sscard.card.errors import CardMismatch, FileNotFound, KeyNotFound
from sscard.card.records import HolderData

KEY_FIDS = {"sign": SIGN_PUB, "enc": ENC_PUB}
KEY_NAMES = {"sign": "signing", "enc": "encryption"}


def certificate_point(der: bytes) -> bytes:
    """The uncompressed public point (04||X||Y) the certificate certifies."""
    try:
        cert = x509.Certificate.load(der)
        return bytes(cert["tbs_certificate"]["subject_public_key_info"]["public_key"]
                     .contents[1:])
    except (ValueError, TypeError) as exc:
        raise CardMismatch(f"the certificate cannot be parsed ({exc})") from None


def certificate_ssn(der: bytes) -> str | None:
    """The subject's serialNumber attribute (the holder's social security number), if any."""
    try:
        value = x509.Certificate.load(der).subject.native.get("serial_number")
    except (ValueError, TypeError) as exc:
        raise CardMismatch(f"the certificate cannot be parsed ({exc})") from None
    return str(value) if value is not None else None


def card_point(client: CardClient, which: str) -> bytes | None:
    """The card's public key for ``which`` ("sign" or "enc"), or None if it has none."""
    try:
        return client.public_point(KEY_FIDS[which])
    except KeyNotFound:
        return None


def certificate_problem(client: CardClient, which: str, der: bytes,
                        holder_ssn: str | None, point: bytes | None = None) -> str | None:
    """Why ``der`` cannot be the card's ``which`` certificate, or None if it can: its key must
    be the card's own (or ``point``, a key about to be imported) and its subject
    serialNumber, when it has one, the holder's SSN."""
    what = KEY_NAMES[which]
    if point is None:
        point = card_point(client, which)
    if point is None:
        return f"the card holds no {what} key, so no {what} certificate can be for it"
    if certificate_point(der) != point:
        return (f"the {what} certificate certifies another key, not the card's own "
                f"({point[1:9].hex().upper()}...)")
    ssn = certificate_ssn(der)
    if holder_ssn and ssn is not None and ssn != holder_ssn:
        return (f"the {what} certificate names SSN {ssn}, the card holds data for "
                f"{holder_ssn}")
    return None


def check_certificate(client: CardClient, which: str, der: bytes,
                      holder_ssn: str | None, point: bytes | None = None) -> None:
    """Raise CardMismatch unless ``der`` can be the card's ``which`` certificate."""
    problem = certificate_problem(client, which, der, holder_ssn, point)
    if problem is not None:
        raise CardMismatch(f"refused: {problem}")


@dataclass(frozen=True)
class CardSnapshot:
    """What a card holds that says whom it is issued to."""

    card_id: str
    holder: HolderData
    card_number: str
    certificates: dict[str, bytes]  # "sign"/"enc" -> DER, for the files that hold one

    @property
    def blank(self) -> bool:
        """No holder data and no certificate: nobody's card yet."""
        return not self.holder.ssn and not self.certificates

    def describe(self) -> str:
        who = f"{self.holder.ssn} {self.holder.name}".strip() or "nobody (no holder data)"
        certs = ", ".join(f"a {KEY_NAMES[w]} certificate" for w in self.certificates)
        return f"card {self.card_id} holds data for {who}" + (f" and {certs}" if certs else "")


def snapshot(client: CardClient) -> CardSnapshot:
    card = client.read_card_data()
    holder = client.read_holder_data()
    certificates: dict[str, bytes] = {}
    for which in ("sign", "enc"):
        try:
            der = client.read_certificate(which)
        except FileNotFound:  # no PKI application (a second-generation card)
            break
        if der is not None:
            certificates[which] = der
    return CardSnapshot(card.card_id.hex().upper(), holder, card.card_number, certificates)
