"""Seconds per personalised card over PC/SC, and cards per hour in a batch.

    python bench/issuance.py [--cards N] [--batch N]

Sets up an embedded PKI in a temporary directory (SM2 CA hierarchy, KMC with a software
storage key, audit log, RA with a pre-authorised batch), then:

- PC/SC: a private pcscd (vpcd driver) and, per card, a blank emulated card with its PSAM
  (`sscard card emulate`, own process); the full personalisation (data, PIN, on-card key,
  card-signed enrollment, RA -> CA + KMC, wrapped key import, both certificates, read-back with
  a signature and a decryption by the card) is timed.
- Batch: `reader_tools.batch.run_batch` over N blank emulated cards in process.

The reference, measured in the same run over the same path, is the card's share alone: the same
APDU work (data, PIN, key generation, import of a wrapped key, two certificate writes, the same
read-back) with the key wrap done locally and certificates of the same size, without the RA,
CA and KMC. So the ratio is the card floor against the whole issuance.
Output: `<what>: ours=<n>/s reference=<n>/s ratio=<r>` plus seconds per card and cards/hour.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ca.authority import CertificateAuthority
from ca.ports_inprocess import ra_port
from keymgmt.ports_inprocess import InProcessKmc
from keymgmt.service import KeyManagementCentre
from keymgmt.service import Role as KmcRole
from keymgmt.storage import SoftwareStorageKey
from ra.models import Role
from ra.service import Actor, RegistrationAuthority
from reader_tools.batch import BatchRow, run_batch, state_file
from reader_tools.issuance_client import LocalBackend
from reader_tools.personalize import CardOrder, Personalizer
from sscard.audit.log import AuditLog
from sscard.card.auth import Authenticator, PsamAuthenticator
from sscard.card.client import ENC_PUB, SIGN_PUB, CardClient
from sscard.card.keyhandle import CardKey
from sscard.card.records import CardData, HolderData
from sscard.card.transport import InProcessTransport, PcscTransport, Transport
from sscard.crypto import envelopes
from sscard.crypto.algorithms import EncryptionScheme
from sscard.crypto.sm2 import CipherFormat, SM2PrivateKey, SM2PublicKey
from sscard.emulator.card import CardState, EmulatedCard
from sscard.emulator.pcscd import CARD_READER, PSAM_READER, PrivatePcscd
from sscard.emulator.psam import EmulatedPsam, make_test_psam
from sscard.emulator.sample import CardProfile, blank_card

REGION = "639900"
PIN = "246810"
BATCH = "bench"
CA_TOML = """\
base_url = "http://127.0.0.1:8080"
[root]
name = "root"
subject = "CN=Bench Root,O=人社厅,C=CN"
algorithm = "sm2"
validity_days = 3650
[[issuing]]
name = "issuing"
subject = "CN=Bench Issuing,O=人社厅,C=CN"
algorithm = "sm2"
validity_days = 1825
path_length = 0
"""


def holder(n: int) -> HolderData:
    body = f"{REGION}{19700101 + n % 28:08d}{n % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return HolderData(body + check, "张三", "1", "01", REGION, body[6:14])


def setup(base: Path) -> tuple[RegistrationAuthority, Actor, list[object]]:
    base.mkdir(parents=True, exist_ok=True)
    (base / "ca.toml").write_text(CA_TOML, encoding="utf-8")
    ca = CertificateAuthority.init(base / "ca-home", base / "ca.toml", passphrase=b"bench pass",
                                   audit=AuditLog.at_home(base / "ca-home"))
    audit = AuditLog.open(f"sqlite:///{base / 'audit.db'}")
    kmc = KeyManagementCentre.open(f"sqlite:///{base / 'kmc.db'}",
                                   SoftwareStorageKey(secrets.token_bytes(32), "sk-bench"),
                                   audit=audit)
    link = InProcessKmc(kmc, kmc.authenticate(kmc.add_caller("ra", KmcRole.RA)))
    ra = RegistrationAuthority.open(f"sqlite:///{base / 'ra.db'}", audit, ra_port(ca), link)
    ra.add_officer(None, "officer", "Officer", "bench password", {Role.OFFICER})
    ra.authorise_batch(Actor("officer", frozenset({Role.OFFICER})), BATCH, 100000)
    token = ra.add_api_client(None, "bench-station")
    return ra, ra.authenticate_client(token), [ra, kmc, ca]


def card_floor(client: CardClient, auth: Authenticator, order: CardOrder,
               certs: tuple[bytes, bytes]) -> None:
    """The card's share of a personalisation (the reference): same APDUs, no PKI services."""
    current = client.read_card_data()
    today = dt.date.today()
    card = CardData(current.card_id, "3", "3.00", REGION + "000000", today.strftime("%Y%m%d"),
                    today.replace(year=today.year + 10).strftime("%Y%m%d"), order.card_number)
    client.select_ssse()
    client.external_authenticate(0x0B, auth)
    client.write_card_data(card)
    client.write_holder_data(order.holder)
    client.read_card_data()
    client.read_holder_data()
    client.reload_pin(PIN, auth)
    client.verify_pin(PIN)
    client.select_ssse()
    client.external_authenticate(0x0B, auth)
    point = client.generate_signing_key()
    enc_key = SM2PrivateKey.generate()
    blob = envelopes.wrap(enc_key, SM2PublicKey.from_point(point)).to_blob()
    client.select_ssse()
    client.external_authenticate(0x0B, auth)
    client.import_enveloped_key(blob)
    client.write_certificate("sign", certs[0])
    client.write_certificate("enc", certs[1])
    client.read_info()
    client.read_certificate("sign")
    client.read_certificate("enc")
    client.public_point(SIGN_PUB)
    client.public_point(ENC_PUB)
    CardKey(client, lambda: PIN).sign(b"challenge")
    message = b"m" * 24
    ciphertext = enc_key.public_key().encrypt(message, CipherFormat.C1C3C2)
    assert CardKey(client, lambda: PIN, which="enc").decrypt(
        ciphertext, EncryptionScheme.SM2_C1C3C2) == message


def pcsc_run(rig: PrivatePcscd, work: Path, n: int,
             job: Callable[[CardClient, Authenticator], None]) -> float:
    """Seconds for ``job`` on a fresh blank card with its PSAM, through PC/SC."""
    state = work / f"pcsc-{n}.json"
    blank_card(CardProfile(generation=3, region_code=REGION)).save(state)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "card", "emulate", "--state", str(state),
         "--port", str(rig.port)], env=rig.env, stderr=subprocess.DEVNULL)
    try:
        rig.wait_card(CARD_READER)
        rig.wait_card(PSAM_READER)
        psam = PcscTransport(PSAM_READER)
        psam.connect()
        client = CardClient(PcscTransport(CARD_READER))
        client.connect()
        try:
            start = time.perf_counter()
            job(client, PsamAuthenticator(psam))
            return time.perf_counter() - start
        finally:
            client.close()
            psam.disconnect()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        rig.wait_card(CARD_READER, present=False)


def in_process(path: Path) -> tuple[CardClient, PsamAuthenticator, Transport]:
    card = EmulatedCard(CardState.load(path), path)
    psam = InProcessTransport(EmulatedPsam(make_test_psam(REGION)), "psam")
    psam.connect()
    client = CardClient(InProcessTransport(card))
    client.connect()
    return client, PsamAuthenticator(psam), psam


def line(what: str, ours: float, reference: float, unit: str) -> str:
    return (f"{what}: ours={ours:.3g}{unit} reference={reference:.3g}{unit} "
            f"ratio={ours / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=3, help="cards personalised over PC/SC")
    parser.add_argument("--batch", type=int, default=10, help="cards in the batch run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ra, client_actor, closables = setup(work / "pki")
        backend = LocalBackend(ra, client_actor)
        counter = iter(range(1, 10**6))
        sample_certs: list[bytes] = []

        def personalise(client: CardClient, auth: Authenticator) -> None:
            n = next(counter)
            order = CardOrder(holder(n), f"B{n:08d}", batch=BATCH)
            out = Personalizer(client, auth, backend, work / "journal").personalise(order, PIN)
            assert out.status == "done"
            if not sample_certs:
                sample_certs.extend([client.read_certificate("sign") or b"",
                                     client.read_certificate("enc") or b""])

        def floor(client: CardClient, auth: Authenticator) -> None:
            n = next(counter)
            card_floor(client, auth, CardOrder(holder(n), f"R{n:08d}"),
                       (sample_certs[0], sample_certs[1]))

        with PrivatePcscd(work / "pcsc") as rig:
            ours_pcsc = [pcsc_run(rig, work, i, personalise) for i in range(args.cards)]
            ref_pcsc = [pcsc_run(rig, work, 1000 + i, floor) for i in range(args.cards)]
        per_card = sum(ours_pcsc) / len(ours_pcsc)
        ref_card = sum(ref_pcsc) / len(ref_pcsc)
        print(f"personalised card over PC/SC: {per_card:.2f} s/card (card floor "
              f"{ref_card:.2f} s/card) over {args.cards} cards")
        print(line("personalisation over PC/SC (full vs card floor)", 1 / per_card,
                   1 / ref_card, "/s"))

        rows = []
        for _ in range(args.batch):
            n = next(counter)
            rows.append(BatchRow(n, CardOrder(holder(n), f"H{n:08d}", batch=BATCH)))
        start = time.perf_counter()
        results = run_batch(rows, work / "cards", work / "batch-journal", backend, PIN,
                            work / "report.csv", REGION)
        batch_seconds = time.perf_counter() - start
        assert all(r.status == "done" for r in results), [r.error for r in results]
        ref_seconds = 0.0
        for row in rows:
            path = state_file(work / "ref-cards", row.order.card_number)
            path.parent.mkdir(parents=True, exist_ok=True)
            blank_card(CardProfile(generation=3, region_code=REGION)).save(path)
            client, auth, psam = in_process(path)
            start = time.perf_counter()
            card_floor(client, auth, row.order, (sample_certs[0], sample_certs[1]))
            ref_seconds += time.perf_counter() - start
            client.close()
            psam.disconnect()
        per_hour = 3600 * len(rows) / batch_seconds
        ref_per_hour = 3600 * len(rows) / ref_seconds
        print(f"batch issuance: {per_hour:.0f} cards/hour ({batch_seconds / len(rows):.2f} "
              f"s/card) over {len(rows)} emulated cards")
        print(line("batch issuance (full vs card floor, in process)", per_hour / 3600,
                   ref_per_hour / 3600, "/s"))
        for c in closables:
            c.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
