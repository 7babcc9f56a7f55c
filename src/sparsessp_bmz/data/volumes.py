"""Whole normalised volumes: what evaluation and prediction read, and what the patch sampler crops.

A bounded LRU cache keeps decoded volumes so that memory depends on the cache budget, never on the
number of images (RepMode loaded everything and needed more than 50 GB). TL volumes are cached per
(file, channel), so the structures that share a cell's TL also share its memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsessp_bmz import guards
from sparsessp_bmz.data.config import DataSettings, VoxelSize
from sparsessp_bmz.data.imageio import read_stack
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.normalise import resample, zscore
from sparsessp_bmz.errors import UserInputError

VolumeKey = tuple[Path, int]


@dataclass(frozen=True)
class VolumePair:
    """Dense TL (`signal`) and fluorescence (`target`), z-scored (D, H, W) on the target grid."""

    signal: np.ndarray
    target: np.ndarray
    structure: str
    name: str
    voxel_size_um: VoxelSize


@dataclass(frozen=True)
class Decoded:
    """A normalised channel and the geometry it had on disk (to check that TL and label match)."""

    volume: np.ndarray
    source_shape: tuple[int, ...]
    source_voxel_um: VoxelSize


class VolumeCache:
    """Least-recently-used decoded volumes within a byte budget (the newest one always stays)."""

    def __init__(self, budget_mb: float) -> None:
        self.budget_bytes = int(budget_mb * 2**20)
        self._entries: OrderedDict[VolumeKey, Decoded] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(entry.volume.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: VolumeKey) -> Decoded | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: VolumeKey, entry: Decoded) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > 1 and self.nbytes > self.budget_bytes:
            self._entries.popitem(last=False)


def _decode(
    path: Path, channel: int, row: ManifestRow, settings: DataSettings, cache: VolumeCache | None
) -> Decoded:
    key = (path, channel)
    entry = cache.get(key) if cache is not None else None
    if entry is None:
        stack = read_stack(path, channel, row.where, settings.fallback_voxel_size_um)
        guards.check_resample(
            stack.data.shape, stack.voxel_size_um, settings.voxel_size_um, row.where
        )
        volume = resample(stack.data, stack.voxel_size_um, settings.voxel_size_um)
        entry = Decoded(zscore(volume, row.where), stack.data.shape, stack.voxel_size_um)
        if cache is not None:
            cache.put(key, entry)
    return entry


def load_pair(
    row: ManifestRow, settings: DataSettings, cache: VolumeCache | None = None
) -> VolumePair:
    """Read, resample and z-score the TL and fluorescence of one manifest row."""
    signal = _decode(row.signal_path, row.signal_channel, row, settings, cache)
    target = _decode(row.target_path, row.target_channel, row, settings, cache)
    if (signal.source_shape, signal.source_voxel_um) != (
        target.source_shape,
        target.source_voxel_um,
    ):
        raise UserInputError(
            f"{row.where}: signal and target differ in shape or voxel size "
            f"({signal.source_shape} at {signal.source_voxel_um} um vs {target.source_shape} at "
            f"{target.source_voxel_um} um); they must image the same field"
        )
    return VolumePair(signal.volume, target.volume, row.structure, row.name, settings.voxel_size_um)
