import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import FieldCipher, mask_id_number, mask_phone
from core.logs import mask_pii
from core.money import bp_of, format_amount


@pytest.mark.parametrize("amount, bp, expected", [
    (10000, 1200, 1200), (1, 5000, 1), (3, 5000, 2), (5, 1000, 1), (4, 1000, 0), (-3, 5000, -2),
    (999, 3333, 333), (0, 1200, 0), (12345, 0, 0), (12345, 10000, 12345),
])
def test_basis_points_round_half_up(amount, bp, expected):
    assert bp_of(amount, bp) == expected


@given(st.integers(-10**12, 10**12), st.integers(0, 10000))
def test_basis_points_are_within_half_a_fen_of_the_exact_value(amount, bp):
    result = bp_of(amount, bp)
    exact_times_2 = 2 * amount * bp  # compare 2*result*10000 with 2*amount*bp, all integers
    assert abs(result * 20000 - exact_times_2) <= 10000
    assert bp_of(-amount, bp) == -result


def test_money_refuses_floats():
    with pytest.raises(TypeError):
        bp_of(10.5, 100)
    with pytest.raises(TypeError):
        bp_of(True, 100)


def test_format_amount():
    assert format_amount(1250) == "¥12.50"
    assert format_amount(-5) == "-¥0.05"
    assert format_amount(123456789) == "¥1,234,567.89"


def test_field_encryption_round_trips_and_is_bound_to_its_context():
    cipher = FieldCipher("some-data-key")
    token = cipher.encrypt("11010519491231002X", "member.id_number")
    assert "11010519491231002X" not in token
    assert cipher.encrypt("11010519491231002X", "member.id_number") != token  # fresh nonce
    assert cipher.decrypt(token, "member.id_number") == "11010519491231002X"
    with pytest.raises(Exception):
        cipher.decrypt(token, "member.phone")
    with pytest.raises(Exception):
        FieldCipher("another-key").decrypt(token, "member.id_number")


def test_blind_index_is_deterministic_keyed_and_contextual():
    a, b = FieldCipher("key-a"), FieldCipher("key-b")
    assert a.blind_index("x", "c1") == a.blind_index("x", "c1")
    assert a.blind_index("x", "c1") != a.blind_index("x", "c2")
    assert a.blind_index("x", "c1") != b.blind_index("x", "c1")


def test_masking():
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    assert mask_phone("13912345678") == "139****5678"
    assert mask_pii("id 11010519491231002X phone 13912345678 order 1234") == \
        "id 1101**********002X phone 139****5678 order 1234"


def test_times_are_shown_in_the_unions_time_zone():
    import datetime as dt

    from core.i18n import local_time

    utc = dt.datetime(2026, 11, 25, 17, 30, tzinfo=dt.timezone.utc)
    assert local_time(utc) == "2026-11-26 01:30"  # after midnight in Ningxia is the next business day
    assert local_time(None) == ""
