"""Random training patches: aligned sparse TL input and dense fluorescence target.

Each sample index owns its random generator (seeded by settings seed, epoch and index), so the
patches do not depend on how many DataLoader workers ask for them or in which order. Consecutive
indices cycle through the structures and each structure keeps its volume for `patches_per_volume`
of its samples, so batches mix structures while the bounded volume cache mostly hits.

A z flip is applied to the dense stacks *before* the sparse grid is laid down, so a flipped sample
is exactly what a microscope would have acquired from the flipped cell: input slice k is still the
TL of target slice k * r. (Flipping an already subsampled crop would put the input on slices
r - 1, 2r - 1, ... of the target and silently misalign every flipped sample.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.sparse import aligned_starts, feasible_phases, sparse_window, subsample
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.data.volumes import VolumeCache, VolumePair, load_pair
from sparsessp_bmz.errors import UserInputError

Sample = dict[str, torch.Tensor | str | int]


class SparsePatchDataset(Dataset[Sample]):
    """`samples_per_epoch` random aligned crops from the rows; call `set_epoch` to draw new ones."""

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        settings: DataSettings,
        *,
        patch: tuple[int, int, int],
        ratio: int,
    ) -> None:
        if not rows:
            raise UserInputError(f"{settings.manifest}: no images to sample patches from")
        if ratio < 1 or patch[0] % ratio:
            raise UserInputError(
                f"patch depth {patch[0]} must be a multiple of the sparsity ratio {ratio}"
            )
        self.rows = list(rows)
        self.settings = settings
        self.patch = patch
        self.ratio = ratio
        self.structures = sorted({row.structure for row in self.rows})
        self._rows_by_structure = [
            [row for row in self.rows if row.structure == name] for name in self.structures
        ]
        self.cache = VolumeCache(settings.cache_mb)
        self.epoch = 0

    @classmethod
    def from_settings(
        cls, settings: DataSettings, split: str, *, patch: tuple[int, int, int], ratio: int
    ) -> SparsePatchDataset:
        """The patches of one split (train, val or test) of the manifest in `settings`."""
        return cls(rows_for(settings, split), settings, patch=patch, ratio=ratio)

    def set_epoch(self, epoch: int) -> None:
        """New crops and volume order per epoch (workers must not be persistent to see it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.settings.samples_per_epoch

    def _row(self, index: int) -> ManifestRow:
        """Consecutive samples cycle through the structures, and each structure reuses its volume
        for `patches_per_volume` of its own samples.

        So every batch mixes structures (a multi-task network's batch-norm statistics and
        gradients do not swing from task to task), every structure is seen equally often however
        unequal their image counts are, and the cache needs one volume per structure.
        """
        task = index % len(self.structures)
        run = (index // len(self.structures)) // self.settings.patches_per_volume
        rows = self._rows_by_structure[task]
        order = np.random.default_rng([self.settings.seed, self.epoch, task]).permutation(len(rows))
        return rows[order[run % len(rows)]]

    def _check_fits(self, pair: VolumePair, row: ManifestRow) -> None:
        if any(n < p for n, p in zip(pair.target.shape, self.patch, strict=True)):
            raise UserInputError(
                f"{row.where}: the volume is {pair.target.shape} voxels after resampling to "
                f"{pair.voxel_size_um} um, smaller than the patch {self.patch}; use a smaller patch"
            )

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = self._row(index)
        pair = load_pair(row, self.settings, self.cache)
        self._check_fits(pair, row)
        rng = np.random.default_rng([self.settings.seed, self.epoch, index])
        signal, target = pair.signal, pair.target
        if self.settings.flips:
            for axis in np.flatnonzero(rng.random(3) < 0.5):
                signal, target = np.flip(signal, axis), np.flip(target, axis)
        depth, height, width = self.patch
        phase = int(rng.integers(feasible_phases(target.shape[0], depth, self.ratio)))
        z0 = int(rng.choice(aligned_starts(target.shape[0], depth, self.ratio, phase)))
        y0 = int(rng.integers(target.shape[1] - height + 1))
        x0 = int(rng.integers(target.shape[2] - width + 1))
        window = sparse_window(z0, depth, self.ratio, phase)
        sparse = subsample(signal, self.ratio, phase)[window, y0 : y0 + height, x0 : x0 + width]
        dense = target[z0 : z0 + depth, y0 : y0 + height, x0 : x0 + width]
        # a copy, not np.ascontiguousarray: a flipped axis of length 1 (a plane patch) keeps its
        # negative stride under ascontiguousarray, which torch refuses
        return {
            "input": torch.from_numpy(sparse.copy()).unsqueeze(0),
            "target": torch.from_numpy(dense.copy()).unsqueeze(0),
            "structure": row.structure,
            "task": self.structures.index(row.structure),
        }
