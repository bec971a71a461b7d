"""APDUs and milliseconds per `card info` and per on-card signature, through PC/SC.

    python bench/card.py [--seconds N]

Starts a private pcscd (vpcd driver) and an emulated card (`sscard card emulate` in its own
process), then measures through pyscard -> pcscd -> vpcd -> emulator. The reference, measured in
the same run, is the same card object reached in-process (no PC/SC), so the ratio is what the
PC/SC stack costs. A software SM2 signature is printed as a second reference for signing.
Output: `<what>: ours=<n>/s reference=<n>/s ratio=<r>` plus the APDU count and ms per operation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, rate
from sscard.card.auth import KeyServiceAuthenticator
from sscard.card.client import CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.transport import InProcessTransport, PcscTransport, Transport
from sscard.emulator.card import EmulatedCard
from sscard.emulator.pcscd import CARD_READER, PrivatePcscd
from sscard.emulator.sample import sample_card
from sscard.emulator.testkeys import KeyId, provincial_test_key
from sscard.keys.software import SoftwareKey

MESSAGE = b"x" * 256


def prepare(transport: Transport) -> None:
    """Give the card a signing key (personalisation, not measured)."""
    client = CardClient(transport)
    client.connect()
    try:
        card = client.identity()
        keys = {int(k): provincial_test_key(k, card.region_code, card.algorithm) for k in KeyId}
        client.external_authenticate(KeyId.UPDATE, KeyServiceAuthenticator(keys))
        client.generate_signing_key()
    finally:
        client.close()


def measure(transport: Transport, seconds: float) -> dict[str, float]:
    client = CardClient(transport)
    client.connect()
    try:
        before = client.apdu_count
        client.read_info()
        info_apdus = client.apdu_count - before
        info_rate = rate(client.read_info, seconds, min_calls=5)

        key = CardKey(client, lambda: "123456")
        key.sign(MESSAGE)  # PIN verified once per session, as a signing application does
        before = client.apdu_count
        key.sign(MESSAGE)
        sign_apdus = client.apdu_count - before
        sign_rate = rate(lambda: key.sign(MESSAGE), seconds, min_calls=5)
    finally:
        client.close()
    return {"info_apdus": info_apdus, "info": info_rate, "sign_apdus": sign_apdus,
            "sign": sign_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, PrivatePcscd(Path(tmp) / "pcsc") as rig:
        state = Path(tmp) / "card.json"
        sample_card().save(state)
        emulator = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "card", "emulate", "--state", str(state),
             "--port", str(rig.port), "--no-psam"],
            env=rig.env, stderr=subprocess.DEVNULL,
        )
        try:
            rig.wait_card(CARD_READER)
            prepare(PcscTransport(CARD_READER))
            ours = measure(PcscTransport(CARD_READER), args.seconds)
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
        reference = measure(InProcessTransport(EmulatedCard.open(state)), args.seconds)

    software = SoftwareKey.generate("sm2")
    software_rate = rate(lambda: software.sign(MESSAGE), args.seconds)
    print(f"card info through PC/SC: apdus={ours['info_apdus']:.0f} "
          f"ms={1000 / ours['info']:.2f} (in-process ms={1000 / reference['info']:.2f})")
    print(figure("card info (PC/SC vs in-process)", ours["info"], reference["info"]))
    print(f"on-card signature through PC/SC: apdus={ours['sign_apdus']:.0f} "
          f"ms={1000 / ours['sign']:.2f} (in-process ms={1000 / reference['sign']:.2f})")
    print(figure("on-card signature (PC/SC vs in-process)", ours["sign"], reference["sign"]))
    print(figure("on-card signature (PC/SC vs software SM2 key)", ours["sign"], software_rate))


if __name__ == "__main__":
    main()
