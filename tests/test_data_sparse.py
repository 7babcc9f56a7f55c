"""The sparse grid is global: an aligned crop's sparse input is a window of the sparse stack."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsessp_bmz.data.sparse import (
    aligned_starts,
    feasible_phases,
    sparse_indices,
    sparse_window,
    subsample,
)
from sparsessp_bmz.errors import UserInputError


@st.composite
def _grids(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    ratio = draw(st.sampled_from([1, 2, 3, 4, 8]))
    crop = ratio * draw(st.integers(1, 6))
    depth = crop + draw(st.integers(0, 20))
    phase = draw(st.integers(0, feasible_phases(depth, crop, ratio) - 1))
    starts = aligned_starts(depth, crop, ratio, phase)
    z0 = int(draw(st.sampled_from(starts.tolist())))
    return depth, crop, ratio, phase, z0


@given(_grids())
def test_sparse_input_of_an_aligned_crop_is_the_crop_of_the_sparse_stack(grid) -> None:
    depth, crop, ratio, phase, z0 = grid
    stack = np.arange(depth)  # each slice holds its own dense z index
    window = subsample(stack, ratio, phase)[sparse_window(z0, crop, ratio, phase)]
    np.testing.assert_array_equal(window, stack[z0 : z0 + crop][::ratio])
    assert set(window) <= set(sparse_indices(depth, ratio, phase))


@given(_grids())
def test_every_aligned_start_keeps_the_crop_inside_the_stack_on_the_grid(grid) -> None:
    depth, crop, ratio, phase, _ = grid
    starts = aligned_starts(depth, crop, ratio, phase)
    assert len(starts) > 0
    assert np.all((starts - phase) % ratio == 0)
    assert np.all(starts + crop <= depth)


def test_sparse_indices_step_from_the_phase_through_the_whole_stack() -> None:
    np.testing.assert_array_equal(sparse_indices(10, 4, 1), [1, 5, 9])
    np.testing.assert_array_equal(subsample(np.arange(10), 4, 1), [1, 5, 9])


def test_a_misaligned_crop_has_no_sparse_window() -> None:
    with pytest.raises(ValueError, match="not aligned"):
        sparse_window(3, 8, 2, 0)


@pytest.mark.parametrize(("ratio", "phase"), [(0, 0), (2, 2), (4, -1)])
def test_a_phase_outside_the_ratio_is_a_user_error(ratio: int, phase: int) -> None:
    with pytest.raises(UserInputError, match=r"ratio|phase"):
        sparse_indices(16, ratio, phase)
