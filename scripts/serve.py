"""The all-in-one system kept running for a person to use (`make serve`).

The CA (OCSP, CRL, TSA, certificate downloads), the KMC, the RA (web UI and enrollment API) and
the gateway, in one process on 127.0.0.1, with their data in ./serve-data (or --home DIR). The
first start sets everything up (CA hierarchy, KMC ceremony, RA officers, the gateway's and a
business system's credentials, a personalised emulated card); later starts reuse the data and
the ports (the CA's URL is written into every certificate it issued). The emulated card is
attached to a private pcscd through vsmartcard's vpcd when that can run here; otherwise it is
reachable in-process only, and the start-up text says so. Runs until Ctrl-C (or SIGTERM).

Nothing secret is printed: the RA's first officer login names a 0600 file with the password.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import allinone

from sscard.x509.names import format_name

#: ports tried on the first start (any free port is taken instead of a busy one)
PREFERRED_PORTS = {"ca": 8080, "kmc": 8470, "ra": 8480, "gateway": 8490}
UNSEAL_WITH = ("zhang", "wang")
READY = "sscard all-in-one system is up"


def say(line: str) -> None:
    print("   " + line, flush=True)


def first_ports(any_ports: bool) -> dict[str, int]:
    if any_ports:
        return dict.fromkeys(allinone.SERVICES, 0)
    return {name: port if allinone.port_is_free(port) else 0
            for name, port in PREFERRED_PORTS.items()}


def set_up(home: Path, servers: allinone.Servers) -> allinone.System:
    """First start: the whole set-up, ports.json written last (it marks a finished set-up)."""
    print(f"Setting up a new all-in-one system in {home}", flush=True)
    passphrase = allinone.init_data_directory(home)
    ca = allinone.init_ca(home, passphrase, servers["ca"].url)
    say(f"CA: {format_name(ca.chain()[-1].subject)} -> {format_name(ca.certificate.subject)}")
    ca.close()
    result = allinone.run_key_ceremony(home)
    say(f"KMC ceremony {result.ceremony_id}: {allinone.THRESHOLD}-of-"
        f"{len(allinone.CUSTODIANS)} custodian shares in {home / 'kmc-shares'}")
    from ca.authority import CertificateAuthority
    from ra.service import RegistrationAuthority
    from sscard.audit.log import AuditLog, default_url

    audit = AuditLog.open(default_url(home))
    ra = RegistrationAuthority.open(f"sqlite:///{home / 'ra.db'}", audit)
    try:
        allinone.add_officers(home, ra)
        allinone.add_station(home, ra)
    finally:
        ra.close()
    with CertificateAuthority.open(home, passphrase, audit=audit) as ca:
        allinone.issue_business_credentials(home, ca, passphrase)
        allinone.register_ra_principal(home, ca, passphrase)
    audit.engine.dispose()
    system = allinone.open_system(home, servers, say, present=UNSEAL_WITH)
    say("personalising an emulated card for 张三 (dual certificates):")
    outcome = allinone.personalise_card(system, card_path(home), lambda line: say("  " + line))
    if outcome.status != "done":
        raise RuntimeError(f"card personalisation ended {outcome.status}")
    allinone.save_ports(home, servers.ports())
    return system


def card_path(home: Path) -> Path:
    return home / "card" / "card.json"


def export_certificates(system: allinone.System) -> Path:
    """Root and chain PEM files for clients (`sscard verify --trust`, `openssl ocsp`)."""
    out = system.home / "export"
    out.mkdir(exist_ok=True)
    chain = system.ca.chain()
    allinone.write_pem(out / "root.pem", chain[-1])
    allinone.write_pem(out / "chain.pem", *chain)
    allinone.write_pem(out / "issuing-ca.pem", chain[0])
    return out


class CardAttachment:
    """The emulated card (and its PSAM) in a private pcscd's virtual readers, if possible."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.pcscd: Any = None
        self.runner: Any = None
        self.problem = ""

    def start(self) -> bool:
        from sscard.emulator.card import CardState, EmulatedCard
        from sscard.emulator.pcscd import PcscdUnavailable, PrivatePcscd
        from sscard.emulator.psam import EmulatedPsam, make_test_psam
        from sscard.emulator.runner import EmulatorRunner

        workdir = self.home / "pcscd"
        workdir.mkdir(exist_ok=True)
        try:
            self.pcscd = PrivatePcscd(workdir).start()
        except (PcscdUnavailable, OSError) as exc:
            self.pcscd = None
            self.problem = str(exc)
            return False
        path = card_path(self.home)
        self.runner = EmulatorRunner(EmulatedCard(CardState.load(path), path),
                                     EmulatedPsam(make_test_psam(allinone.REGION)),
                                     port=self.pcscd.port)
        self.runner.start()
        try:
            self.pcscd.wait_card()
        except TimeoutError as exc:
            self.problem = str(exc)
            self.stop()
            return False
        return True

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self.pcscd is not None:
            self.pcscd.stop()
            self.pcscd = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("SSCARD_SERVE_HOME", "serve-data")),
                        help="data directory (default ./serve-data; reused if present)")
    parser.add_argument("--any-ports", action="store_true",
                        help="on the first start, take any free ports instead of "
                             "8080/8470/8480/8490")
    parser.add_argument("--no-pcscd", action="store_true",
                        help="keep the emulated card in-process (no private pcscd)")
    args = parser.parse_args(argv)
    home: Path = args.home

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    fresh = not (home / "ports.json").exists()
    if fresh and home.exists() and any(home.iterdir()):
        print(f"{home} exists but holds no finished set-up (no ports.json): an earlier first "
              "start stopped half-way. Move it away (or delete it) and start again.",
              file=sys.stderr)
        return 2
    try:
        servers = allinone.Servers.bind(first_ports(args.any_ports) if fresh
                                        else allinone.load_ports(home))
    except RuntimeError as exc:
        print(f"{exc}. The ports are fixed once a data directory is set up (the CA's URL is "
              "in its certificates): stop what uses them, or start with another --home.",
              file=sys.stderr)
        return 2
    system: allinone.System | None = None
    card = CardAttachment(home)
    try:
        if fresh:
            system = set_up(home, servers)
        else:
            print(f"Reusing the all-in-one system in {home}", flush=True)
            system = allinone.open_system(home, servers, say, present=UNSEAL_WITH)
        say(f"KMC unsealed with the shares of {' and '.join(UNSEAL_WITH)} "
            f"({allinone.THRESHOLD} of {len(allinone.CUSTODIANS)})")
        exported = export_certificates(system)
        attached = False if args.no_pcscd else card.start()
        print_summary(system, exported, card, attached, args.no_pcscd)
        print(f"\n{READY}; press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
        print("\nStopping ...", flush=True)
        return 0
    finally:
        card.stop()
        if system is not None:
            system.close()
        else:
            servers.stop()


def print_summary(system: allinone.System, exported: Path, card: CardAttachment,
                  attached: bool, no_pcscd: bool) -> None:
    home = system.home
    secrets_dir = allinone.secrets_dir(home)
    gw = home / "gateway"
    print("\nServices on 127.0.0.1:", flush=True)
    ca = system.url("ca")
    say(f"ca       {ca}  (OCSP {ca}/ocsp, CRL {ca}/crl/{system.ca.name}.crl, "
        f"TSA {ca}/tsa, certificates {ca}/certs/{system.ca.name}.crt)")
    say(f"kmc      {system.url('kmc')}  (health {system.url('kmc')}/health)")
    say(f"ra       {system.url('ra')}  (web UI {system.url('ra')}/login, enrollment API "
        f"{system.url('ra')}/api/v1)")
    say(f"gateway  {system.url('gateway')}  (OpenAPI {system.url('gateway')}/openapi.json)")
    print("\nLogins and credentials (files, mode 0600; nothing secret is printed):", flush=True)
    say(f"RA web UI: user 'admin', password in {secrets_dir / 'officers' / 'admin'}; "
        f"other officers (wang, li, zhao, auditor) beside it")
    say(f"business system '{allinone.SYSTEM_NAME}' for the gateway: certificate "
        f"{gw / (allinone.SYSTEM_NAME + '.pem')}, key {gw / (allinone.SYSTEM_NAME + '.key.pem')}"
        f", passphrase {secrets_dir / 'key-passphrase'}")
    say(f"gateway signing key id '{allinone.GATEWAY_KEY_ID}'; trust anchor "
        f"{exported / 'root.pem'}, chain {exported / 'chain.pem'}")
    say(f"card-issuing station's RA API token: {secrets_dir / 'ra-station.token'}")
    print("\nThe emulated card (张三, PIN in scripts/allinone.py: a demo card):", flush=True)
    if attached:
        say(f"attached to a private pcscd: readers '{card_reader()}' (card) and "
            f"'{psam_reader()}' (PSAM)")
        say(f"for PC/SC clients: export PCSCLITE_CSOCK_NAME={card.pcscd.socket_path}")
    elif no_pcscd:
        say("in-process only (--no-pcscd): state in " + str(card_path(home)))
    else:
        say("pcscd is not available here, so the card is in-process only (state in "
            f"{card_path(home)}): {card.problem}")


def card_reader() -> str:
    from sscard.emulator.pcscd import CARD_READER

    return CARD_READER


def psam_reader() -> str:
    from sscard.emulator.pcscd import PSAM_READER

    return PSAM_READER


if __name__ == "__main__":
    sys.exit(main())
