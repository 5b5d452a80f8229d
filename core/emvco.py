"""EMVCo merchant-presented QR payloads (static): TLV data objects, the CRC-16/CCITT-FALSE check, and reading
them back. Lengths count characters, the CRC runs over the UTF-8 bytes, as in the EMVCo MPM specification."""

from __future__ import annotations

import binascii
import re

GUID = "CN.ORG.UNIONCARD"
MAX_VALUE = 99
MAX_PAYLOAD = 512
MAX_ASCII_NAME = 25
MAX_LOCAL_NAME = 25
MAX_TERMINAL_LABEL = 25
FALLBACK_NAME = "UNIONCARD MERCHANT"
CURRENCY_CNY = "156"
COUNTRY_CN = "CN"
CRC_TAG = "6304"

MCC = {"dining": "5812", "supermarket": "5411", "pharmacy": "5912", "medical": "8062", "culture_sport": "7941",
       "legal": "8111", "education": "8299", "travel": "4722", "other": "5999"}
# The first four digits of a region code name the prefecture-level city.
CITIES = {"6401": ("YINCHUAN", "银川"), "6402": ("SHIZUISHAN", "石嘴山"), "6403": ("WUZHONG", "吴忠"),
          "6404": ("GUYUAN", "固原"), "6405": ("ZHONGWEI", "中卫")}
PROVINCE = ("NINGXIA", "宁夏")
COUNTRY = ("CHINA", "中国")

_TAG = re.compile(r"[0-9]{2}")
_REGION = re.compile(r"[0-9]{6}")
_CRC_VALUE = re.compile(r"[0-9A-Fa-f]{4}")


def crc16_ccitt(data: bytes) -> int:
    """Return the CRC-16/CCITT-FALSE of the bytes (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def tlv(tag: str, value: str) -> str:
    """Encode one data object: two-digit tag, two-digit length in characters, value of 1-99 characters."""
    if not _TAG.fullmatch(tag):
        raise ValueError(f"EMVCo tag must be two digits, not {tag!r}")
    if not value:
        raise ValueError(f"EMVCo tag {tag} needs a value")
    if len(value) > MAX_VALUE:
        raise ValueError(f"EMVCo tag {tag} value is {len(value)} characters; at most {MAX_VALUE} fit")
    return f"{tag}{len(value):02d}{value}"


def _is_printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def ascii_name(name: str | None) -> str:
    """Return the merchant name for tag 59: the name itself if printable ASCII, else a generic one."""
    name = (name or "").strip()
    if not name or not _is_printable_ascii(name):
        return FALLBACK_NAME
    return name[:MAX_ASCII_NAME].rstrip()


def local_name(name: str | None) -> str:
    """Return the merchant name for the language template: printable characters only, at most 25."""
    cleaned = "".join(ch for ch in (name or "") if ch.isprintable()).strip()
    return cleaned[:MAX_LOCAL_NAME].rstrip() or FALLBACK_NAME


def city(region: str | None) -> tuple[str, str]:
    """Return the city of a six-digit region code, in ASCII and in Chinese."""
    if not region or not _REGION.fullmatch(region):
        return COUNTRY
    if region[:4] in CITIES:
        return CITIES[region[:4]]
    return PROVINCE if region.startswith("64") else COUNTRY


def merchant_category_code(category) -> str:
    """Return the ISO 18245 merchant category code of one of our merchant categories."""
    key = getattr(category, "value", category)
    if key not in MCC:
        raise ValueError(f"No merchant category code for {category!r}")
    return MCC[key]


def _account_template(store_public_id: str, pay_url: str | None) -> str:
    """Build tag 26's value; the pay-page URL is left out when it would not fit."""
    head, tail = tlv("00", GUID), tlv("02", store_public_id)
    if pay_url and len(head) + len(tail) + 4 + len(pay_url) <= MAX_VALUE:
        return head + tlv("01", pay_url) + tail
    return head + tail


def merchant_presented_payload(*, store_public_id: str, merchant_name: str, category, region: str | None,
                               pay_url: str | None = None) -> str:
    """Build the static EMVCo merchant-presented payload of a store, ending in its CRC (tag 63)."""
    if not store_public_id or len(store_public_id) > MAX_TERMINAL_LABEL or not _is_printable_ascii(store_public_id):
        raise ValueError(f"Store id must be 1-{MAX_TERMINAL_LABEL} printable ASCII characters")
    city_ascii, city_local = city(region)
    body = "".join([
        tlv("00", "01"),
        tlv("01", "11"),
        tlv("26", _account_template(store_public_id, pay_url)),
        tlv("52", merchant_category_code(category)),
        tlv("53", CURRENCY_CNY),
        tlv("58", COUNTRY_CN),
        tlv("59", ascii_name(merchant_name)),
        tlv("60", city_ascii),
        tlv("62", tlv("07", store_public_id)),
        tlv("64", tlv("00", "ZH") + tlv("01", local_name(merchant_name)) + tlv("02", city_local)),
    ]) + CRC_TAG
    payload = body + f"{crc16_ccitt(body.encode('utf-8')):04X}"
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"EMVCo payload is {len(payload)} characters; at most {MAX_PAYLOAD} fit")
    return payload


def parse_tlv(payload: str) -> dict[str, str]:
    """Read one level of data objects into {tag: value}; a template's value can be read again the same way."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(payload):
        tag, length = payload[at:at + 2], payload[at + 2:at + 4]
        if not _TAG.fullmatch(tag) or not _TAG.fullmatch(length):
            raise ValueError(f"Malformed EMVCo data object at character {at}")
        end = at + 4 + int(length)
        if int(length) == 0 or end > len(payload):
            raise ValueError(f"EMVCo tag {tag} at character {at} has a bad length {length}")
        if tag in fields:
            raise ValueError(f"EMVCo tag {tag} appears twice")
        fields[tag] = payload[at + 4:end]
        at = end
    return fields


def check_crc(payload: str) -> bool:
    """Tell whether a payload is well formed, ends in its CRC (tag 63), and the CRC matches."""
    try:
        fields = parse_tlv(payload)
    except ValueError:
        return False
    if not fields or list(fields)[-1] != "63" or not payload.endswith(CRC_TAG + fields["63"]):
        return False
    if not _CRC_VALUE.fullmatch(fields["63"]):
        return False
    return crc16_ccitt(payload[:-4].encode("utf-8")) == int(fields["63"], 16)
