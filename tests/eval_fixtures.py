"""A tiny data set whose target a ridge on TL features can recover, shared by the evaluation,
baseline, object and report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from sparsessp_bmz.imageio import write_ome_tiff

VOXEL = (0.29, 0.29, 0.29)
RATIO = 2
SHAPE = (16, 32, 32)


def write_cells(
    folder: Path,
    shape: tuple[int, int, int],
    cells: int,
    dna_of: Callable[[np.ndarray], np.ndarray],
) -> Path:
    """Cells whose TL repeats every slice pair (so the sparse stack at r = 2 upsampled by
    nearest repetition is the dense TL itself), whose "dna" is `dna_of(TL)` and whose "membrane"
    is TL plus noise; two structures image the same cells, as in AllenCell-style manifests."""
    rng = np.random.default_rng(0)
    lines = ["path_signal,path_target,structure"]
    for cell in range(cells):
        sparse = rng.normal(size=(-(-shape[0] // RATIO), *shape[1:])).astype(np.float32)
        tl = np.repeat(sparse, RATIO, axis=0)[: shape[0]]
        noisy = tl + rng.normal(scale=1.0, size=tl.shape).astype(np.float32)
        for name, volume in (("tl", tl), ("dna", dna_of(tl)), ("mem", noisy)):
            write_ome_tiff(folder / f"cell{cell}_{name}.ome.tif", volume, VOXEL)
        lines.append(f"cell{cell}_tl.ome.tif,cell{cell}_dna.ome.tif,dna")
        lines.append(f"cell{cell}_tl.ome.tif,cell{cell}_mem.ome.tif,membrane")
    manifest = folder / "cells.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def smoothed_tl_dataset(folder: Path, cells: int = 8) -> Path:
    """`write_cells` whose "dna" is the TL smoothed at 2 voxels: one of the ridge's features, so
    the ridge recovers it."""
    return write_cells(folder, SHAPE, cells, lambda tl: gaussian_filter(tl, 2.0, mode="reflect"))


def nearest(sparse: np.ndarray) -> np.ndarray:
    """The dense TL as prediction: a poor predictor of a smoothed TL."""
    return np.repeat(sparse, RATIO, axis=0)


def exact(sparse: np.ndarray) -> np.ndarray:
    """What made the dna target, z-scored as every target is: a perfect predictor of it."""
    smooth = gaussian_filter(np.repeat(sparse, RATIO, axis=0), 2.0, mode="reflect")
    return (smooth - smooth.mean()) / smooth.std()
