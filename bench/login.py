"""Card login: token validation at the provider beside the raw SM2 verify rate, and one login's
latency with the emulated card over PC/SC.

    python bench/login.py [--seconds N] [--logins N] [--no-pcsc]

Figures, one line each:

    login token validations, warm caches: ours=<n>/s reference=<n>/s ratio=<r>
    login over PC/SC, card (agent + card): ours=<ms>ms
    login over PC/SC, server (nonce + validation): ours=<ms>ms

``ours`` validates tokens with ``sscard.idp.authtoken.TokenValidator`` (nonce consumed in an
SQLite NonceStore: WAL, synchronous=NORMAL bound to the boot id, see its docstring; path and CRL
revocation answers cached as the provider runs with
``cache_seconds``, cardholder profile, SM2 signature); ``reference`` is ``PublicKey.verify`` of
the same signature with the same key in the same thread. The PC/SC figures start a private
pcscd with vpcd, the emulated card in its own process and ``sscard agent`` in its own process
(PIN from a pipe), and give the median of ``--logins`` logins: the agent's /v1/sign answer
(reader, PIN verify, the card's signature) and the provider's side (issue the nonce, validate).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import figure, rate
from sscard.crypto.asymmetric import PublicKey
from sscard.idp.authtoken import NonceStore, TokenValidator, signed_data
from tests.idp.login_pki import LoginPki, make_login_pki, make_token

ORIGIN = "https://idp.bench.example"


def validation_rate(pki: LoginPki, work: Path, seconds: float) -> tuple[float, float]:
    nonces = NonceStore(f"sqlite:///{work / 'nonces.db'}")
    validator = TokenValidator(pki.trust(cache_seconds=300), nonces=nonces)
    cert = pki.sign.cert.dump()
    # tokens are made beforehand (signing is the card's work, not the provider's)
    count = max(200, int(seconds * 400))
    made = []
    for _ in range(count):
        nonce = nonces.issue()
        made.append((make_token(pki.sign.key, cert, ORIGIN, nonce), nonce))
    first, first_nonce = made.pop()
    validator.validate(first, ORIGIN, first_nonce)  # warm the path and revocation cache
    start = time.perf_counter()
    for token, nonce in made:
        validator.validate(token, ORIGIN, nonce)
    ours = len(made) / (time.perf_counter() - start)
    token, nonce = made[0]
    key = PublicKey.from_spki(pki.sign.cert.public_key.dump())
    data = signed_data("SM2-SM3", ORIGIN, nonce)
    reference = rate(lambda: key.verify(token.signature, data), seconds)
    return ours, reference


def pcsc_latency(pki: LoginPki, work: Path, logins: int) -> tuple[float, float]:
    import requests

    from sscard.idp.authtoken import AuthToken
    from tests.card.conftest import EmulatorProcess
    from tests.conftest import PcscRig
    from tests.idp.agent_rig import PIN, personalised_card, running_agent

    rig = PcscRig(work / "pcsc")
    rig.start()
    emu = EmulatorProcess(rig, personalised_card(pki, work / "card.json"))
    emu.start("--no-psam")
    nonces = NonceStore(f"sqlite:///{work / 'pcsc-nonces.db'}")
    validator = TokenValidator(pki.trust(cache_seconds=300), nonces=nonces)
    card_ms, server_ms = [], []
    try:
        with running_agent(rig, work / "agent", [ORIGIN]) as agent:
            agent.consent(True)
            for _ in range(logins + 1):  # the first one warms caches and consent
                t0 = time.perf_counter()
                nonce = nonces.issue()
                t1 = time.perf_counter()
                agent.give_pin(PIN)
                answer = requests.post(agent.url + "/v1/sign", json={"origin": ORIGIN,
                                                                     "nonce": nonce},
                                       headers={"Origin": ORIGIN}, timeout=60)
                answer.raise_for_status()
                t2 = time.perf_counter()
                validator.validate(AuthToken.from_json(answer.json()), ORIGIN, nonce)
                t3 = time.perf_counter()
                card_ms.append((t2 - t1) * 1000)
                server_ms.append(((t1 - t0) + (t3 - t2)) * 1000)
    finally:
        emu.stop()
        rig.stop()
    return statistics.median(card_ms[1:]), statistics.median(server_ms[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--logins", type=int, default=5)
    parser.add_argument("--no-pcsc", action="store_true",
                        help="skip the PC/SC latency (no pcscd or vpcd here)")
    args = parser.parse_args()
    pki = make_login_pki()
    work = Path(tempfile.mkdtemp(prefix="bench-login-"))
    try:
        ours, reference = validation_rate(pki, work, args.seconds)
        print(figure("login token validations, warm caches", ours, reference), flush=True)
        if not args.no_pcsc:
            card, server = pcsc_latency(pki, work, args.logins)
            print(f"login over PC/SC, card (agent + card): ours={card:.0f}ms")
            print(f"login over PC/SC, server (nonce + validation): ours={server:.1f}ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
