import collections

from core.ids import ALPHABET, ID_LENGTH, looks_like, new_public_id


def test_ids_have_the_prefix_and_shape_and_do_not_repeat():
    ids = [new_public_id("mem") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(looks_like(i, "mem") and len(i) == 4 + ID_LENGTH for i in ids)
    assert not looks_like(ids[0], "card")


def test_every_character_is_used_about_evenly():
    counts = collections.Counter("".join(new_public_id("x")[2:] for _ in range(5000)))
    assert set(counts) == set(ALPHABET)
    expected = 5000 * ID_LENGTH / len(ALPHABET)
    assert all(0.8 * expected < c < 1.2 * expected for c in counts.values())
