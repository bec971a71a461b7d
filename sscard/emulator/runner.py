"""Run an emulated card and PSAM attached to pcscd (vpcd slots ``port`` and ``port + 1``)
until stopped."""

from __future__ import annotations

import threading
from pathlib import Path

from sscard.emulator import vpcd
from sscard.emulator.card import CardState, EmulatedCard
from sscard.emulator.psam import EmulatedPsam, PsamState, make_test_psam
from sscard.emulator.sample import CardProfile, blank_card, sample_card


def prepare_card(path: Path, new_sample: bool, generation: int, pin_tries: int = 3,
                 new_blank: bool = False) -> CardState:
    """Load the card at ``path``; create a sample card (or a blank one, as from the factory)
    there first if asked and absent."""
    if not path.exists():
        if not (new_sample or new_blank):
            raise FileNotFoundError(
                f"card state file {path} does not exist (use --new-sample or --new-blank to "
                "create one)"
            )
        profile = CardProfile(generation=generation, pin_max_tries=pin_tries)
        state = blank_card(profile) if new_blank else sample_card(profile)
        state.save(path)
        return state
    return CardState.load(path)


def prepare_psam(path: Path, region_code: str) -> PsamState:
    if not path.exists():
        state = make_test_psam(region_code)
        state.save(path)
        return state
    return PsamState.load(path)


class PullAfter:
    """Wraps a device so that it is pulled from the reader after ``count`` commands: the
    runner stops and the vpcd connection closes, as when a cardholder pulls the card. For
    tests of what the terminal reports mid-operation."""

    def __init__(self, device: vpcd.Device, count: int, stop: threading.Event) -> None:
        self.device, self.left, self.stop = device, count, stop

    @property
    def atr(self) -> bytes:
        return self.device.atr

    def power_on(self) -> bytes:
        return self.device.power_on()

    def power_off(self) -> None:
        self.device.power_off()

    def reset(self) -> bytes:
        return self.device.reset()

    def process(self, raw: bytes) -> bytes:
        if self.left <= 0:
            self.stop.set()
            raise ConnectionAbortedError("card pulled")
        self.left -= 1
        return self.device.process(raw)


class EmulatorRunner:
    """The card (and optionally the PSAM) served to vpcd on background threads."""

    def __init__(self, card: EmulatedCard, psam: EmulatedPsam | None,
                 host: str = "127.0.0.1", port: int = vpcd.DEFAULT_PORT,
                 pull_after: int | None = None) -> None:
        self.card, self.psam = card, psam
        self.host, self.port = host, port
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.pull_after = pull_after

    def start(self) -> None:
        card: vpcd.Device = self.card
        if self.pull_after is not None:
            card = PullAfter(self.card, self.pull_after, self.stop_event)
        devices: list[tuple[vpcd.Device, int]] = [(card, self.port)]
        if self.psam is not None:
            devices.append((self.psam, self.port + 1))
        for device, port in devices:
            thread = threading.Thread(
                target=vpcd.serve, args=(device, self.host, port, self.stop_event),
                name=f"vpcd-{port}", daemon=True,
            )
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def wait(self) -> None:
        while not self.stop_event.wait(0.5):
            pass
