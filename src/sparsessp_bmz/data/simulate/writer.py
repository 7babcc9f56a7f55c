"""Turning simulated fields into files: one OME-TIFF per field and a manifest like real data's.

Each field and each channel has its own random stream derived from (seed, field, channel), so a
field looks the same whatever structures, worker count or number of fields are asked for.

Beside each field's image, `cell_XXXX.masks.ome.tif` holds the true objects of its blob-like
structures (uint16 labels, one channel per structure, named like the image's channels), so that
evaluation can score segmentations against the truth (`masks_path`). They are written after the
image, so an interrupted run may leave an image without them: evaluation then scores without truth.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sparsessp_bmz import guards
from sparsessp_bmz.data.atomic import atomic_output, write_rows_csv
from sparsessp_bmz.data.config import SIMULATED_STRUCTURES, SimulationSettings, VoxelSize
from sparsessp_bmz.data.manifest import CZI_LAYOUT
from sparsessp_bmz.errors import UserInputError

MANIFEST_NAME = "manifest.csv"
IMAGE_FOLDER = "images"
TL_CHANNEL = "TL"
_TL_STREAM = len(SIMULATED_STRUCTURES) + 1


#: Suffix of a field's true-object labels in place of the image's ".ome.tif".
MASKS_SUFFIX = ".masks.ome.tif"
#: Simulated structures with true objects (`geometry.Field.masks`).
MASKED_STRUCTURES = ("dna", "nucleolus")


def image_name(index: int) -> str:
    return f"cell_{index:04d}.ome.tif"


def masks_path(image: Path) -> Path:
    """Where the true-object labels of a simulated image are (they may not exist)."""
    return image.with_name(image.name.removesuffix(".ome.tif") + MASKS_SUFFIX)


def _masked(settings: SimulationSettings) -> list[str]:
    return [name for name in settings.structures if name in MASKED_STRUCTURES]


def _image_index(name: str) -> int:
    """The field index of an image name or its masks' (`image_name`'s and `masks_path`'s
    inverse); 2**63 for other names."""
    name = name.removesuffix(MASKS_SUFFIX) + (".ome.tif" if name.endswith(MASKS_SUFFIX) else "")
    stem = name.removeprefix("cell_").removesuffix(".ome.tif")
    return int(stem) if stem.isdigit() and name == image_name(int(stem)) else 2**63


def simulate_cell(index: int, settings: SimulationSettings) -> tuple[np.ndarray, np.ndarray]:
    """One field as uint16 (C, Z, Y, X): TL first, then the structures in the requested order;
    and its true-object labels, uint16 (C, Z, Y, X), one channel per `_masked` structure."""
    from sparsessp_bmz.data.simulate.geometry import simulate_field
    from sparsessp_bmz.data.simulate.optics import fluorescence, refractive_index, transmitted_light

    def stream(channel: int) -> np.random.Generator:
        return np.random.default_rng([settings.seed, index, channel])

    field = simulate_field(settings.shape, settings.voxel_size_um, stream(0))
    channels = [
        transmitted_light(refractive_index(field), settings.voxel_size_um, stream(_TL_STREAM))
    ]
    for name in settings.structures:
        rng = stream(1 + SIMULATED_STRUCTURES.index(name))
        channels.append(fluorescence(name, field.structures[name], settings.voxel_size_um, rng))
    masks = [field.masks[name] for name in _masked(settings)]
    return np.stack(channels), np.stack(masks) if masks else np.zeros((0, *settings.shape), "u2")


def write_ome_tiff(path: Path, data: np.ndarray, voxel: VoxelSize, channels: list[str]) -> None:
    """(C, Z, Y, X) to an OME-TIFF whose metadata records voxel sizes and channel names."""
    import tifffile

    metadata = {
        "axes": "CZYX",
        "PhysicalSizeZ": voxel[0],
        "PhysicalSizeY": voxel[1],
        "PhysicalSizeX": voxel[2],
        "PhysicalSizeZUnit": "µm",
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeXUnit": "µm",
        "Channel": {"Name": channels},
    }
    with atomic_output(path) as handle:
        tifffile.imwrite(handle, data, ome=True, photometric="minisblack", metadata=metadata)


def _write_cell(index: int, settings: SimulationSettings, folder: Path) -> None:
    data, masks = simulate_cell(index, settings)
    channels = [TL_CHANNEL, *settings.structures]
    image = folder / image_name(index)
    write_ome_tiff(image, data, settings.voxel_size_um, channels)
    if len(masks):
        write_ome_tiff(masks_path(image), masks, settings.voxel_size_um, _masked(settings))


def _one_thread_each() -> None:
    """Workers already fill the cores; threads inside each would only compete for them."""
    import torch

    torch.set_num_threads(1)


def write_manifest(path: Path, settings: SimulationSettings) -> None:
    """FNet layout, one row per field and structure, paths relative to the manifest."""
    rows = [
        [f"{IMAGE_FOLDER}/{image_name(index)}", 0, channel, name]
        for index in range(settings.cells)
        for channel, name in enumerate(settings.structures, start=1)
    ]
    write_rows_csv(path, CZI_LAYOUT, rows)


def data_set_bytes(settings: SimulationSettings) -> int:
    """Bytes the images of `settings` take on disk (uncompressed uint16, TL plus structures, and
    the true-object labels)."""
    channels = 1 + len(settings.structures) + len(_masked(settings))
    return settings.cells * channels * guards.voxels(settings.shape) * 2


def check_simulation(settings: SimulationSettings, out: Path) -> None:
    """Refuse, before anything is created, what cannot finish: `out` (or its images/ folder)
    being a file, fields too large for the memory limit, images too large for the free disk."""
    out = Path(out)
    for folder in (out, out / IMAGE_FOLDER):
        if folder.exists() and not folder.is_dir():
            raise UserInputError(
                f"{folder} is a file, not a folder; give simulate a folder to write images/ and "
                f"{MANIFEST_NAME} into (a new or existing one)"
            )
    guards.check_simulation(settings.shape, settings.workers)
    # images simulated before under the same names are replaced: their space comes back
    images = out / IMAGE_FOLDER
    replaced = sum(
        path.stat().st_size
        for path in (images.iterdir() if images.is_dir() else ())
        if _image_index(path.name) < settings.cells and path.is_file()
    )
    guards.check_disk(
        data_set_bytes(settings) - replaced,
        out,
        f"simulating {settings.cells} fields of {'x'.join(map(str, settings.shape))}",
        "free disk space, choose another folder, or ask for fewer --cells or a smaller --shape",
    )


def simulate(
    settings: SimulationSettings, out: Path, progress: Callable[[], None] | None = None
) -> Path:
    """Write the data set under `out` and return its manifest (written last, once images exist).

    Memory, disk and the folder are checked first (`check_simulation`), so nothing is created for
    a data set that cannot be finished; a write that fails anyway (disk filled by someone else)
    is one error, and every image is written to a temporary name first, never left truncated.
    """
    out = Path(out)
    check_simulation(settings, out)
    try:
        return _simulate(settings, out, progress)
    except OSError as err:
        raise UserInputError(
            f"cannot write the simulated data under {out}: {err.strerror or err} "
            f"({getattr(err, 'filename', None) or out}); the images written so far are complete; "
            "free disk space or choose another folder and run simulate again"
        ) from err


def _simulate(settings: SimulationSettings, out: Path, progress: Callable[[], None] | None) -> Path:
    folder = out / IMAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    indices = range(settings.cells)
    if settings.workers == 1:
        for index in indices:
            _write_cell(index, settings, folder)
            if progress is not None:
                progress()
    else:
        with ProcessPoolExecutor(settings.workers, initializer=_one_thread_each) as pool:
            futures = [pool.submit(_write_cell, index, settings, folder) for index in indices]
            for future in futures:
                future.result()
                if progress is not None:
                    progress()
    manifest = out / MANIFEST_NAME
    write_manifest(manifest, settings)
    return manifest
