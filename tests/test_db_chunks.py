"""How the stages cut a batch into write transactions (`labintake.db`): by count and by rows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from labintake.db import chunked, chunked_by


@given(st.lists(st.integers(0, 500), max_size=300), st.integers(1, 60), st.integers(1, 400))
def test_slices_keep_the_order_and_stay_within_both_limits(
    weights: list[int], size: int, rows: int
) -> None:
    slices = list(chunked_by(weights, size, rows, lambda w: w))
    assert [w for part in slices for w in part] == weights
    for index, part in enumerate(slices):
        assert 1 <= len(part) <= size
        assert sum(part) <= rows or len(part) == 1  # one heavy value goes alone
        if index + 1 < len(slices):  # a slice ends only when the next value would not fit
            following = slices[index + 1][0]
            assert len(part) == size or sum(part) + following > rows


def test_light_values_are_cut_by_count_as_before() -> None:
    values = list(range(120))
    assert list(chunked_by(values, 50, 10_000, lambda _: 3)) == list(chunked(values, 50))


def test_a_message_at_the_limits_is_written_an_order_or_so_at_a_time() -> None:
    """100 orders of 100 tests and 100 findings each, the 300-row budget: one order per
    transaction, where 50 at a time held SQLite's write lock for 90-180 ms."""
    orders = [203] * 100
    assert [len(part) for part in chunked_by(orders, 50, 300, lambda w: w)] == [1] * 100
