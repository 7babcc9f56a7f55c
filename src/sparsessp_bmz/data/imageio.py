"""Reading one channel of a z-stack, lazily, with bioio and the reader plugin that fits the file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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


@contextlib.contextmanager
def _quiet_plugin_probing() -> Iterator[None]:
    """Silence bioio's warning for each reader plugin that declines a file before one accepts it.

    A plain TIFF always draws one from the OME-TIFF reader, a wall of XML-parser text in every
    training log; a file that no plugin reads still raises, with bioio's own explanation.
    """
    logger = logging.getLogger("bioio.bio_image")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_stack(path: Path, channel: int, where: str, fallback: VoxelSize | None = None) -> Stack:
    """Decode only the requested channel of the first scene and time point.

    Only the dask graph of that channel is computed, so a 7-channel CZI costs one channel of I/O.
    `where` names the manifest row in errors; `fallback` is used when the file has no voxel size.
    """
    from bioio import BioImage

    try:
        with _quiet_plugin_probing():
            image = BioImage(path)
        dims = image.dims
    except Exception as err:  # bioio raises many types for unreadable files
        raise UserInputError(f"{where}: cannot read {path} as an image ({err})") from err
    samples = dims.S if "S" in dims.order else 1
    if samples > 1:
        # tifffile writes a (3|4, Y, X) array as one RGB(A) plane unless told otherwise; reading
        # ZYX would then silently keep only the first of those slices
        raise UserInputError(
            f"{where}: {path.name} is stored as a {samples}-sample (RGB-like) image of "
            f"{dims.Y}x{dims.X} with {dims.Z} z-slice(s), not as a grayscale z-stack; if the "
            f"samples are z-slices, save it again with tifffile.imwrite(path, stack, "
            f"photometric='minisblack') or as OME-TIFF; if they are colours, save the TL "
            f"channel alone as a grayscale stack"
        )
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
