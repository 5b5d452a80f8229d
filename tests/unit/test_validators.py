import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
