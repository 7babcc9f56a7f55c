"""Sparse sampling on a fixed global grid.

A microscope stepping r times further than the label grid acquires the slices z = p, p + r, ...
of the whole stack, whatever crop is later taken from it. Training crops are therefore aligned to
that grid (crop start z0 with z0 = p mod r), so the sparse input of a crop is exactly a window of
the sparse stack; subsampling each crop on its own would move the grid from crop to crop.
"""

from __future__ import annotations

import numpy as np

from sparsessp_bmz.errors import UserInputError


def _check_grid(ratio: int, phase: int) -> None:
    if ratio < 1:
        raise UserInputError(f"the sparsity ratio must be a positive integer, got {ratio}")
    if not 0 <= phase < ratio:
        raise UserInputError(
            f"the sparse phase must be in [0, {ratio}) for ratio {ratio}, got {phase}"
        )


def sparse_indices(depth: int, ratio: int, phase: int = 0) -> np.ndarray:
    """Dense z indices of the slices a sparse acquisition keeps from a stack of `depth` slices."""
    _check_grid(ratio, phase)
    return np.arange(phase, depth, ratio)


def subsample(stack_zyx: np.ndarray, ratio: int, phase: int = 0) -> np.ndarray:
    """The sparse stack (a view) that a microscope stepping `ratio` slices would have acquired."""
    _check_grid(ratio, phase)
    return stack_zyx[phase::ratio]


def sparse_window(z0: int, depth: int, ratio: int, phase: int = 0) -> slice:
    """Slice of the sparse stack that covers the dense crop [z0, z0 + depth).

    Only aligned crops have such a window; asking for a misaligned one is a bug in the caller.
    """
    _check_grid(ratio, phase)
    if depth % ratio or (z0 - phase) % ratio or z0 < 0:
        raise ValueError(
            f"crop z0={z0}, depth={depth} is not aligned to the grid of ratio {ratio}, "
            f"phase {phase}: need z0 = phase mod ratio and depth a multiple of ratio"
        )
    start = (z0 - phase) // ratio
    return slice(start, start + depth // ratio)


def feasible_phases(stack_depth: int, crop_depth: int, ratio: int) -> int:
    """How many phases admit an aligned crop: a stack barely deeper than the crop has fewer."""
    return min(ratio, stack_depth - crop_depth + 1)


def aligned_starts(stack_depth: int, crop_depth: int, ratio: int, phase: int) -> np.ndarray:
    """Every crop start z0 on the grid of `phase` whose crop fits in the stack."""
    _check_grid(ratio, phase)
    return np.arange(phase, stack_depth - crop_depth + 1, ratio)
