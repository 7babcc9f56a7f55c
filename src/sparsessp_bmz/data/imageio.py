"""Reading one channel of a z-stack, lazily, with bioio and the reader plugin that fits the file.

Before any pixel is decoded the header's shape is checked against the memory limit
(`sparsessp_bmz.guards`), TIFF files are checked for truncation (every IFD and every plane's
bytes inside the file), and the recorded voxel size for plausibility, so a damaged or hostile file
is one clear error instead of a traceback, a MemoryError or a misleading "single plane" message.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz import guards
from sparsessp_bmz.data.config import VoxelSize
from sparsessp_bmz.errors import UserInputError

#: First four bytes of classic and BigTIFF files, little- and big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class Stack:
    """One channel as float32 (Z, Y, X) with the voxel size it was acquired at."""

    data: np.ndarray
    voxel_size_um: VoxelSize


@contextlib.contextmanager
def _quiet_plugin_probing() -> Iterator[None]:
    """Silence bioio's warning for each reader plugin that declines a file before one accepts it.

    A plain TIFF always draws one from the OME-TIFF reader, a wall of XML-parser text in every
    training log; a file that no plugin reads still raises, with bioio's own explanation. tifffile's
    own complaints about damaged files are silenced too: `tiff_damage` turns them into one message.
    """
    loggers = [logging.getLogger("bioio.bio_image"), logging.getLogger("tifffile")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Could not parse tiff pixel size")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def tiff_damage(path: Path) -> str | None:
    """Why the TIFF at `path` is truncated or corrupt, or None (also for files that are no TIFF).

    Reads every IFD (not the pixels): a broken IFD chain, a tag whose value lies past the end of
    the file, or a plane whose bytes end past it means the file was cut short or damaged.
    """
    import tifffile

    try:
        with Path(path).open("rb") as handle:
            if handle.read(4) not in TIFF_MAGIC:
                return None
        size = Path(path).stat().st_size
    except OSError:
        return None
    logger = logging.getLogger("tifffile")
    collect = _Collect()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(collect)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            for index in range(len(pages)):
                page = pages[index]
                ends = [
                    int(o) + int(c)
                    for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)
                ]
                if ends and max(ends) > size:
                    return (
                        f"plane {index} needs bytes up to {max(ends)} but the file has only "
                        f"{size} bytes"
                    )
    except Exception as err:  # tifffile raises several types for damaged headers
        return f"{type(err).__name__}: {err}"
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
        logger.propagate = propagate
    broken = [m for m in collect.messages if "offset" in m or "raised" in m]
    if not broken:
        return None
    beyond = re.search(r"offset (\d+)", broken[0])
    if beyond and int(beyond.group(1)) >= size:
        return f"its header points to byte {beyond.group(1)} but the file has only {size} bytes"
    if "value offset" in broken[0]:
        return f"a header tag (e.g. the OME-XML) runs past the end of the file at {size} bytes"
    return broken[0]


def _unreadable(path: Path, where: str, err: Exception) -> str:
    """Why no reader opened `path`, in one line (bioio's own text is a paragraph)."""
    if path.is_file() and path.stat().st_size == 0:
        return f"{where}: {path.name} is empty (0 bytes); copy or export the image again"
    if type(err).__name__ == "UnsupportedFileFormatError":
        return (
            f"{where}: cannot read {path.name} as an image: no installed reader recognises it "
            "(TIFF, OME-TIFF, CZI, OME-Zarr are read); check that it is an image file, not damaged"
        )
    return f"{where}: cannot read {path} as an image ({type(err).__name__}: {err})"


def _damaged(path: Path, where: str, detail: str) -> UserInputError:
    return UserInputError(
        f"{where}: {path.name} is truncated or corrupt ({detail}); copy or export the file again "
        "(an interrupted transfer or a full disk leaves such files)"
    )


def read_stack(
    path: Path,
    channel: int,
    where: str,
    fallback: VoxelSize | None = None,
    time: int | None = None,
    time_option: str | None = None,
    channel_hint: str = "fix channel_signal/channel_target",
) -> Stack:
    """Decode only the requested channel of the first scene and one time point.

    Only the dask graph of that channel is computed, so a 7-channel CZI costs one channel of I/O.
    `where` names the manifest row in errors; `fallback` is used when the file has no voxel size.
    A file with several time points needs `time`; `time_option` names the option that sets it
    (e.g. "--time") in the error, otherwise the user is told to save one time point per file.
    `channel_hint` says how to choose another channel.
    """
    from bioio import BioImage

    path = Path(path)
    try:
        with _quiet_plugin_probing():
            image = BioImage(path)
            dims = image.dims
            dtype = np.dtype(image.dtype)
    except Exception as err:  # bioio raises many types for unreadable files
        damage = tiff_damage(path)
        if damage is not None:
            raise _damaged(path, where, damage) from err
        raise UserInputError(_unreadable(path, where, err)) from err
    label = where if path.name in where else f"{where} ({path.name})"
    guards.check_read((dims.Z, dims.Y, dims.X), dtype.itemsize, label)
    damage = tiff_damage(path)
    if damage is not None:
        raise _damaged(path, where, damage)
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
            f"(0..{dims.C - 1}); {channel_hint}"
        )
    time_point = _time_point(path, where, dims.T, time, time_option)
    sizes = image.physical_pixel_sizes
    recorded = (sizes.Z, sizes.Y, sizes.X)
    if all(size is not None and size > 0 for size in recorded):
        voxel = tuple(float(size) for size in recorded)
        guards.check_voxel_size(voxel, label, "fix the voxel size recorded in the file's metadata")
    elif fallback is not None:
        voxel = tuple(float(size) for size in fallback)
        guards.check_voxel_size(
            voxel,
            f"{where} ({path.name}, which records no voxel size)",
            "give the voxel size in micrometres (--voxel-size, or fallback_voxel_size_um)",
        )
    else:
        raise UserInputError(
            f"{where}: {path.name} does not record its voxel size (z, y, x = {recorded}); "
            "set fallback_voxel_size_um in the data settings"
        )
    try:
        with _quiet_plugin_probing():
            data = image.get_image_dask_data("ZYX", C=channel, T=time_point).compute()
    except MemoryError as err:
        raise UserInputError(
            f"{where}: out of memory decoding {path.name} ({dims.Z}x{dims.Y}x{dims.X} voxels); "
            f"crop the image or lower {guards.ENV_VAR} so such files are refused up front"
        ) from err
    except Exception as err:  # a plugin's decoder failing on the pixels: a damaged file
        raise _damaged(path, where, f"{type(err).__name__}: {err}") from err
    return Stack(np.asarray(data, dtype=np.float32), voxel)  # type: ignore[arg-type]


def _time_point(
    path: Path, where: str, count: int, time: int | None, time_option: str | None
) -> int:
    """The time point to read: the only one, or the one asked for (never silently the first)."""
    if time is None:
        if count <= 1:
            return 0
        how = (
            f"choose one with {time_option} T (0..{count - 1})"
            if time_option
            else "save the time point you mean as its own file"
        )
        raise UserInputError(
            f"{where}: {path.name} holds {count} time points, and a z-stack is one of them; {how}"
        )
    if not 0 <= time < count:
        option = time_option or "time"
        raise UserInputError(
            f"{where}: {option} {time} is out of range, {path.name} has {count} time point(s) "
            f"(0..{count - 1})"
        )
    return time
