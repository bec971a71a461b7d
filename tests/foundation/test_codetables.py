"""The code tables name what cardholder records hold and refuse what they do not know."""

from __future__ import annotations

import pytest

from sscard import codetables


@pytest.mark.parametrize(("table", "code", "zh", "en"), [
    ("sex", "2", "女", "female"),
    ("ethnicity", "1", "汉族", "Han"),          # a card's BCD byte loses the leading zero
    ("ethnicity", "98", "外国血统中国籍人士", "naturalised citizen of foreign origin"),
    ("region", "440000", "广东省", "Guangdong"),
    ("region", "440305", "广东省 (440305)", "Guangdong (440305)"),
])
def test_known_codes_are_named_in_both_languages(table: str, code: str, zh: str, en: str) -> None:
    name = getattr(codetables, f"{table}_name")
    assert (name(code, "zh"), name(code, "en")) == (zh, en)
    assert codetables.check(table, code) == code  # type: ignore[arg-type]


@pytest.mark.parametrize(("table", "code", "standard"), [
    ("sex", "3", "GB/T 2261.1"), ("ethnicity", "57", "GB/T 3304"),
    ("region", "990000", "GB/T 2260"), ("region", "44", "GB/T 2260"),
])
def test_unknown_codes_are_refused_naming_the_table(table: str, code: str, standard: str) -> None:
    with pytest.raises(codetables.UnknownCode, match=standard):
        codetables.check(table, code)  # type: ignore[arg-type]


def test_the_ethnicity_table_is_complete() -> None:
    assert set(codetables.ETHNICITY) == {f"{n:02d}" for n in range(1, 57)} | {"97", "98"}
