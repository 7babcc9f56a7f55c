"""Images in and out of `sparsessp-bmz predict`: a TL stack brought to the model's grid, and an
OME-TIFF prediction that records its voxel size.

Decoding is the data layer's `read_stack` (bioio, any plugin: TIFF, OME-TIFF, CZI, OME-Zarr), so
prediction reads files exactly as training did; this module adds what a user's file needs beyond
a manifest row: the sparse/dense distinction, the model's grid, and checks with one clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz import guards
from sparsessp_bmz.data.atomic import atomic_output
from sparsessp_bmz.data.config import VoxelSize
from sparsessp_bmz.data.imageio import read_stack
from sparsessp_bmz.data.normalise import resample, zscore
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.errors import UserInputError

#: A sparse stack needs at least this many slices: one slice has no z context to learn from.
MIN_SPARSE_SLICES = 2
#: What `write_ome_tiff` writes: OME-TIFF, so only TIFF names (a .png would hold TIFF bytes).
OUTPUT_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")


@dataclass(frozen=True)
class PredictionInput:
    """A z-scored sparse TL stack on the model's grid and the voxel size its prediction will have.

    `resampled` says whether the file's grid differed from the model's (so the user can be told).
    """

    sparse: np.ndarray
    output_voxel_size_um: VoxelSize
    resampled: bool


def read_prediction_input(
    path: Path,
    *,
    ratio: int,
    model_voxel_size_um: VoxelSize,
    channel: int = 0,
    dense_phase: int | None = None,
    fallback_voxel_size_um: VoxelSize | None = None,
    time: int | None = None,
) -> PredictionInput:
    """Read one channel of a TL stack and prepare it the way training prepared its inputs.

    A sparse file (`dense_phase` None) already holds every r-th slice, so its z spacing is r times
    the model's; a dense file is on the model's grid and is subsampled at `dense_phase` after
    z-scoring, exactly as training did. Files that do not record a voxel size are taken to be on
    the model's grid unless `fallback_voxel_size_um` says otherwise. The data is resampled to the
    model's grid when the file's grid differs, as training resampled its data.
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"input {path} does not exist; give the path of a TL z-stack")
    mz, my, mx = model_voxel_size_um
    dense = dense_phase is not None
    file_grid = (mz, my, mx) if dense else (ratio * mz, my, mx)
    stack = read_stack(
        path,
        channel,
        f"input {path}",
        fallback_voxel_size_um or file_grid,
        time=time,
        time_option="--time",
        channel_hint="choose the TL channel with --channel",
    )
    volume = stack.data
    if volume.shape[0] == 1:
        raise UserInputError(_single_plane_message(path, volume.shape[1:]))
    if not np.isfinite(volume).all():
        bad = int(np.size(volume) - np.isfinite(volume).sum())
        raise UserInputError(
            f"input {path} contains {bad} NaN or infinite values; clean or crop the image"
        )
    resampled = not np.allclose(stack.voxel_size_um, file_grid, rtol=1e-3)
    guards.check_resample(volume.shape, stack.voxel_size_um, file_grid, f"input {path.name}")
    volume = resample(volume, stack.voxel_size_um, file_grid)
    volume = zscore(volume, f"input {path}")
    if dense:
        volume = np.ascontiguousarray(subsample(volume, ratio, dense_phase))
    if volume.shape[0] < MIN_SPARSE_SLICES:
        kind = f"dense stack subsampled every {ratio} slices" if dense else "sparse stack"
        raise UserInputError(
            f"input {path} gives only {volume.shape[0]} sparse slice(s) ({kind}); the model "
            f"needs at least {MIN_SPARSE_SLICES}. Is it a dense stack? Then pass --dense"
        )
    return PredictionInput(volume, (mz, my, mx), resampled)


def _single_plane_message(path: Path, plane: tuple[int, ...]) -> str:
    """Say what a z-stack needs (stacks stored as RGB samples are refused by `read_stack`)."""
    return (
        f"input {path} is a single 2D plane (shape {plane} in y, x); the model needs a z-stack: "
        f"check that the file holds z slices (not time points or channels)"
    )


def write_ome_tiff(path: Path, volume_zyx: np.ndarray, voxel_size_um: VoxelSize) -> None:
    """Write a float32 (Z, Y, X) OME-TIFF with physical sizes; atomically (temp file + rename)."""
    import tifffile

    z, y, x = voxel_size_um
    metadata = {
        "axes": "ZYX",
        "PhysicalSizeZ": float(z),
        "PhysicalSizeZUnit": "µm",
        "PhysicalSizeY": float(y),
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeX": float(x),
        "PhysicalSizeXUnit": "µm",
    }
    path = Path(path)
    try:
        with atomic_output(path) as handle:
            tifffile.imwrite(
                handle, np.asarray(volume_zyx, dtype=np.float32), ome=True, metadata=metadata
            )
    except OSError as err:
        raise UserInputError(
            f"cannot write {path}: {err.strerror or err}; nothing was written under that name "
            "(it keeps what it held before): free disk space or choose another folder"
        ) from err


def check_output_path(output: Path, sources: Mapping[str, Path]) -> None:
    """Refuse an OUTPUT that cannot or must not be written, before any work.

    It must not be one of the `sources` (e.g. {"INPUT": ..., "checkpoint": ...}: writing there
    would destroy them) nor a folder, must have a TIFF name (the writer writes OME-TIFF), and its
    folder (or the nearest one that exists, as missing folders are created) must be writable.
    """
    output = Path(output)
    for role, source in sources.items():
        if _same_file(output, Path(source)):
            raise UserInputError(
                f"output {output} is the {role} ({source}); writing the prediction there would "
                "destroy it: choose another output name"
            )
    if output.is_dir():
        raise UserInputError(
            f"output {output} is a folder; give a file name inside it, e.g. "
            f"{output / 'prediction.ome.tif'}"
        )
    name = output.name.lower()
    if not name.endswith(OUTPUT_SUFFIXES):
        raise UserInputError(
            f"output {output} must be a TIFF name: the prediction is written as OME-TIFF; use "
            f"one of {', '.join(OUTPUT_SUFFIXES)} (e.g. {output.stem.split('.')[0]}.ome.tif)"
        )
    folder = output.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserInputError(
            f"output {output} cannot be created: {folder} is a file, not a folder; choose "
            "another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserInputError(
            f"output {output} cannot be written: the folder {folder} is read-only for you; "
            "choose a folder you can write to"
        )


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file (symlinks and hard links included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.absolute().resolve() == b.absolute().resolve()
