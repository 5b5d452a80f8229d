import datetime as dt

import pytest

from cards.numbers import (group_digits, looks_like_payment_code, luhn_check_digit, luhn_valid, mask_card_number,
                           new_card_number, new_payment_code_digits, pin_problems)


@pytest.mark.parametrize("number", ["79927398713", "4111111111111111", "5555555555554444", "378282246310005",
                                    "6011111111111117", "0000000000000000"])
def test_luhn_accepts_known_valid_numbers(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["79927398710", "4111111111111112", "1234567812345678", "", "7", "4111-1111",
                                    "４１１１１１１１１１１１１１１１"])
def test_luhn_refuses_wrong_check_digits_and_non_digits(number):
    assert not luhn_valid(number)


def test_luhn_check_digit_known_vector():
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_check_digit("411111111111111") == "1"
    with pytest.raises(ValueError):
        luhn_check_digit("12a4")


def test_card_numbers_carry_the_prefix_and_a_check_digit_and_are_random():
    numbers = {new_card_number("880064") for _ in range(2000)}
    assert len(numbers) == 2000
    for n in numbers:
        assert len(n) == 19 and n.startswith("880064") and luhn_valid(n)
    with pytest.raises(ValueError):
        new_card_number("880064123456")


def test_masking_shows_only_the_first_six_and_last_four():
    assert mask_card_number("8800641234567890123") == "880064*********0123"
    assert group_digits("880064123456789012") == "8800 6412 3456 7890 12"


def test_payment_code_digits_have_the_shape_tills_expect():
    codes = {new_payment_code_digits() for _ in range(1000)}
    assert len(codes) == 1000
    for code in codes:
        assert len(code) == 18 and code.startswith("88") and looks_like_payment_code(code)
    code = codes.pop()
    flipped = code[:5] + str((int(code[5]) + 1) % 10) + code[6:]
    assert not looks_like_payment_code(flipped)
    assert not looks_like_payment_code(code[:-1])
    assert not looks_like_payment_code("99" + code[2:])


BORN = dt.date(1985, 6, 15)
ID_NUMBER = "64010419850615123X"
PHONE = "13912345678"


@pytest.mark.parametrize("pin", ["123456", "654321", "000000", "999999", "012345", "987654", "121212", "123123",
                                 "850615", "150685", "061585", "198506",
                                 "345678"])
def test_weak_pins_are_refused(pin):
    assert pin_problems(pin, born=BORN, id_number=ID_NUMBER, phone=PHONE)


def test_pins_from_the_members_own_numbers_are_refused():
    assert pin_problems("419850", born=BORN, id_number="640104198506419850", phone=PHONE)
    assert pin_problems("345678", born=BORN, id_number=ID_NUMBER, phone="13912345678")


@pytest.mark.parametrize("pin", ["12345", "1234567", "abcdef", "12 456", "１２３４５６", "", None, 123456])
def test_pins_must_be_six_ascii_digits(pin):
    assert pin_problems(pin) == ["A PIN is exactly six digits."]


@pytest.mark.parametrize("pin", ["583920", "274816", "902461"])
def test_ordinary_pins_are_accepted(pin):
    assert pin_problems(pin, born=BORN, id_number=ID_NUMBER, phone=PHONE) == []
