"""Opening every manifest row a command will use, before any work is done.

`sparsessp-bmz check MANIFEST` prints one line per image; `train`, `matrix` and `evaluate` run the
same check on the rows they will read before they create a run folder or predict anything, so an
unreadable file, a missing channel, an unknown voxel size, NaNs or a volume smaller than the
training patch is reported in seconds rather than after hours of training.

What is checked per row, on the signal (TL) and target files:
* the file opens as an image, and its shape and recorded voxel size (or the data settings'
  `fallback_voxel_size_um`) are known - from the header alone;
* volumes up to `FULL_READ_LIMIT_BYTES` (float32, the larger of the file's grid and the
  resampled one) are read whole through the data layer's own reader (`volumes.load_pair`): the
  channels exist, signal and target match, the values are finite and not constant, and the
  resampled volume is at least the training patch. The demo's volumes are a few MB each.
* larger volumes are not decoded here (that alone could exhaust memory before training starts):
  their channels, voxel size and resampled shape are checked from the header, their values are
  reported as not read, and the reader checks them when training or evaluation loads them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sparsessp_bmz.data.config import DataSettings, VoxelSize
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.volumes import VolumeCache, load_pair
from sparsessp_bmz.errors import UserInputError

#: Volumes up to this size (float32 bytes on the larger of the file and the target grid) are read
#: whole to check their values; larger ones are checked from their header only.
FULL_READ_LIMIT_BYTES = 512 * 2**20
#: Decoded-volume budget of one check (structures imaged on the same cell share its TL).
CHECK_CACHE_MB = 256.0


@dataclass(frozen=True)
class Header:
    """What an image file says about itself without decoding its pixels."""

    shape: tuple[int, int, int]
    channels: int
    voxel_size_um: VoxelSize | None


@dataclass(frozen=True)
class RowReport:
    """The outcome of checking one manifest row."""

    row: ManifestRow
    shape: tuple[int, ...] | None = None
    voxel_size_um: VoxelSize | None = None
    voxel_from_fallback: bool = False
    resampled_shape: tuple[int, ...] | None = None
    values_read: bool = False
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def status(self) -> str:
        if self.problem:
            return self.problem
        if not self.values_read:
            return "ok (header only: too large to read values here)"
        return "ok"


@contextlib.contextmanager
def _quiet_bioio() -> Iterator[None]:
    """bioio logs a warning for every reader plugin that declines a file before one accepts it."""
    logger = logging.getLogger("bioio.bio_image")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_header(path: Path) -> Header | None:
    """Shape (Z, Y, X), channel count and recorded voxel size; None if the file does not open
    (the reader then says why, in its own words)."""
    try:
        from bioio import BioImage

        with _quiet_bioio():
            image = BioImage(path)
            dims = image.dims
            sizes = image.physical_pixel_sizes
        recorded = (sizes.Z, sizes.Y, sizes.X)
        voxel = (
            tuple(float(size) for size in recorded)
            if all(size is not None and size > 0 for size in recorded)
            else None
        )
        return Header((int(dims.Z), int(dims.Y), int(dims.X)), int(dims.C), voxel)  # type: ignore[arg-type]
    except Exception:  # any failure here is reported by the reader itself, in its words
        return None


def _resampled(shape: Sequence[int], source: VoxelSize, target: VoxelSize) -> tuple[int, ...]:
    """The shape `normalise.resample` gives (scipy's zoom rounds n * factor)."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, source, target, strict=True))


def _nbytes(shape: Sequence[int]) -> int:
    count = 4
    for n in shape:
        count *= n
    return count


def _short(message: str, row: ManifestRow) -> str:
    """A reader message without the row prefix (the table shows the row already)."""
    return message.removeprefix(f"{row.where}: ")


def _too_small(shape: Sequence[int], patch: Sequence[int] | None, voxel: VoxelSize) -> str:
    if patch is None or all(n >= p for n, p in zip(shape, patch, strict=True)):
        return ""
    return (
        f"the volume is {tuple(shape)} voxels after resampling to {voxel} um, smaller than the "
        f"patch {tuple(patch)}; use a smaller model.patch or bigger images"
    )


def _header_only(row: ManifestRow, settings: DataSettings, signal: Header, target: Header) -> str:
    """What can be said of a volume too large to read here: channels, voxel size, geometry."""
    for header, channel, column in (
        (signal, row.signal_channel, "channel_signal"),
        (target, row.target_channel, "channel_target"),
    ):
        if not 0 <= channel < header.channels:
            return (
                f"channel {channel} is out of range, the file has {header.channels} channel(s); "
                f"fix {column}"
            )
    if (target.voxel_size_um or settings.fallback_voxel_size_um) is None:
        return "the file does not record its voxel size; set data.fallback_voxel_size_um"
    if (signal.shape, signal.voxel_size_um) != (target.shape, target.voxel_size_um):
        return "signal and target differ in shape or voxel size; they must image the same field"
    return ""


def check_row(
    row: ManifestRow,
    settings: DataSettings,
    *,
    cache: VolumeCache | None = None,
    limit_bytes: int = FULL_READ_LIMIT_BYTES,
) -> RowReport:
    """Open one row as training and evaluation will (see the module docstring); the patch is
    checked by `check_rows`."""
    target = read_header(row.target_path)
    signal = target if row.signal_path == row.target_path else read_header(row.signal_path)
    shape = target.shape if target is not None else None
    recorded = target.voxel_size_um if target is not None else None
    voxel = recorded or settings.fallback_voxel_size_um
    facts = {
        "shape": shape,
        "voxel_size_um": voxel,
        "voxel_from_fallback": recorded is None and voxel is not None,
    }
    if target is not None and signal is not None and voxel is not None:
        resampled = _resampled(target.shape, voxel, settings.voxel_size_um)
        if max(_nbytes(target.shape), _nbytes(resampled)) > limit_bytes:
            problem = _header_only(row, settings, signal, target)
            return RowReport(row, **facts, resampled_shape=resampled, problem=problem)  # type: ignore[arg-type]
    try:
        pair = load_pair(row, settings, cache)
    except UserInputError as err:
        return RowReport(row, **facts, problem=_short(str(err), row))  # type: ignore[arg-type]
    except MemoryError:
        return RowReport(
            row,
            **facts,  # type: ignore[arg-type]
            problem="not enough memory to read the volume; check it on a bigger machine",
        )
    return RowReport(
        row,
        **facts,  # type: ignore[arg-type]
        resampled_shape=tuple(pair.target.shape),
        values_read=True,
    )


#: What makes two checks of a row the same: its files and channels, and the grid it is read on.
CheckKey = tuple[Path, int, Path, int, VoxelSize, VoxelSize | None]


def check_rows(
    rows: Iterable[ManifestRow],
    settings: DataSettings,
    *,
    patch: Sequence[int] | None = None,
    limit_bytes: int = FULL_READ_LIMIT_BYTES,
    memo: dict[CheckKey, RowReport] | None = None,
) -> list[RowReport]:
    """Every row checked, in order, sharing decoded TL volumes between structures of one cell;
    `memo` shares the reading between calls (the entries of a matrix)."""
    cache = VolumeCache(min(CHECK_CACHE_MB, settings.cache_mb))
    memo = {} if memo is None else memo
    reports = []
    for row in rows:
        key = (
            row.signal_path,
            row.signal_channel,
            row.target_path,
            row.target_channel,
            settings.voxel_size_um,
            settings.fallback_voxel_size_um,
        )
        if key not in memo:
            memo[key] = check_row(row, settings, cache=cache, limit_bytes=limit_bytes)
        report = replace(memo[key], row=row)
        if report.ok and report.resampled_shape is not None:
            small = _too_small(report.resampled_shape, patch, settings.voxel_size_um)
            report = replace(report, problem=small)
        reports.append(report)
    return reports


def first_problem(reports: Sequence[RowReport], what: str, manifest: Path) -> UserInputError | None:
    """One error for the first unusable row (None when all are usable); `what` says who asked,
    `manifest` is the file to give `sparsessp-bmz check`."""
    bad = [report for report in reports if not report.ok]
    if not bad:
        return None
    first = bad[0]
    others = f" ({len(bad)} of {len(reports)} rows are unusable)" if len(bad) > 1 else ""
    return UserInputError(
        f"{first.row.where}: {first.problem}{others}; {what} did not start - fix the manifest "
        f"or the file, `sparsessp-bmz check {manifest}` lists every row"
    )


def require_usable(
    rows: Sequence[ManifestRow],
    settings: DataSettings,
    what: str,
    *,
    patch: Sequence[int] | None = None,
    memo: dict[CheckKey, RowReport] | None = None,
) -> list[RowReport]:
    """`check_rows`, raising one UserInputError for the first unusable row."""
    reports = check_rows(rows, settings, patch=patch, memo=memo)
    error = first_problem(reports, what, settings.manifest)
    if error is not None:
        raise error
    return reports


def training_rows(settings: DataSettings) -> list[ManifestRow]:
    """The train and validation rows of a training run (its structures only), both non-empty.

    Unknown structures, an unreadable manifest or an empty split are errors here, before any run
    folder exists. A missing splits table is computed, not written: training writes it.
    """
    from sparsessp_bmz.data.splits import rows_for

    train = rows_for(settings, "train", save=False)
    val = rows_for(settings, "val", save=False)
    for name, rows in (("training", train), ("validation", val)):
        if not rows:
            raise UserInputError(
                f"{settings.manifest}: the {name} split has no images of "
                f"{list(settings.structures or ())}; the run needs training and validation "
                f"images (use more cells, or raise data.val_fraction)"
            )
    return train + val
