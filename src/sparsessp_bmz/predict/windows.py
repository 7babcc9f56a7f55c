"""Where the windows of a field go, and how each window's output is weighted when blended.

Windows are placed in *sparse* z coordinates: each window's input is a contiguous block of
acquired TL slices and its output covers exactly r times as many dense slices starting at r times
the first one, so a window never straddles the sparse grid. Window borders see less context than
window centres, so overlapping windows are blended with a Gaussian weight (sigma = window / 8, as
RepMode and the paper do) to hide seams.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.spec import XY_MULTIPLE, ModelSpec

#: Gaussian sigma as a fraction of the window size, per axis.
SIGMA_FRACTION = 1 / 8
#: eps of bioimage.io's `zero_mean_unit_variance`, (x - mean) / (std + eps): the default, which
#: the packages keep.
ZMUV_EPS = 1e-6


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one volume go, in sparse input voxels.

    `padded_shape` is the input after reflect padding (only where the volume is smaller than a
    window); `starts` are the window origins per axis; the last window of each axis is flush with
    the padded end.
    """

    input_window: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def count(self) -> int:
        """Number of windows (network forward passes of batch size one)."""
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return itertools.product(*self.starts)  # type: ignore[return-value]


def _axis_starts(size: int, window: int, overlap: float) -> tuple[int, ...]:
    step = max(1, round(window * (1 - overlap)))
    last = size - window
    starts = list(range(0, last, step))
    starts.append(last)
    return tuple(starts)


#: Window overlap: one fraction for every axis, or one per axis (z, y, x).
Overlap = float | tuple[float, float, float]


def axis_overlaps(overlap: Overlap) -> tuple[float, float, float]:
    """`overlap` per axis (z, y, x), each checked to be in [0, 1)."""
    per_axis = (overlap,) * 3 if isinstance(overlap, int | float) else tuple(overlap)
    if len(per_axis) != 3 or not all(0 <= o < 1 for o in per_axis):
        raise UserInputError(
            f"overlap must be in [0, 1) (one, or one per axis z, y, x), got {overlap}"
        )
    return per_axis  # type: ignore[return-value]


def plan_windows(
    sparse_shape: tuple[int, int, int], input_window: tuple[int, int, int], overlap: Overlap
) -> WindowPlan:
    """Tile a sparse volume with windows overlapping by about `overlap` of their size per axis."""
    overlaps = axis_overlaps(overlap)
    padded = tuple(max(s, w) for s, w in zip(sparse_shape, input_window, strict=True))
    starts = tuple(
        _axis_starts(s, w, o) for s, w, o in zip(padded, input_window, overlaps, strict=True)
    )
    return WindowPlan(tuple(input_window), padded, starts)  # type: ignore[arg-type]


def gaussian_profile(size: int) -> np.ndarray:
    """The 1D Gaussian of one window axis (sigma = size / 8, peak 1), float64."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
    profile = np.exp(-0.5 * (coords / (size * SIGMA_FRACTION)) ** 2)
    return profile / profile.max()


def gaussian_weight(window_zyx: tuple[int, int, int]) -> np.ndarray:
    """Separable Gaussian over a window (peak 1, sigma = size / 8 per axis), float32: the
    product of each axis's `gaussian_profile`.

    The smallest weight, at a corner, is exp(-24) ~ 4e-11: tiny but positive, so voxels that only
    one window covers (volume edges) are still normalised exactly.
    """
    z, y, x = (gaussian_profile(size) for size in window_zyx)
    return (z[:, None, None] * y[None, :, None] * x[None, None, :]).astype(np.float32)


def axis_coverage(starts: tuple[int, ...], size: int, padded: int, scale: int = 1) -> np.ndarray:
    """Sum of the window profiles of one axis over its (padded) extent, float32.

    The windows of a plan are the product of its per-axis starts and their weight is separable,
    so the total weight at (z, y, x) is the product of the three axes' coverages: the blend
    needs no weight array of the field's size. `scale` maps input to output voxels (r along z).
    """
    profile = gaussian_profile(scale * size)
    coverage = np.zeros(scale * padded, dtype=np.float64)
    for start in starts:
        coverage[scale * start : scale * start + scale * size] += profile
    return coverage.astype(np.float32)


def resolve_window(spec: ModelSpec, window: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The sparse input window for a target-voxel window (default: the training patch)."""
    target = spec.patch if window is None else tuple(window)
    if len(target) != 3 or target[0] % spec.ratio:
        raise UserInputError(
            f"window {target} must be three sizes (D, H, W) in target voxels with D a multiple of "
            f"the sparsity ratio r={spec.ratio}"
        )
    input_window = (target[0] // spec.ratio, target[1], target[2])
    try:
        spec.check_input_shape(*input_window)
    except ValueError as err:
        raise UserInputError(
            f"window {target} does not fit model {spec.model_id}: {err}; leave out --window (the "
            f"default fits the field) or use the training patch {spec.patch}"
        ) from err
    return input_window


def zscore_window(window: np.ndarray, eps: float = ZMUV_EPS) -> np.ndarray:
    """`window` z-scored on its own statistics, as bioimage.io's per-sample
    `zero_mean_unit_variance` does: (x - mean) / (std + eps), float32 (statistics in float64).

    A z-score of a z-score is the z-score (up to eps), so applying this to a window of a volume
    that was already z-scored as a whole gives what a consumer computes from the raw tile.
    """
    mean = float(window.mean(dtype=np.float64))
    std = float(window.std(dtype=np.float64))
    return ((window - mean) / (std + eps)).astype(np.float32)


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _fitted_size(size: int, cap: int, overlap: float, multiple: int) -> int:
    """The smallest window (a multiple of `multiple`, at most `cap` unless the cap is below
    one multiple) that covers `size` with as few windows as `cap` allows at `overlap`: n
    windows of w overlapping by `overlap` cover w * (n - (n - 1) * overlap) voxels."""
    if size <= cap:
        return max(multiple, _round_up(size, multiple))
    count = math.ceil((size - overlap * cap) / (cap * (1 - overlap)))
    return max(
        multiple, min(cap, _round_up(math.ceil(size / (count - (count - 1) * overlap)), multiple))
    )


def fitted_window(
    spec: ModelSpec, sparse_shape: tuple[int, int, int], yx_scale: int, overlap: Overlap = 0.0
) -> tuple[int, int, int]:
    """A target-voxel window of the training depth whose y/x are at most `yx_scale` times the
    training patch's, fitted to the field: as few windows as that allows, each as small as
    covering the field at `overlap` needs (a field a little smaller than a window is
    reflect-padded rather than covered twice)."""
    overlaps = axis_overlaps(overlap)
    yx = tuple(
        _fitted_size(size, yx_scale * patch, o, XY_MULTIPLE)
        for patch, size, o in zip(spec.patch[1:], sparse_shape[1:], overlaps[1:], strict=True)
    )
    return (spec.patch[0], *yx)  # type: ignore[return-value]
