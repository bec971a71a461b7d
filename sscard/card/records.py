"""The records of EF05 (card data) and EF06 (holder data), as typed values (CARD_SPEC §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sscard.card import codec
from sscard.card.validation import (
    CardDataError,
    validate_card_number,
    validate_date,
    validate_region,
    validate_ssn,
)

MOHRSS_RID = bytes.fromhex("D156000005")

# tag -> (record number, length) in EF05 and EF06
EF05_LAYOUT: dict[int, tuple[int, int]] = {
    0x01: (1, 16), 0x02: (2, 1), 0x03: (3, 4), 0x04: (4, 12), 0x05: (5, 4), 0x06: (6, 4),
    0x07: (7, 9),
}
EF06_LAYOUT: dict[int, tuple[int, int]] = {
    0x08: (1, 18), 0x09: (2, 30), 0x4E: (3, 20), 0x0A: (4, 1), 0x0B: (5, 1), 0x0C: (6, 3),
    0x0D: (7, 4),
}


def _field(records: dict[int, bytes], tag: int, what: str) -> bytes:
    try:
        return records[tag]
    except KeyError:
        raise CardDataError(f"record with tag {tag:02X} ({what}) missing") from None


@dataclass(frozen=True)
class CardData:
    """EF05."""

    card_id: bytes  # 16 bytes: region (3 BCD) + RID + 8 card-specific bytes
    card_type: str
    spec_version: str
    init_org: str
    issue_date: str
    expiry_date: str
    card_number: str

    @property
    def region_code(self) -> str:
        return codec.bcd_decode(self.card_id[:3])

    def validate(self) -> CardData:
        if len(self.card_id) != 16:
            raise CardDataError(
                f"card identification code must be 16 bytes, got {len(self.card_id)}"
            )
        validate_region(self.region_code, "card identification code region")
        if self.card_id[3:8] != MOHRSS_RID:
            raise CardDataError("card identification code lacks the MOHRSS RID D156000005")
        if self.spec_version not in ("1.00", "2.00", "3.00"):
            raise CardDataError(
                f"spec version must be 1.00, 2.00 or 3.00, got {self.spec_version!r}"
            )
        if len(self.card_type) != 1:
            raise CardDataError("card type is one character")
        if not (self.init_org.isdigit() and len(self.init_org) <= 24):
            raise CardDataError(f"initialising organisation must be digits, got {self.init_org!r}")
        issue = validate_date(self.issue_date, "issue date")
        expiry = validate_date(self.expiry_date, "expiry date")
        if expiry <= issue:
            raise CardDataError(f"expiry date {self.expiry_date} is not after issue date "
                                f"{self.issue_date}")
        validate_card_number(self.card_number)
        return self

    def records(self) -> dict[int, bytes]:
        self.validate()
        return {
            0x01: self.card_id,
            0x02: codec.an_encode(self.card_type, 1),
            0x03: codec.an_encode(self.spec_version, 4),
            0x04: codec.bcd_encode(self.init_org, 12),
            0x05: codec.bcd_encode(self.issue_date, 4),
            0x06: codec.bcd_encode(self.expiry_date, 4),
            0x07: codec.an_encode(self.card_number, 9),
        }

    @classmethod
    def from_records(cls, records: dict[int, bytes]) -> CardData:
        return cls(
            card_id=_field(records, 0x01, "card identification code"),
            card_type=codec.an_decode(_field(records, 0x02, "card type")),
            spec_version=codec.an_decode(_field(records, 0x03, "spec version")),
            init_org=codec.bcd_decode(_field(records, 0x04, "initialising organisation")),
            issue_date=codec.bcd_decode(_field(records, 0x05, "issue date")),
            expiry_date=codec.bcd_decode(_field(records, 0x06, "expiry date")),
            card_number=codec.an_decode(_field(records, 0x07, "card number")),
        )


@dataclass(frozen=True)
class HolderData:
    """EF06."""

    ssn: str
    name: str
    sex: str
    ethnicity: str
    birthplace: str
    birth_date: str

    def problems(self) -> list[tuple[str, str]]:
        """Every fault of this holder's data, as (field, what is wrong), in field order: a
        form or a batch file reports them all at once."""
        from sscard import codetables
        from sscard.card.codec import CodecError

        found: list[tuple[str, str]] = []

        def check(name: str, run: Callable[[], object]) -> None:
            try:
                run()
            except (CardDataError, CodecError, codetables.UnknownCode) as exc:
                found.append((name, str(exc)))

        check("ssn", lambda: validate_ssn(self.ssn))
        if not self.name.strip():
            found.append(("name", "name is empty"))
        else:
            check("name", lambda: codec.split_gbk_name(self.name))  # GBK, fits 30 + 20 bytes
        if codetables.sex_name(self.sex) is None:
            found.append(("sex", f"sex must be a GB/T 2261.1 code (1 male, 2 female, 0 unknown, "
                                 f"9 not stated), got {self.sex!r}"))
        if not (self.ethnicity.isascii() and self.ethnicity.isdigit()
                and 1 <= len(self.ethnicity) <= 2):
            found.append(("ethnicity", f"ethnicity must be a GB/T 3304 code (2 digits), got "
                                       f"{self.ethnicity!r}"))
        else:
            check("ethnicity", lambda: codetables.check("ethnicity", self.ethnicity))
        check("birthplace", lambda: validate_region(self.birthplace, "birthplace"))
        try:
            validate_date(self.birth_date, "birth date")
            ssn_ok = not any(name == "ssn" for name, _ in found)
            if ssn_ok and self.ssn[6:14] != self.birth_date:  # (a bad number is named once)
                found.append(("birth_date", f"birth date {self.birth_date} differs from the one "
                                            f"in the social security number ({self.ssn[6:14]})"))
        except CardDataError as exc:
            found.append(("birth_date", str(exc)))
        return found

    def validate(self) -> HolderData:
        """Raise CardDataError naming every fault, "; "-separated (``problems`` lists them
        by field)."""
        found = self.problems()
        if found:
            raise CardDataError("; ".join(message for _field, message in found))
        return self

    def records(self) -> dict[int, bytes]:
        self.validate()
        name, extension = codec.split_gbk_name(self.name)
        return {
            0x08: codec.an_encode(self.ssn.upper(), 18),
            0x09: name,
            0x4E: extension,
            0x0A: codec.an_encode(self.sex, 1),
            0x0B: codec.bcd_encode(self.ethnicity.zfill(2), 1),
            0x0C: codec.bcd_encode(self.birthplace, 3),
            0x0D: codec.bcd_encode(self.birth_date, 4),
        }

    @classmethod
    def from_records(cls, records: dict[int, bytes]) -> HolderData:
        extension = codec.gbk_decode(records.get(0x4E, b""))
        return cls(
            ssn=codec.an_decode(_field(records, 0x08, "social security number")),
            name=codec.gbk_decode(_field(records, 0x09, "name")) + extension,
            sex=codec.an_decode(_field(records, 0x0A, "sex")),
            ethnicity=codec.bcd_decode(_field(records, 0x0B, "ethnicity")),
            birthplace=codec.bcd_decode(_field(records, 0x0C, "birthplace")),
            birth_date=codec.bcd_decode(_field(records, 0x0D, "birth date")),
        )
