"""Images in and out of `sparsessp-bmz predict`: a TL stack brought to the model's grid, and an
OME-TIFF or OME-Zarr prediction that records its voxel size.

Decoding is the data layer's `read_stack` (bioio, any plugin: TIFF, OME-TIFF, CZI, OME-Zarr), so
prediction reads files exactly as training did; this module adds what a user's file needs beyond
a manifest row: the sparse/dense distinction, the model's grid, and checks with one clear message.
An OME-Zarr input already on the model's grid is not read whole: `open_prediction_input` hands out
bands of rows on demand (bioio's dask array), z-scored with statistics of one streaming pass, so
a field larger than memory can be predicted slab by slab into an OME-Zarr output.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping, Sequence
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
#: Names `write_ome_tiff` writes (a .png would hold TIFF bytes).
TIFF_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")
#: Names `OmeZarrOutput` writes (a folder).
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
OUTPUT_SUFFIXES = TIFF_SUFFIXES + ZARR_SUFFIXES


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
        raise write_failed(path, err) from err


def write_failed(path: Path, err: OSError) -> UserInputError:
    """The one message of a prediction that could not be written (disk full, permissions)."""
    return UserInputError(
        f"cannot write {path}: {err.strerror or err}; nothing was written under that name "
        "(it keeps what it held before): free disk space or choose another folder"
    )


def check_output_path(output: Path, sources: Mapping[str, Path]) -> None:
    """Refuse an OUTPUT that cannot or must not be written, before any work.

    It must not be one of the `sources` (e.g. {"INPUT": ..., "checkpoint": ...}: writing there
    would destroy them), contain one (an OME-Zarr output replaces its whole folder) or lie inside
    one (a package or OME-Zarr folder), nor be a folder, must have an image name, and its folder
    (or the nearest one that exists, as missing folders are created) must be writable.
    """
    output = Path(output)
    for role, source in sources.items():
        if _same_file(output, Path(source)):
            raise UserInputError(
                f"output {output} is the {role} ({source}); writing the prediction there would "
                "destroy it: choose another output name"
            )
        inner, outer = _resolved(Path(source)), _resolved(output)
        if inner.is_relative_to(outer) or outer.is_relative_to(inner):
            where = "holds" if inner.is_relative_to(outer) else "lies inside"
            raise UserInputError(
                f"output {output} {where} the {role} ({source}); writing the prediction there "
                "would destroy or corrupt it: choose an output outside it"
            )
    if output.is_dir() and not (is_zarr_name(output) and _is_zarr(output)):
        raise UserInputError(
            f"output {output} is a folder; give a file name inside it, e.g. "
            f"{output / 'prediction.ome.tif'}, or end OUTPUT with / to write one prediction per "
            "input into it"
        )
    name = output.name.lower()
    if not name.endswith(OUTPUT_SUFFIXES):
        raise UserInputError(
            f"output {output} must be an image name: the prediction is written as OME-TIFF "
            f"({', '.join(TIFF_SUFFIXES)}) or OME-Zarr ({', '.join(ZARR_SUFFIXES)}); e.g. "
            f"{output.stem.split('.')[0]}.ome.tif"
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
    return _resolved(a) == _resolved(b)


def check_outputs_spare_inputs(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse any of many `outputs` that is, holds or lies inside any of `inputs` (an OUT folder
    holding inputs), in one pass over sets of resolved paths rather than every pair."""
    named = {_resolved(Path(p)): Path(p) for p in inputs}
    folders = {parent: path for resolved, path in named.items() for parent in resolved.parents}
    for output in outputs:
        target = _resolved(Path(output))
        inside = next((named[p] for p in target.parents if p in named), None)
        for source, what in (
            (named.get(target), "is"),
            (folders.get(target), "holds"),
            (inside, "lies inside"),
        ):
            if source is not None:
                raise UserInputError(
                    f"output {output} {what} the INPUT {source}; writing the prediction there "
                    "would destroy it: choose another output folder"
                )


def _resolved(path: Path) -> Path:
    """`path` made absolute with its symbolic links resolved (missing parts kept as given)."""
    return path.absolute().resolve()


def is_zarr_name(path: Path) -> bool:
    """Whether `path` names an OME-Zarr output (by its name alone)."""
    return Path(path).name.lower().endswith(ZARR_SUFFIXES)


def _is_zarr(folder: Path) -> bool:
    """Whether `folder` holds a Zarr group (v2 or v3): a prediction written before, which may be
    replaced, unlike any other folder."""
    return any((folder / name).is_file() for name in ("zarr.json", ".zgroup", ".zattrs"))


#: Zarr format of OME-Zarr outputs: 2 (OME-NGFF 0.4), which the widest set of viewers reads
#: (napari-ome-zarr, Fiji's n5-viewer, QuPath 0.5); bioio reads both.
ZARR_FORMAT = 2
#: Largest chunk of an OME-Zarr output, (z, y, x): a few MB, whole slabs along z.
ZARR_CHUNK = (32, 256, 256)


class OmeZarrOutput:
    """A float32 (Z, Y, X) OME-Zarr image written region by region (inside `with`) into a
    temporary folder that is renamed to `path` when the block ends without error
    (bioio-ome-zarr's `OMEZarrWriter`, one resolution level, physical voxel sizes in
    micrometres). A killed run leaves only the hidden temporary folder, never a half-written
    image under `path`; a failed run removes it.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], voxel_size_um: VoxelSize) -> None:
        from bioio_ome_zarr.writers import OMEZarrWriter

        self.path = Path(path)
        self.partial = _work_folder(self.path, "partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_work_folders(self.path)
        self._remove(self.partial)
        self.writer = OMEZarrWriter(
            str(self.partial),
            level_shapes=shape,
            dtype=np.float32,
            chunk_shape=tuple(min(c, n) for c, n in zip(ZARR_CHUNK, shape, strict=True)),
            zarr_format=ZARR_FORMAT,
            image_name=self.path.name.split(".")[0],
            axes_names=["z", "y", "x"],
            axes_types=["space"] * 3,
            axes_units=["micrometer"] * 3,
            physical_pixel_size=[float(v) for v in voxel_size_um],
        )

    @staticmethod
    def _remove(folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder)

    def write_region(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Rows [y0, y0 + block.shape[1]) and columns [x0, x0 + block.shape[2]) of every
        slice."""
        region = (
            slice(0, block.shape[0]),
            slice(y0, y0 + block.shape[1]),
            slice(x0, x0 + block.shape[2]),
        )
        self.writer.write_region(np.asarray(block, dtype=np.float32), region)

    def __enter__(self) -> OmeZarrOutput:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb) -> None:  # type: ignore[no-untyped-def]
        """Rename the finished image into place, or remove the partial one on any error (a disk
        error becomes the one clear message of `write_failed`)."""
        if kind is None:
            self._commit()
            return
        self._remove(self.partial)
        if isinstance(err, OSError):
            raise write_failed(self.path, err) from err

    def _commit(self) -> None:
        """Put the finished image under its name (replacing an earlier OME-Zarr there)."""
        self.writer.close()
        old = _work_folder(self.path, "old")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        self._remove(old)


#: Kinds of hidden work folder an `OmeZarrOutput` makes next to its image.
WORK_KINDS = ("partial", "old")


def _work_folder(path: Path, kind: str) -> Path:
    """The hidden work folder `.NAME.PID@HOST.KIND` of this process for the image `path`: the
    owner in the name lets a later run tell a killed writer's leftovers from a live one's."""
    return path.with_name(f".{path.name}.{os.getpid()}@{socket.gethostname()}.{kind}")


def _process_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_work_folders(path: Path) -> None:
    """Remove the work folders that killed runs (kill -9, power loss) of this host left next to
    the image `path`, as `bmz/package.py` does for its exports; an earlier image a killed run
    had moved aside (`.old`) is put back when nothing holds its name. Folders of live processes
    and of other hosts (a shared disk) are left alone."""
    prefix = f".{path.name}."
    for leftover in (p for p in path.parent.iterdir() if p.name.startswith(prefix)):
        owner, _, kind = leftover.name[len(prefix) :].rpartition(".")
        pid, _, host = owner.partition("@")
        if kind not in WORK_KINDS or host != socket.gethostname() or not pid.isdigit():
            continue
        if _process_alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.replace(leftover, path)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def write_ome_zarr(path: Path, volume_zyx: np.ndarray, voxel_size_um: VoxelSize) -> None:
    """Write a whole float32 (Z, Y, X) volume as OME-Zarr, atomically (see `OmeZarrOutput`)."""
    volume = np.asarray(volume_zyx, dtype=np.float32)
    with OmeZarrOutput(path, volume.shape, voxel_size_um) as output:  # type: ignore[arg-type]
        output.write_region(0, 0, volume)


#: Bytes of float64 input one band of the streaming statistics pass may take.
STATS_BAND_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ZScore:
    """Mean and standard deviation of a whole volume, as `data.normalise.zscore` computes them."""

    mean: float
    std: float


def _streamed_zscore(data, path: Path) -> ZScore:  # type: ignore[no-untyped-def]
    """Mean and std of a lazy (z, y, x) array in one pass over bands of rows, combined with
    Chan et al.'s pairwise update (float64), refusing what `zscore` refuses (NaN, constant)."""
    depth, height, width = data.shape
    rows = max(1, STATS_BAND_BYTES // (8 * depth * width))
    count, mean, m2 = 0, 0.0, 0.0
    for start in range(0, height, rows):
        band = np.asarray(data[:, start : start + rows].compute(), dtype=np.float64)
        if not np.isfinite(band).all():
            raise UserInputError(
                f"input {path} contains NaN or infinite values; clean or crop the image"
            )
        n, band_mean = band.size, float(band.mean())
        band_m2 = float(((band - band_mean) ** 2).sum())
        delta = band_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += band_m2 + delta**2 * count * n / total
        count = total
    std = (m2 / count) ** 0.5
    if std <= 1e-6 * max(1.0, abs(mean)):
        raise UserInputError(
            f"input {path}: the volume is constant ({mean:g}); it carries no signal"
        )
    return ZScore(mean, std)


@dataclass(frozen=True)
class LazyRows:
    """A TL stack on disk, z-scored and subsampled on the sparse grid band by band (the
    `SparseRows` of `predict.slabs`): only the rows and columns asked for are read."""

    data: object  # dask array (z, y, x) of the dense or sparse file
    stats: ZScore
    dense_phase: int | None
    ratio: int

    @property
    def _z(self) -> slice:
        return (
            slice(None) if self.dense_phase is None else slice(self.dense_phase, None, self.ratio)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        depth, height, width = self.data.shape  # type: ignore[attr-defined]
        return len(range(depth)[self._z]), height, width

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        data = self.data[self._z, top:bottom, left:right].compute()  # type: ignore[index]
        band = np.require(data, dtype=np.float32, requirements="W")
        band -= np.float32(self.stats.mean)  # in place: a band can be a few hundred MB
        band /= np.float32(self.stats.std)
        return band


@dataclass(frozen=True)
class PredictionField:
    """What `open_prediction_input` gives: the sparse rows (in memory or read on demand) and the
    voxel size the prediction will have."""

    sparse: object  # predict.slabs.SparseRows
    output_voxel_size_um: VoxelSize
    resampled: bool

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.sparse, LazyRows)


def open_prediction_input(
    path: Path,
    *,
    ratio: int,
    model_voxel_size_um: VoxelSize,
    channel: int = 0,
    dense_phase: int | None = None,
    fallback_voxel_size_um: VoxelSize | None = None,
    time: int | None = None,
) -> PredictionField:
    """`read_prediction_input`, except that an OME-Zarr already on the model's grid is read
    lazily (bands of rows on demand) instead of whole. Other files, and OME-Zarr that needs
    resampling, are read whole as before."""
    from sparsessp_bmz.predict.slabs import ArrayRows

    path = Path(path)
    lazy = _lazy_zarr(
        path, ratio, model_voxel_size_um, channel, dense_phase, fallback_voxel_size_um, time
    )
    if lazy is not None:
        return PredictionField(lazy, model_voxel_size_um, False)
    whole = read_prediction_input(
        path,
        ratio=ratio,
        model_voxel_size_um=model_voxel_size_um,
        channel=channel,
        dense_phase=dense_phase,
        fallback_voxel_size_um=fallback_voxel_size_um,
        time=time,
    )
    return PredictionField(ArrayRows(whole.sparse), whole.output_voxel_size_um, whole.resampled)


def _metadata_voxel(sizes, fallback: VoxelSize) -> VoxelSize:  # type: ignore[no-untyped-def]
    """The voxel size bioio's `physical_pixel_sizes` record, else `fallback` (as `read_stack`
    chooses it, without its checks)."""
    recorded = (sizes.Z, sizes.Y, sizes.X)
    if all(size is not None and size > 0 for size in recorded):
        return tuple(float(size) for size in recorded)  # type: ignore[return-value]
    return tuple(fallback)  # type: ignore[return-value]


@dataclass(frozen=True)
class ExpectedInput:
    """What reading a prediction input will give, known from its metadata alone."""

    sparse_shape: tuple[int, int, int]
    resampled: bool


def expected_sparse_shape(
    path: Path,
    *,
    ratio: int,
    model_voxel_size_um: VoxelSize,
    dense_phase: int | None = None,
    fallback_voxel_size_um: VoxelSize | None = None,
) -> ExpectedInput | None:
    """The sparse (z, y, x) shape `read_prediction_input` will give `path`, from bioio's metadata
    alone (dims and voxel size, no pixel data), so that the prediction's memory guard can refuse
    a field before a whole-read input is decoded. None when the metadata cannot be read (reading
    the file then says what is wrong)."""
    from bioio import BioImage

    from sparsessp_bmz.data.imageio import _quiet_plugin_probing

    mz, my, mx = model_voxel_size_um
    file_grid = (mz, my, mx) if dense_phase is not None else (ratio * mz, my, mx)
    try:
        with _quiet_plugin_probing():
            image = BioImage(path)
            dims = image.dims
            sizes = image.physical_pixel_sizes
    except Exception:  # bioio raises many types for unreadable files; read_stack names them
        return None
    voxel = _metadata_voxel(sizes, fallback_voxel_size_um or file_grid)
    shape = (dims.Z, dims.Y, dims.X)
    resampled = not np.allclose(voxel, file_grid, rtol=1e-3)
    if resampled:
        shape = guards.resampled_shape(shape, voxel, file_grid)  # type: ignore[assignment]
    depth, height, width = shape
    if dense_phase is not None:
        depth = len(range(depth)[dense_phase::ratio])
    return ExpectedInput((depth, height, width), resampled)


def _lazy_zarr(
    path: Path,
    ratio: int,
    model_voxel_size_um: VoxelSize,
    channel: int,
    dense_phase: int | None,
    fallback_voxel_size_um: VoxelSize | None,
    time: int | None,
) -> LazyRows | None:
    """The lazy rows of an OME-Zarr on the model's grid, or None to read it whole.

    Checks the file the way `read_stack` does (channel, time point, voxel size) on bioio's
    metadata alone; `read_stack` itself always decodes the whole channel, which is what a field
    larger than memory cannot afford.
    """
    if not (path.is_dir() and is_zarr_name(path)):
        return None
    from bioio import BioImage

    from sparsessp_bmz.data.imageio import _time_point

    mz, my, mx = model_voxel_size_um
    file_grid = (mz, my, mx) if dense_phase is not None else (ratio * mz, my, mx)
    try:
        image = BioImage(path)
        dims = image.dims
        sizes = image.physical_pixel_sizes
    except Exception:  # let read_stack name what is wrong with it
        return None
    voxel = _metadata_voxel(sizes, fallback_voxel_size_um or file_grid)
    if not np.allclose(voxel, file_grid, rtol=1e-3) or not 0 <= channel < dims.C:
        return None  # resampling or a bad channel: the whole-volume path says and does it
    guards.check_voxel_size(voxel, f"input {path.name}", "fix the voxel size in the file")
    point = _time_point(path, f"input {path}", dims.T, time, "--time")
    data = image.get_image_dask_data("ZYX", C=channel, T=point)
    depth = len(
        range(dims.Z)[slice(None) if dense_phase is None else slice(dense_phase, None, ratio)]
    )
    if dims.Z == 1:
        raise UserInputError(_single_plane_message(path, (dims.Y, dims.X)))
    if depth < MIN_SPARSE_SLICES:
        raise UserInputError(
            f"input {path} gives only {depth} sparse slice(s); the model needs at least "
            f"{MIN_SPARSE_SLICES}. Is it a dense stack? Then pass --dense"
        )
    return LazyRows(data, _streamed_zscore(data, path), dense_phase, ratio)
