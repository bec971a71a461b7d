"""The system kept running for a person to use (`make serve`), as separate services.

The CA (OCSP, CRL, TSA, certificate downloads), the KMC, the RA (web UI and enrollment API) and the
gateway, each its own gunicorn process (``python -m sscard.cli ... serve``, each in its own process
group) on 127.0.0.1, and the CA's OCSP responder on its own (``ca ocsp-serve``, granian, as
deploy/systemd/sscard-ca-ocsp.service runs it), talking over their APIs with their service
identities: the RA signs its CA calls with its ``service`` certificate and reaches the KMC with its
caller key; it holds no CA key, no KMC share and no storage key. Each service reads only its zone's
directory (the layout is in scripts/serve_setup.py). The first start sets everything up (CA
hierarchy, KMC ceremony, officers, station, business system credentials, a personalised emulated
card); later starts reuse the data and the ports (the CA's URL is in every certificate it issued).
The emulated card is attached to a private pcscd through vsmartcard's vpcd when that can run here.

The card login: the OpenID Connect provider (`sscard idp serve`) and a sample business system
that logs in through it (`sscard idp sample-rp`), each its own gunicorn process in its own zone
like the others. The browser agent (`sscard agent`) normally runs on the holder's PC, not with
the services; serve starts it for the demo card when the card is attached to pcscd, because a
person trying a card login needs one and has no other card. It allows only the provider's
origin and asks consent and the PIN in its own prompt: on serve's terminal when there is one,
else one line each from serve's standard input (what a test writes). Without pcscd there is no
agent and the sample page's login says so.

The RA's officers log in the same way (``ra serve --card-login``): the RA is registered at the
provider with the certificate scope, and the demo card's holder is also a demo RA officer (a
counter operator, ``zhangsan``) whose card certificate is registered, so the demo card logs in
to the RA's web UI too (its log-in page's card button).

Runs until Ctrl-C, SIGTERM or SIGHUP, which stop every service; a service that dies ends serve
with a non-zero exit naming it. Nothing secret is printed but the demo card's PIN.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import allinone
import requests
from serve_setup import (
    CARD_OFFICER,
    Layout,
    personalise_card,
    register_card_officer,
    set_up_login,
    set_up_ra_card_login,
    set_up_zones,
)

#: ports tried on the first start (any free port is taken instead of a busy one)
PREFERRED_PORTS = {"ca": 8080, "kmc": 8470, "ra": 8480, "gateway": 8490, "idp": 8446,
                   "sample-rp": 8450, "agent": 24821}
#: the card login's processes, set up after the others (also on a data directory set up before
#: they existed)
LOGIN = ("idp", "sample-rp", "agent")
#: the OCSP responder's port when free, else any: no certificate names it (their AIA names the
#: CA service's /ocsp, which answers too), so it need not stay the same between starts
OCSP_PORT = 8081
UNSEAL_WITH = ("zhang", "wang")
READY = "sscard all-in-one system is up"
#: gunicorn workers per service: one keeps the start quick on a laptop; the services are built
#: for more (``sscard ... serve --workers N``)
WORKERS = 1
START_SECONDS = 120
STOP_SECONDS = 30


def say(line: str) -> None:
    print("   " + line, flush=True)


# -- ports ---------------------------------------------------------------------------------------

def first_ports(any_ports: bool, names: tuple[str, ...] = (*allinone.SERVICES, *LOGIN),
                taken: tuple[int, ...] = ()) -> dict[str, int]:
    """Free ports for a new set-up: the preferred ones where free, else any (held open together
    while chosen, so that no two services get the same; none of ``taken``)."""
    held: list[socket.socket] = []
    ports = {}
    try:
        for name in names:
            preferred = 0 if any_ports else PREFERRED_PORTS[name]
            if preferred and preferred not in taken and allinone.port_is_free(preferred):
                ports[name] = preferred
                continue
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            ports[name] = s.getsockname()[1]
    finally:
        for s in held:
            s.close()
    return ports


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# -- the service processes ---------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when serve itself dies, even by SIGKILL (Linux), so
    that no service outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Service:
    name: str
    home: Path
    port: int
    args: list[str]
    ready_path: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    ready_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return url(self.port)

    def start(self) -> None:
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "sscard.cli", "--home", str(self.home), *self.args,
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(WORKERS)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    def wait_ready(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not stop.is_set():
            if self.exited() is not None:
                raise ServiceDied(self)
            try:
                if requests.get(self.url + self.ready_path, headers=self.ready_headers,
                                timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} service did not answer "
                                   f"{self.url}{self.ready_path} within {START_SECONDS} s; "
                                   f"its log: {self.log_path}")
            time.sleep(0.2)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        """SIGTERM to the whole process group (gunicorn stops its workers and exits), then
        SIGKILL to whatever of the group is left."""
        if self.proc is not None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            self._signal(signal.SIGKILL)
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass  # the group is gone

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ServiceDied(RuntimeError):
    def __init__(self, service: Service) -> None:
        super().__init__(f"the {service.name} service (pid "
                         f"{service.proc.pid if service.proc else '?'}) exited with code "
                         f"{service.exited()}; its log is {service.log_path}")
        self.service = service


def _ocsp_port(taken: dict[str, int]) -> int:
    if OCSP_PORT not in taken.values() and allinone.port_is_free(OCSP_PORT):
        return OCSP_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services(layout: Layout, ports: dict[str, int]) -> list[Service]:
    """The services in start order, each on its own directory."""
    home = layout.home
    logs = layout.logs
    return [
        Service("ca", home, ports["ca"],
                ["ca", "serve", "--passphrase-file", str(layout.ca_passphrase)],
                "/ready", logs / "ca.log"),
        Service("ocsp", home, _ocsp_port(ports),
                ["ca", "ocsp-serve", "--passphrase-file", str(layout.ca_passphrase)],
                "/ready", logs / "ocsp.log"),
        Service("kmc", home, ports["kmc"],
                ["kmc", "serve", *layout.share_arguments(UNSEAL_WITH)], "/ready",
                logs / "kmc.log"),
        Service("ra", layout.ra, ports["ra"],
                ["ra", "serve", "--ca-url", url(ports["ca"]), "--kmc-url", url(ports["kmc"]),
                 "--insecure-http",
                 "--kmc-ra-key-file", str(layout.ra_kmc_key),
                 "--service-key", str(layout.ra_service_key),
                 "--service-key-passphrase-file", str(layout.ra_service_passphrase),
                 "--service-certificate", str(layout.ra_service_certificate),
                 "--card-number-reader", str(layout.card_number_reader),
                 "--card-login", str(layout.ra_card_login)],
                "/ready", logs / "ra.log"),
        Service("gateway", layout.gateway, ports["gateway"],
                ["gateway", "serve", "--config", str(layout.gateway_config)], "/ready",
                logs / "gateway.log"),
        Service("idp", layout.idp, ports["idp"],
                ["idp", "serve", "--config", str(layout.idp_config)], "/ready",
                logs / "idp.log"),
        Service("sample-rp", layout.sample_rp, ports["sample-rp"],
                ["idp", "sample-rp", "--config", str(layout.sample_rp_config)], "/ready",
                logs / "sample-rp.log"),
    ]


class AgentService(Service):
    """``sscard agent`` for the demo card: the PC/SC reader of serve's private pcscd, the
    provider's origin only; its prompts on serve's terminal, else its answers (consent, PIN)
    one line each from serve's standard input."""

    def __init__(self, layout: Layout, port: int, idp_origin: str, pcscd_env: dict[str, str]
                 ) -> None:
        super().__init__("agent", layout.agent, port, [], "/v1/readers",
                         layout.logs / "agent.log", ready_headers={"Origin": idp_origin})
        self.pcscd_env = pcscd_env

    def start(self) -> None:
        from sscard.emulator.pcscd import CARD_READER

        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "sscard.cli", "agent",
                "--allow-list", str(self.home / "allow.toml"),
                "--consent-file", str(self.home / "consent.json"), "--port", str(self.port)]
        terminal = sys.stdin.isatty()
        if not terminal:
            argv += ["--pin-from-fd", "0", "--consent-from-fd", "0"]
        # on a terminal it stays in serve's session (its prompts need the terminal) and its
        # questions go there; else everything goes to its log, where "PIN asked" shows
        self.proc = subprocess.Popen(
            argv, stdin=None, stdout=self._log, stderr=None if terminal else subprocess.STDOUT,
            env={**os.environ, **self.pcscd_env, "SSCARD_READER": CARD_READER},
            start_new_session=not terminal, preexec_fn=_die_with_parent)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)  # its own process, maybe in serve's group: not killpg


class Supervisor:
    """Starts the services in order, watches them, and stops them all (last first)."""

    def __init__(self, all_services: list[Service]) -> None:
        self.services = all_services

    def start(self, stop: threading.Event) -> None:
        for service in self.services:
            service.start()
            service.wait_ready(stop)

    def died(self) -> Service | None:
        return next((s for s in self.services if s.exited() is not None), None)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def __getitem__(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


# -- the emulated card -------------------------------------------------------------------------

class CardAttachment:
    """The emulated card (and its PSAM) in a private pcscd's virtual readers, if possible."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.pcscd: Any = None
        self.runner: Any = None
        self.problem = ""

    def start(self) -> bool:
        from sscard.emulator.card import CardState, EmulatedCard
        from sscard.emulator.pcscd import PcscdUnavailable, PrivatePcscd
        from sscard.emulator.psam import EmulatedPsam, make_test_psam
        from sscard.emulator.runner import EmulatorRunner

        workdir = self.layout.home / "pcscd"  # absolute: pcscd reads its reader.conf.d there
        workdir.mkdir(exist_ok=True)
        try:
            self.pcscd = PrivatePcscd(workdir).start()
        except (PcscdUnavailable, OSError) as exc:
            self.pcscd = None
            self.problem = str(exc)
            return False
        path = self.layout.card
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


# -- main --------------------------------------------------------------------------------------

def refuse(message: str) -> int:
    print(message, file=sys.stderr, flush=True)
    return 2


def check_home(layout: Layout) -> str | None:
    """Why this data directory cannot be used, or None."""
    home = layout.home
    if not (home / "ports.json").exists():
        if home.exists() and any(home.iterdir()):
            return (f"{home} exists but holds no finished set-up (no ports.json): an earlier "
                    "first start stopped half-way. Move it away (or delete it, and "
                    f"{layout.custody}) and start again.")
        if layout.custody.exists() and any(layout.custody.iterdir()):
            return (f"{layout.custody} holds custodians' shares of another set-up: move it "
                    "away before a first start with this --home.")
        return None
    if not layout.gateway_config.exists() or not (layout.ra / "ra.db").exists():
        return (f"{home} was set up by an earlier `make serve` that ran everything in one "
                "process; this one runs each service apart, in its own directory. Move it "
                "away (or delete it) and start again.")
    return None


def load_ports(home: Path) -> dict[str, int]:
    """The ports of a finished set-up; the card login's, when it has them (a data directory
    set up before the login existed has not, and gets them at this start)."""
    ports = allinone.load_ports(home)
    saved = json.loads((home / "ports.json").read_text(encoding="utf-8"))
    ports.update({name: int(saved[name]) for name in LOGIN if name in saved})
    return ports


def login_urls(ports: dict[str, int]) -> dict[str, str]:
    """The card login's URLs, and the RA's (the provider asks it for card numbers)."""
    return {name: url(ports[name]) for name in (*LOGIN, "ra")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("SSCARD_SERVE_HOME", "serve-data")),
                        help="data directory (default ./serve-data; reused if present); the "
                             "custodians' shares go beside it, in DIR.custody")
    parser.add_argument("--any-ports", action="store_true",
                        help="on the first start, take any free ports instead of "
                             "8080/8470/8480/8490")
    parser.add_argument("--no-pcscd", action="store_true",
                        help="keep the emulated card in-process (no private pcscd)")
    args = parser.parse_args(argv)
    # absolute from here on: the services, pcscd and the printed paths do not depend on where
    # they run
    layout = Layout(args.home.absolute())

    stop = threading.Event()
    up = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if not up.is_set():
            raise KeyboardInterrupt  # out of a set-up step or a wait, to the clean-up

    # Ctrl-C, a stop, or the terminal closing: every service is stopped the same way
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    problem = check_home(layout)
    if problem:
        return refuse(problem)
    fresh = not (layout.home / "ports.json").exists()
    ports = first_ports(args.any_ports) if fresh else load_ports(layout.home)
    if not fresh:
        for name, port in ports.items():
            if not allinone.port_is_free(port):
                return refuse(
                    f"cannot listen for the {name} service on 127.0.0.1:{port}: the port is "
                    "in use. The ports are fixed once a data directory is set up (the CA's URL "
                    "is in its certificates): stop what uses them, or start with another "
                    "--home.")
    supervisor: Supervisor | None = None
    card = CardAttachment(layout)
    try:
        if fresh:
            print(f"Setting up a new system in {layout.home}", flush=True)
            set_up_zones(layout, url(ports["ca"]), say)
            set_up_login(layout, login_urls(ports), say)
            set_up_ra_card_login(layout, login_urls(ports), say)
        else:
            print(f"Reusing the all-in-one system in {layout.home}", flush=True)
            if not layout.sample_rp_config.exists() or not set(LOGIN) <= set(ports):
                ports.update(first_ports(args.any_ports, LOGIN, tuple(ports.values())))
                print("Adding the card login (identity provider, sample business system):",
                      flush=True)
                set_up_login(layout, login_urls(ports), say)
                allinone.save_ports(layout.home, ports)
            if not layout.ra_card_login.exists():
                print("Adding the RA officers' card login through the identity provider:",
                      flush=True)
                set_up_ra_card_login(layout, login_urls(ports), say)
                register_card_officer(layout, say)  # the card was personalised before
        supervisor = Supervisor(services(layout, ports))
        print("Starting the services, each its own gunicorn process:", flush=True)
        supervisor.start(stop)
        say(f"KMC unsealed with the shares of {' and '.join(UNSEAL_WITH)} "
            f"({allinone.THRESHOLD} of {len(allinone.CUSTODIANS)}) from {layout.custody}")
        if fresh:
            say("personalising an emulated card for 张三 (dual certificates) through the RA:")
            personalise_card(layout, supervisor["ra"].url, lambda line: say("  " + line))
            register_card_officer(layout, say)
            allinone.save_ports(layout.home, ports)  # last: the set-up is finished
        attached = False if args.no_pcscd else card.start()
        if attached:
            agent = AgentService(layout, ports["agent"], url(ports["idp"]), card.pcscd.env)
            supervisor.services.append(agent)  # watched and stopped with the services
            agent.start()
            agent.wait_ready(stop)
        print_summary(layout, supervisor, card, attached, args.no_pcscd)
        up.set()
        print(f"\n{READY}; press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            dead = supervisor.died()
            if dead is not None:
                raise ServiceDied(dead)
        print("\nStopping ...", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\nInterrupted: stopping ...", flush=True)
        return 130
    except ServiceDied as exc:
        print(f"\nserve: {exc}; stopping the others. The end of its log:\n"
              f"{exc.service.log_tail()}", file=sys.stderr, flush=True)
        return 1
    except RuntimeError as exc:
        print(f"\nserve: {exc}; stopping.", file=sys.stderr, flush=True)
        return 1
    finally:
        up.set()  # a second signal no longer interrupts the clean-up
        card.stop()
        if supervisor is not None:
            supervisor.stop()


def print_summary(layout: Layout, supervisor: Supervisor, card: CardAttachment,
                  attached: bool, no_pcscd: bool) -> None:
    home = layout.home
    secrets = allinone.secrets_dir(home)
    ca, kmc, ra, gw = (supervisor[n].url for n in allinone.SERVICES)
    idp, sample = supervisor["idp"].url, supervisor["sample-rp"].url
    print(f"\nServices on 127.0.0.1 (each its own process; logs in {layout.logs}):", flush=True)
    say(f"ca       {ca}  (OCSP {ca}/ocsp, CRL {ca}/crl/issuing.crl, TSA {ca}/tsa, "
        f"certificates {ca}/certs/issuing.crt)")
    say(f"ocsp     {supervisor['ocsp'].url}/ocsp  (the OCSP responder alone, under granian)")
    say(f"kmc      {kmc}  (health {kmc}/health)")
    say(f"ra       {ra}  (web UI {ra}/login, enrollment API {ra}/api/v1)")
    say(f"gateway  {gw}  (OpenAPI {gw}/openapi.json)")
    say(f"idp      {idp}  (OpenID Connect discovery {idp}/.well-known/openid-configuration)")
    say(f"sample-rp {sample}  (a business system's page that logs in through the idp)")
    print("\nTrust zones, each service reading only its own directory:", flush=True)
    say(f"CA and KMC: {home}")
    say(f"RA: {layout.ra} (no CA key, no KMC share, no storage key; it signs its CA calls "
        f"with {layout.ra_service_certificate.name})")
    say(f"gateway: {layout.gateway} (configuration {layout.gateway_config}: edit it and "
        "restart serve)")
    say(f"identity provider: {layout.idp} (its ID-token keys in idp.sqlite; the CA "
        "certificates it trusts; no CA key); clients: sscard --home "
        f"{layout.idp} idp client list")
    say(f"sample business system: {layout.sample_rp} (its client id and secret only)")
    say(f"KMC custodians' shares and passphrases: {layout.custody} (kept out of the data "
        "directory, as custodians keep theirs)")
    print("\nLogins and credentials (files, mode 0600):", flush=True)
    say(f"RA web UI: user 'admin', password in {secrets / 'officers' / 'admin'}; other officers "
        f"(wang, li, zhao, auditor, {CARD_OFFICER}) beside it")
    say(f"RA card login: open {ra}/login and choose \"Log in with my social security card\" "
        f"(使用本人社保卡登录): "
        f"the demo card logs in as officer '{CARD_OFFICER}' (its holder 张三, a counter "
        f"operator) through the idp; the RA's client secret there: {layout.ra_idp_secret}")
    say(f"business system '{allinone.SYSTEM_NAME}' for the gateway: certificate "
        f"{layout.business_file('.pem')}, key {layout.business_file('.key.pem')}, "
        f"passphrase {layout.business_file('.pass')}; its encryption certificate "
        f"{layout.business_file('-enc.pem')} (the gateway decrypts for it)")
    say(f"gateway signing key id '{allinone.GATEWAY_KEY_ID}'; trust anchor "
        f"{layout.export / 'root.pem'}, chain {layout.export / 'chain.pem'}")
    say(f"card-issuing station's RA API token: {secrets / 'ra-station.token'}")
    say(f"audit logs: {home / 'audit.sqlite'} (CA, KMC), {layout.ra / 'audit.sqlite'}, "
        f"{layout.gateway / 'audit.sqlite'}; check one with: {allinone.sscard_command()} --home "
        f"{layout.ra} audit verify --cert {layout.ra / 'audit' / 'audit-cert.pem'}")
    say(f"the sscard command is {allinone.sscard_command()} (not on PATH: `source "
        f"{Path(sys.executable).parent / 'activate'}` or call it by that path)")
    print(f"\nThe emulated card (张三, card number {allinone.CARD_NUMBER}): PIN "
          f"{allinone.PIN} (a demo card; also in {layout.card_pin})", flush=True)
    if attached:
        from sscard.emulator.pcscd import CARD_READER, PSAM_READER

        say(f"attached to a private pcscd: readers '{CARD_READER}' (card) and "
            f"'{PSAM_READER}' (PSAM)")
        say("for PC/SC clients: export "
            f"PCSCLITE_CSOCK_NAME={shlex.quote(str(card.pcscd.socket_path))}")
    elif no_pcscd:
        say(f"in-process only (--no-pcscd): state in {layout.card}")
    else:
        say("pcscd is not available here, so the card is in-process only (state in "
            f"{layout.card}): {card.problem}")
    print(f"\nTry a card login: open {sample}/ in a browser on this machine.", flush=True)
    if attached:
        agent = supervisor["agent"].url
        where = ("in this terminal" if sys.stdin.isatty()
                 else "one line each on serve's standard input")
        say(f"the browser agent for the demo card listens on {agent} (log "
            f"{layout.logs / 'agent.log'}); it asks the holder's consent once and the PIN "
            f"at each login {where}")
    else:
        say("no browser agent runs (the card is not in a PC/SC reader): the login page will "
            "say it finds no agent")


if __name__ == "__main__":
    sys.exit(main())
