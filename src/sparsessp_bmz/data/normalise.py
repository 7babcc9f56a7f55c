"""Bringing every volume to the same grid and scale, as RepMode's protocol does."""

from __future__ import annotations

import numpy as np

from sparsessp_bmz.data.config import VoxelSize
from sparsessp_bmz.errors import UserInputError


def resample(volume: np.ndarray, source: VoxelSize, target: VoxelSize) -> np.ndarray:
    """Linear resampling to the target voxel size (RepMode's choice, kept for comparability).

    No resampling happens when the grids already agree, which is the common case for the simulator.
    """
    from scipy.ndimage import zoom

    factors = tuple(s / t for s, t in zip(source, target, strict=True))
    if np.allclose(factors, 1.0, rtol=1e-4):
        return volume
    return zoom(volume, factors, order=1, prefilter=False, grid_mode=False).astype(np.float32)


def zscore(volume: np.ndarray, where: str) -> np.ndarray:
    """Per-volume z-score; NaN or constant volumes carry no usable signal and are refused."""
    mean = float(volume.mean(dtype=np.float64))
    std = float(volume.std(dtype=np.float64))
    if not np.isfinite(mean) or not np.isfinite(std):
        raise UserInputError(
            f"{where}: the volume contains NaN or infinite values; clean the image"
        )
    if std <= 1e-6 * max(1.0, abs(mean)):
        raise UserInputError(f"{where}: the volume is constant ({mean:g}); it carries no signal")
    return ((volume - mean) / std).astype(np.float32)
