"""The card part of ``make demo``: an in-process emulated card (the embedded deployment) taken
through what a card-issuing counter and a business system do with it. Returns the lines to
print; raises if any step misbehaves."""

from __future__ import annotations

from pathlib import Path

from sscard.card import errors
from sscard.card.keyhandle import CardKey
from sscard.card.mohrss import ireadcardbas
from sscard.crypto import envelopes
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey, SM2PublicKey
from sscard.emulator.inprocess import card_in_reader
from sscard.emulator.sample import sample_card
from sscard.emulator.testkeys import KeyId


def card_demo(workdir: Path) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / "demo-card.json"
    sample_card().save(state_path)
    lines = [f"card: emulated generation-3 card, state in {state_path}"]
    with card_in_reader(state_path) as (card, psam):
        info = card.read_info()
        lines.append("card: iReadCardBas " + ireadcardbas(info, psam.terminal_number(),
                                                          psam.device_number()))
        card.internal_authenticate(psam)
        lines.append("card: internal authentication through the PSAM: card is genuine")
        try:
            card.verify_pin("000000")
        except errors.WrongPin as exc:
            lines.append(f"card: a wrong PIN is refused: {exc}")
        card.change_pin("123456", "246810")
        lines.append("card: PIN changed from the initial 123456")
        card.external_authenticate(KeyId.UPDATE, psam)
        point = card.generate_signing_key()
        lines.append(f"card: SM2 signing key generated on the card: {point[1:9].hex()}...")
        key = CardKey(card, lambda: "246810")
        message = "社会保障卡 demo".encode()
        signature = key.sign(message)
        SM2PublicKey.from_point(point).verify(signature, message)
        lines.append("card: on-card SM2 signature verifies with sscard.crypto")
        enc = SM2PrivateKey.generate()
        card.import_enveloped_key(envelopes.wrap(enc, SM2PublicKey.from_point(point)).to_blob())
        secret = CardKey(card, lambda: "246810", which="enc").decrypt(
            enc.public_key().encrypt(b"demo session key", CipherFormat.ASN1))
        if secret != b"demo session key":
            raise RuntimeError("card decrypted the wrong plaintext")
        lines.append("card: KMC-wrapped encryption key imported; PSO DECIPHER works")
    return lines


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for line in card_demo(Path(tmp)):
            print(line)
