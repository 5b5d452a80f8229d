import pytest
from hypothesis import given
from hypothesis import strategies as st

from merchants.validators import USCC_CHARSET, InvalidUSCC, uscc_check_char, validate_uscc


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L", "91440300708461136T",
                                  " 91350100m000100y43 "])
def test_published_codes_validate(code):
    assert validate_uscc(code) == code.strip().upper()


@pytest.mark.parametrize("code, reason", [
    ("", "18 characters"),
    ("91350100M000100Y4", "18 characters"),
    ("91350100M000100Y44", "check character"),
    ("91350100M000I00Y43", "may not contain I"),
    ("91350100M000O00Y43", "may not contain O"),
    ("B1350100M000100Y43", "registration authority"),
    ("913501A0M000100Y43", "region code"),
])
def test_invalid_codes_say_why(code, reason):
    with pytest.raises(InvalidUSCC, match=reason):
        validate_uscc(code)


body17 = st.builds(
    lambda first, second, region, rest: first + second + region + rest,
    st.sampled_from("123456789ANY"), st.sampled_from(USCC_CHARSET), st.from_regex(r"[0-9]{6}", fullmatch=True),
    st.text(alphabet=USCC_CHARSET, min_size=9, max_size=9))


@given(body17)
def test_every_code_with_its_check_character_validates(body):
    assert validate_uscc(body + uscc_check_char(body)) == body + uscc_check_char(body)


@given(body17, st.integers(0, 16), st.sampled_from(USCC_CHARSET))
def test_a_single_changed_character_is_caught(body, position, replacement):
    good = body + uscc_check_char(body)
    if good[position] == replacement:
        return
    bad = good[:position] + replacement + good[position + 1:]
    with pytest.raises(InvalidUSCC):
        validate_uscc(bad)


@given(st.text(max_size=30))
def test_arbitrary_text_only_ever_raises_invalid_uscc(text):
    try:
        value = validate_uscc(text)
    except InvalidUSCC:
        return
    assert len(value) == 18 and set(value) <= set(USCC_CHARSET)
