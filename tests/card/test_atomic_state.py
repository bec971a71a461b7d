"""An emulator killed (SIGKILL) in the middle of writes leaves its card file in the old or the
new state, never a mix: the card file is replaced atomically."""

from __future__ import annotations

import random
import subprocess
import sys
import time

from sscard.emulator.card import CardState
from sscard.emulator.sample import CardProfile, sample_card

WRITER = r"""
import sys
from pathlib import Path
from sscard.card import diversify as div
from sscard.emulator.card import EmulatedCard

card = EmulatedCard.open(Path(sys.argv[1]))
card.power_on()
def ok(apdu):
    r = card.process(bytes.fromhex(apdu) if isinstance(apdu, str) else apdu)
    assert r[-2:] == b"\x90\x00", r.hex()
    return r[:-2]
challenge = ok("0084000008")
key = card.state.keys[0x0B]
ok(bytes.fromhex("0082000B08") + div.external_auth_cryptogram(key, challenge, card.state.algorithm))
print("ready", flush=True)
i = 0
while True:
    fill = b"\xaa" if i % 2 else b"\x55"
    name = ("A" if i % 2 else "B") * 9
    ok(bytes.fromhex("00DC07") + bytes([5 << 3 | 4, 11, 7, 9]) + name.encode())
    ok("00A40000020008")  # EF08, the 4 KiB photo file
    for off in range(0, 0x1000, 0xF0):
        chunk = fill * min(0xF0, 0x1000 - off)
        ok(bytes([0, 0xD6, off >> 8, off & 0xFF, len(chunk)]) + chunk)
    i += 1
"""


def test_sigkill_during_writes_leaves_old_or_new_state(tmp_path):
    path = tmp_path / "card.json"
    sample_card(CardProfile(generation=3)).save(path)
    rng = random.Random(1234)
    seen_photo: set[bytes] = set()
    for _round in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(rng.uniform(0.0, 0.25))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
        state = CardState.load(path)  # parses and its checksum holds
        card_number = state.records["SSSE/0005"][6][2:]
        assert card_number in (b"AAAAAAAAA", b"BBBBBBBBB") or card_number.startswith(b"X")
        photo = state.binaries["SSSE/0008"]
        assert len(photo) == 0x1000
        # each UPDATE BINARY is atomic: the photo is a prefix of one fill and a suffix of the
        # other, switching on a 0xF0-byte chunk boundary, never a torn chunk
        for off in range(0, 0x1000, 0xF0):
            chunk = photo[off : off + 0xF0]
            assert len(set(chunk)) == 1, f"torn chunk at offset {off}"
        seen_photo.update({photo[:1], photo[-1:]} - {b"\x00"})
    assert seen_photo == {b"\x55", b"\xaa"}  # the writer really was writing when killed


def test_damaged_state_file_is_refused_with_a_clear_message(tmp_path):
    import pytest

    from sscard.emulator.state import StateFileError

    path = tmp_path / "card.json"
    sample_card().save(path)
    text = path.read_text()
    path.write_text(text.replace('"pin_tries_left": 3', '"pin_tries_left": 9'))
    with pytest.raises(StateFileError, match="damaged \\(checksum mismatch\\)"):
        CardState.load(path)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(StateFileError, match="not valid JSON"):
        CardState.load(path)
