import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import FieldCipher
from members.validators import (InvalidValue, id_check_char, normalize_phone, region_prefix,
                                validate_id_number, validate_phone, validate_region)

TODAY = dt.date(2026, 11, 25)


def test_known_valid_id_numbers():
    # Published GB 11643 examples; the check character covers the X case.
    assert validate_id_number("11010519491231002X", TODAY) == "11010519491231002X"
    assert validate_id_number("440524188001010014", dt.date(1960, 1, 1)) == "440524188001010014"
    assert validate_id_number(" 11010519491231002x ", TODAY) == "11010519491231002X"


@pytest.mark.parametrize("value, reason", [
    ("", "18 characters"),
    ("11010519491231002", "18 characters"),
    ("11010519491231002XX", "18 characters"),
    ("1101051949123100AX", "17 digits"),
    ("110105194912310021", "check character"),
    ("99010519491231002X", "region code"),
    ("110105194902300020", "real date"),
    ("110105203001010010", "future"),
    ("110105201501010011", "under 16"),
    ("110105180001010010", "implausibly"),
])
def test_invalid_id_numbers_say_why(value, reason):
    with pytest.raises(InvalidValue, match=reason):
        validate_id_number(value, TODAY)


birth_dates = st.dates(min_value=dt.date(1910, 1, 1), max_value=dt.date(2008, 1, 1))
regions = st.sampled_from(["640104", "640402", "110105", "440524", "650102", "820000"])


@settings(max_examples=300)
@given(region=regions, born=birth_dates, seq=st.integers(0, 999))
def test_every_well_formed_id_number_validates(region, born, seq):
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    value = body + id_check_char(body)
    assert validate_id_number(value, TODAY) == value


@settings(max_examples=300)
@given(region=regions, born=birth_dates, seq=st.integers(0, 999), position=st.integers(0, 16),
       delta=st.integers(1, 9))
def test_a_single_mistyped_digit_is_caught(region, born, seq, position, delta):
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    good = body + id_check_char(body)
    digit = (int(good[position]) + delta) % 10
    bad = good[:position] + str(digit) + good[position + 1:]
    with pytest.raises(InvalidValue):
        validate_id_number(bad, TODAY)


@settings(max_examples=200)
@given(region=regions, born=birth_dates, seq=st.integers(0, 999), i=st.integers(0, 15))
def test_swapping_two_adjacent_different_digits_is_caught(region, born, seq, i):
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    good = body + id_check_char(body)
    if good[i] == good[i + 1]:
        return
    swapped = good[:i] + good[i + 1] + good[i] + good[i + 2:]
    with pytest.raises(InvalidValue):
        validate_id_number(swapped, TODAY)


@pytest.mark.parametrize("raw, expected", [
    ("13912345678", "13912345678"), ("+86 139 1234 5678", "13912345678"), ("0086-19912345678", "19912345678"),
])
def test_valid_phones(raw, expected):
    assert validate_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "12912345678", "1391234567", "139123456789", "23912345678", "1391234567a"])
def test_invalid_phones(raw):
    with pytest.raises(InvalidValue):
        validate_phone(raw)


@given(st.text(max_size=20))
def test_phone_validation_never_crashes_and_only_accepts_the_format(raw):
    try:
        value = validate_phone(raw)
    except InvalidValue:
        return
    assert len(value) == 11 and value.isdigit() and value[0] == "1" and value[1] in "3456789"
    assert normalize_phone(raw) == value


def test_regions_nest_within_the_parent():
    assert region_prefix("640000") == "64"
    assert region_prefix("640100") == "6401"
    assert region_prefix("640104") == "640104"
    assert validate_region("640100", "640000") == "640100"
    assert validate_region("640104", "640100") == "640104"
    with pytest.raises(InvalidValue, match="within"):
        validate_region("640402", "640100")
    with pytest.raises(InvalidValue, match="6-digit"):
        validate_region("6401")
    with pytest.raises(InvalidValue, match="province"):
        validate_region("990100")


def full_width(text: str) -> str:
    """Return text with its printable ASCII written in full-width forms (as Chinese IMEs type it)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def test_full_width_id_numbers_fold_to_ascii():
    assert validate_id_number(full_width("11010519491231002x"), TODAY) == "11010519491231002X"
    assert validate_id_number("\u3000" + full_width("11010519491231002X"), TODAY) == "11010519491231002X"


@pytest.mark.parametrize("value", [
    "²40104198506150014",                                 # int() refuses the superscript: was a 500
    "".join(chr(0x0660 + int(d)) for d in "110105194912310021")[:-1] + "X",  # Arabic-Indic digits
    "11010519491231002\u0669",
    "६४०१०४१९८५०६१५००१४",                                 # Devanagari digits
])
def test_digits_of_other_scripts_are_refused_not_crashed_on(value):
    with pytest.raises(InvalidValue):
        validate_id_number(value, TODAY)


def test_phones_fold_full_width_and_refuse_other_digits():
    assert validate_phone(full_width("+86 139-1234-5678")) == "13912345678"
    assert validate_phone("１３９１２３４５６７８\n") == "13912345678"
    for raw in ("".join(chr(0x0660 + int(d)) for d in "13912345678"), "1391234567８9"):
        with pytest.raises(InvalidValue):
            validate_phone(raw)


valid_ids = st.builds(lambda region, born, seq: (lambda body: body + id_check_char(body))(
    f"{region}{born:%Y%m%d}{seq:03d}"), regions, birth_dates, st.integers(0, 999))
# Zero of the scripts whose digits str.isdigit() accepts: full-width, Arabic-Indic, Devanagari, superscript.
DIGIT_ZEROS = (0xFF10, 0x0660, 0x0966, None)
SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"


def _other_script(digit: str, zero: int | None) -> str:
    return SUPERSCRIPTS[int(digit)] if zero is None else chr(zero + int(digit))


look_alike_ids = st.builds(
    lambda value, swaps: "".join(_other_script(c, swaps[i]) if i in swaps and c.isdigit() else c
                                 for i, c in enumerate(value)),
    valid_ids, st.dictionaries(st.integers(0, 17), st.sampled_from(DIGIT_ZEROS), max_size=4))
id_texts = st.one_of(st.text(max_size=30), valid_ids, look_alike_ids)


@settings(max_examples=500)
@given(raw=id_texts)
def test_id_validation_only_raises_invalid_value_and_returns_ascii(raw):
    try:
        value = validate_id_number(raw, TODAY)
    except InvalidValue:
        return
    assert value.isascii() and len(value) == 18 and value[:17].isdigit() and value[17] in "0123456789X"
    assert validate_id_number(value, TODAY) == value


@settings(max_examples=500)
@given(raw=st.one_of(st.text(max_size=30), st.from_regex(r"(\+86|0086)? ?1[3-9][0-9]{2}[ -]?[0-9]{4}[ -]?[0-9]{4}",
                                                        fullmatch=True)))
def test_phone_validation_only_raises_invalid_value_and_returns_ascii(raw):
    try:
        value = validate_phone(raw)
    except InvalidValue:
        return
    assert value.isascii() and re.fullmatch(r"1[3-9][0-9]{9}", value)


CIPHER = FieldCipher("validator-tests-key")


def _outcome(validator, raw):
    try:
        value = validator(raw)
    except InvalidValue:
        return None
    return value, CIPHER.blind_index(value, "member.id_number")


@settings(max_examples=500)
@given(raw=id_texts, pad=st.sampled_from(["", " ", "\u3000", "\t"]), wide=st.booleans(), lower=st.booleans())
def test_id_numbers_written_differently_get_the_same_blind_index(raw, pad, wide, lower):
    variant = pad + (full_width(raw) if wide else raw) + pad
    variant = variant.lower() if lower else variant
    def validate(value):
        return validate_id_number(value, TODAY)

    assert _outcome(validate, variant) == _outcome(validate, raw.lower() if lower else raw)


@settings(max_examples=500)
@given(raw=st.one_of(st.text(max_size=20), st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)),
       wide=st.booleans(), prefix=st.sampled_from(["", "+86", "0086", "+86 "]))
def test_phones_written_differently_get_the_same_blind_index(raw, wide, prefix):
    variant = prefix + raw
    assert _outcome(validate_phone, full_width(variant) if wide else variant) == _outcome(validate_phone, variant)
