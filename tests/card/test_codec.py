import pytest

from sscard.card import codec
from sscard.card.codec import CodecError, Tlv
from sscard.card.records import CardData, HolderData
from sscard.card.validation import CardDataError


def test_tlv_round_trip_and_length_mismatch():
    rec = Tlv(0x07, b"X00000019").encode()
    assert rec == bytes.fromhex("0709") + b"X00000019"
    assert codec.tlv_decode(rec) == Tlv(7, b"X00000019")
    with pytest.raises(CodecError, match="declares 9 value bytes but carries 8"):
        codec.tlv_decode(rec[:-1])
    assert [t.tag for t in codec.tlv_iter(rec + Tlv(8, b"").encode())] == [7, 8]
    with pytest.raises(CodecError, match="runs past the end"):
        list(codec.tlv_iter(rec[:-2]))


def test_bcd():
    assert codec.bcd_encode("20101001", 4) == bytes.fromhex("20101001")
    assert codec.bcd_encode("123", 3) == bytes.fromhex("123FFF")
    assert codec.bcd_decode(bytes.fromhex("123FFF")) == "123"
    with pytest.raises(CodecError, match="do not fit"):
        codec.bcd_encode("1234567", 3)
    with pytest.raises(CodecError, match="decimal digits"):
        codec.bcd_encode("12a4")
    with pytest.raises(CodecError, match="non-digit nibble A"):
        codec.bcd_decode(bytes.fromhex("12A4"))


def test_an_and_gbk():
    assert codec.an_encode("1.00", 4) == b"1.00"
    assert codec.an_decode(b"X0\x00\xff") == "X0"
    assert codec.gbk_encode("张三", 6) == "张三".encode("gbk") + b"\x00\x00"
    assert codec.gbk_decode("张三".encode("gbk") + b"\x00" * 4) == "张三"
    with pytest.raises(CodecError, match="has no GBK encoding"):
        codec.gbk_encode("张三😀", 30)
    with pytest.raises(CodecError, match="is 8 bytes in GBK, the field holds 6"):
        codec.gbk_encode("欧阳娜娜", 6)
    with pytest.raises(CodecError, match="not valid GBK"):
        codec.gbk_decode(b"\x81\x20")


def test_long_name_splits_between_name_and_extension_on_character_boundary():
    name = "阿" * 16 + "b" + "娜"  # 33 + 2 bytes: 15 characters fit 30 bytes, the rest overflow
    head, ext = codec.split_gbk_name(name)
    assert len(head) == 30 and len(ext) == 20
    assert codec.gbk_decode(head) + codec.gbk_decode(ext) == name
    with pytest.raises(CodecError, match="field holds 50"):
        codec.split_gbk_name("阿" * 26)


SAMPLE_CARD = CardData(
    card_id=bytes.fromhex("639900D15600000500BF7C7A48FB4966"), card_type="3",
    spec_version="3.00", init_org="639900000000", issue_date="20101001",
    expiry_date="20201001", card_number="X00000019",
)
SAMPLE_HOLDER = HolderData(
    ssn="111111198101011110", name="张三", sex="1", ethnicity="01", birthplace="111111",
    birth_date="19810101",
)


def test_records_round_trip():
    assert CardData.from_records(SAMPLE_CARD.records()) == SAMPLE_CARD
    assert HolderData.from_records(SAMPLE_HOLDER.records()) == SAMPLE_HOLDER
    assert SAMPLE_HOLDER.records()[0x0D] == bytes.fromhex("19810101")
    assert SAMPLE_CARD.region_code == "639900"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ssn": "111111198101011111"}, "check digit is '1', expected '0'"),
        ({"birth_date": "19810102"}, "differs from the one in the social security number"),
        ({"birthplace": "991111"}, "99 is not a GB/T 2260 province code"),
        ({"name": "😀"}, "no GBK encoding"),
        ({"sex": "M"}, "sex must be"),
    ],
)
def test_holder_data_validation(change, message):
    import dataclasses

    with pytest.raises((CardDataError, CodecError), match=message):
        dataclasses.replace(SAMPLE_HOLDER, **change).records()


def test_card_data_validation():
    import dataclasses

    with pytest.raises(CardDataError, match="not after issue date"):
        dataclasses.replace(SAMPLE_CARD, expiry_date="20091001").records()
    with pytest.raises(CardDataError, match="20101301 is not a calendar date"):
        dataclasses.replace(SAMPLE_CARD, issue_date="20101301").records()
    with pytest.raises(CardDataError, match="RID"):
        dataclasses.replace(SAMPLE_CARD, card_id=bytes.fromhex("639900") + bytes(13)).validate()
