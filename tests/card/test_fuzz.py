"""Malformed and random APDUs never crash the emulated card or leave a damaged state file;
malformed records never crash the decoders."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscard.card import codec
from sscard.card.apdu import ApduFormatError, CommandApdu, ResponseApdu
from sscard.emulator.card import CardState, EmulatedCard
from sscard.emulator.sample import sample_card

INS = [0xA4, 0xC0, 0xB2, 0xDC, 0xB0, 0xD6, 0x84, 0x82, 0x88, 0x20, 0x5E, 0x24, 0x40, 0xC9,
       0x4E, 0x4A, 0xC2, 0x2A]

apdus = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda cla, ins, p1, p2, data, le: CommandApdu(cla, ins, p1, p2, data, le).encode(),
        st.sampled_from([0x00, 0x80, 0x84, 0xBF, 0xFF]), st.sampled_from(INS),
        st.integers(0, 255), st.integers(0, 255), st.binary(max_size=255),
        st.one_of(st.none(), st.integers(0, 256)),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(apdus, min_size=1, max_size=8))
def test_random_apdus_get_status_words_not_crashes(tmp_path_factory, sequence):
    path = tmp_path_factory.mktemp("fuzz") / "card.json"
    sample_card().save(path)
    card = EmulatedCard.open(path)
    card.power_on()
    card.process(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
    for raw in sequence:
        answer = ResponseApdu.parse(card.process(raw))
        assert answer.sw >> 8 in (0x90, 0x61, 0x63, 0x65, 0x67, 0x69, 0x6A, 0x6B, 0x6C, 0x6D,
                                  0x6E, 0x93)
    CardState.load(path)  # still a valid, checksummed state file


@given(st.binary(max_size=64))
def test_decoders_raise_only_codec_errors(data):
    for decode in (codec.tlv_decode, codec.bcd_decode, codec.gbk_decode, codec.an_decode):
        try:
            decode(data)
        except codec.CodecError:
            pass
    try:
        list(codec.tlv_iter(data))
    except codec.CodecError:
        pass
    try:
        CommandApdu.parse(data)
    except ApduFormatError:
        pass
