"""Reading one channel of a z-stack, lazily, with bioio and the reader plugin that fits the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.config import VoxelSize
from sparsessp_bmz.errors import UserInputError


@dataclass(frozen=True)
class Stack:
    """One channel as float32 (Z, Y, X) with the voxel size it was acquired at."""

    data: np.ndarray
    voxel_size_um: VoxelSize


def read_stack(path: Path, channel: int, where: str, fallback: VoxelSize | None = None) -> Stack:
    """Decode only the requested channel of the first scene and time point.

    Only the dask graph of that channel is computed, so a 7-channel CZI costs one channel of I/O.
    `where` names the manifest row in errors; `fallback` is used when the file has no voxel size.
    """
    from bioio import BioImage

    try:
        image = BioImage(path)
        dims = image.dims
    except Exception as err:  # bioio raises many types for unreadable files
        raise UserInputError(f"{where}: cannot read {path} as an image ({err})") from err
    if not 0 <= channel < dims.C:
        raise UserInputError(
            f"{where}: channel {channel} is out of range, {path.name} has {dims.C} channel(s) "
            f"(0..{dims.C - 1}); fix channel_signal/channel_target"
        )
    sizes = image.physical_pixel_sizes
    recorded = (sizes.Z, sizes.Y, sizes.X)
    if all(size is not None and size > 0 for size in recorded):
        voxel = tuple(float(size) for size in recorded)
    elif fallback is not None:
        voxel = fallback
    else:
        raise UserInputError(
            f"{where}: {path.name} does not record its voxel size (z, y, x = {recorded}); "
            "set fallback_voxel_size_um in the data settings"
        )
    data = image.get_image_dask_data("ZYX", C=channel, T=0).compute()
    return Stack(np.asarray(data, dtype=np.float32), voxel)  # type: ignore[arg-type]
