"""The national code tables that cardholder records use, with names in Chinese and English:
GB/T 2261.1 sex, GB/T 3304 ethnicity and GB/T 2260 regions (province level; a finer code is
named by its province). Interfaces show names; raw codes stay in JSON and on the card.

The ethnicity table is the whole of GB/T 3304-1991 (56 groups, 97 other, 98 foreign-born
citizens). The region table holds the province level only: the county-level table changes
yearly and no maintained package carries it, so a region is named "<province> (<code>)".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Language = Literal["zh", "en"]

#: GB/T 2261.1-2003 sex codes
SEX: Mapping[str, tuple[str, str]] = {
    "0": ("未知的性别", "unknown"),
    "1": ("男", "male"),
    "2": ("女", "female"),
    "9": ("未说明的性别", "not stated"),
}

#: GB/T 3304-1991 ethnicity codes
ETHNICITY: Mapping[str, tuple[str, str]] = {
    "01": ("汉族", "Han"), "02": ("蒙古族", "Mongol"), "03": ("回族", "Hui"),
    "04": ("藏族", "Tibetan"), "05": ("维吾尔族", "Uyghur"), "06": ("苗族", "Miao"),
    "07": ("彝族", "Yi"), "08": ("壮族", "Zhuang"), "09": ("布依族", "Bouyei"),
    "10": ("朝鲜族", "Korean"), "11": ("满族", "Manchu"), "12": ("侗族", "Dong"),
    "13": ("瑶族", "Yao"), "14": ("白族", "Bai"), "15": ("土家族", "Tujia"),
    "16": ("哈尼族", "Hani"), "17": ("哈萨克族", "Kazakh"), "18": ("傣族", "Dai"),
    "19": ("黎族", "Li"), "20": ("傈僳族", "Lisu"), "21": ("佤族", "Va"),
    "22": ("畲族", "She"), "23": ("高山族", "Gaoshan"), "24": ("拉祜族", "Lahu"),
    "25": ("水族", "Sui"), "26": ("东乡族", "Dongxiang"), "27": ("纳西族", "Naxi"),
    "28": ("景颇族", "Jingpo"), "29": ("柯尔克孜族", "Kyrgyz"), "30": ("土族", "Monguor"),
    "31": ("达斡尔族", "Daur"), "32": ("仫佬族", "Mulao"), "33": ("羌族", "Qiang"),
    "34": ("布朗族", "Blang"), "35": ("撒拉族", "Salar"), "36": ("毛南族", "Maonan"),
    "37": ("仡佬族", "Gelao"), "38": ("锡伯族", "Xibe"), "39": ("阿昌族", "Achang"),
    "40": ("普米族", "Pumi"), "41": ("塔吉克族", "Tajik"), "42": ("怒族", "Nu"),
    "43": ("乌孜别克族", "Uzbek"), "44": ("俄罗斯族", "Russian"), "45": ("鄂温克族", "Evenki"),
    "46": ("德昂族", "De'ang"), "47": ("保安族", "Bonan"), "48": ("裕固族", "Yugur"),
    "49": ("京族", "Gin"), "50": ("塔塔尔族", "Tatar"), "51": ("独龙族", "Derung"),
    "52": ("鄂伦春族", "Oroqen"), "53": ("赫哲族", "Hezhen"), "54": ("门巴族", "Monpa"),
    "55": ("珞巴族", "Lhoba"), "56": ("基诺族", "Jino"), "97": ("其他", "other"),
    "98": ("外国血统中国籍人士", "naturalised citizen of foreign origin"),
}

#: GB/T 2260 province-level divisions (the first two digits of a region code)
PROVINCES: Mapping[str, tuple[str, str]] = {
    "11": ("北京市", "Beijing"), "12": ("天津市", "Tianjin"), "13": ("河北省", "Hebei"),
    "14": ("山西省", "Shanxi"), "15": ("内蒙古自治区", "Inner Mongolia"),
    "21": ("辽宁省", "Liaoning"), "22": ("吉林省", "Jilin"), "23": ("黑龙江省", "Heilongjiang"),
    "31": ("上海市", "Shanghai"), "32": ("江苏省", "Jiangsu"), "33": ("浙江省", "Zhejiang"),
    "34": ("安徽省", "Anhui"), "35": ("福建省", "Fujian"), "36": ("江西省", "Jiangxi"),
    "37": ("山东省", "Shandong"), "41": ("河南省", "Henan"), "42": ("湖北省", "Hubei"),
    "43": ("湖南省", "Hunan"), "44": ("广东省", "Guangdong"),
    "45": ("广西壮族自治区", "Guangxi"), "46": ("海南省", "Hainan"), "50": ("重庆市", "Chongqing"),
    "51": ("四川省", "Sichuan"), "52": ("贵州省", "Guizhou"), "53": ("云南省", "Yunnan"),
    "54": ("西藏自治区", "Tibet"), "61": ("陕西省", "Shaanxi"), "62": ("甘肃省", "Gansu"),
    "63": ("青海省", "Qinghai"), "64": ("宁夏回族自治区", "Ningxia"),
    "65": ("新疆维吾尔自治区", "Xinjiang"), "71": ("台湾省", "Taiwan"),
    "81": ("香港特别行政区", "Hong Kong"), "82": ("澳门特别行政区", "Macao"),
}


class UnknownCode(ValueError):
    """A value that is not in its code table; the message names the table and the value."""


def _name(table: Mapping[str, tuple[str, str]], code: str, language: Language) -> str | None:
    names = table.get(code)
    return None if names is None else names[0 if language == "zh" else 1]


def sex_name(code: str, language: Language = "zh") -> str | None:
    return _name(SEX, code, language)


def ethnicity_name(code: str, language: Language = "zh") -> str | None:
    return _name(ETHNICITY, code.zfill(2), language)


def region_name(code: str, language: Language = "zh") -> str | None:
    """The province's name for any GB/T 2260 code, with the code itself when it is finer."""
    province = _name(PROVINCES, code[:2], language) if len(code) == 6 and code.isdigit() else None
    if province is None:
        return None
    return province if code[2:] == "0000" else f"{province} ({code})"


def check(table: Literal["sex", "ethnicity", "region"], code: str) -> str:
    """Return ``code`` when its table knows it, else raise UnknownCode naming table and value."""
    known = {"sex": sex_name, "ethnicity": ethnicity_name, "region": region_name}[table](code)
    if known is None:
        standard = {"sex": "GB/T 2261.1", "ethnicity": "GB/T 3304", "region": "GB/T 2260"}[table]
        raise UnknownCode(f"{table} {code!r} is not a {standard} code")
    return code
