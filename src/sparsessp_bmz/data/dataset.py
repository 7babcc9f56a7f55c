"""Random training patches: aligned sparse TL input and dense fluorescence target.

Each sample index owns its random generator (seeded by settings seed, epoch and index), so the
patches do not depend on how many DataLoader workers ask for them or in which order. Consecutive
indices cycle through the structures and each structure keeps its volume for `patches_per_volume`
of its samples, so batches mix structures while the bounded volume cache mostly hits.

A z flip is applied to the dense stacks *before* the sparse grid is laid down, so a flipped sample
is exactly what a microscope would have acquired from the flipped cell: input slice k is still the
TL of target slice k * r. (Flipping an already subsampled crop would put the input on slices
r - 1, 2r - 1, ... of the target and silently misalign every flipped sample.)

Foreground-aware sampling (Spotlight, "Patch selection": only patches with at least 0.1% foreground
voxels are used): with `min_foreground` > 0 a crop is redrawn, from the sample's own generator,
until its target has that share of voxels at or above the volume's Otsu threshold, at most
`FOREGROUND_TRIES` times; then the crop with the most foreground is used, so a volume with little
foreground slows nothing down and still contributes.
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
#: Crops drawn per sample at most while looking for one with enough foreground.
FOREGROUND_TRIES = 10


class SparsePatchDataset(Dataset[Sample]):
    """`samples_per_epoch` random aligned crops from the rows; call `set_epoch` to draw new ones."""

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        settings: DataSettings,
        *,
        patch: tuple[int, int, int],
        ratio: int,
        min_foreground: float = 0.0,
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
        self.min_foreground = min_foreground
        #: Otsu threshold of each target volume (one float per row; computed on first use).
        self._thresholds: dict[ManifestRow, float] = {}

    @classmethod
    def from_settings(
        cls,
        settings: DataSettings,
        split: str,
        *,
        patch: tuple[int, int, int],
        ratio: int,
        min_foreground: float = 0.0,
    ) -> SparsePatchDataset:
        """The patches of one split (train, val or test) of the manifest in `settings`."""
        rows = rows_for(settings, split)
        return cls(rows, settings, patch=patch, ratio=ratio, min_foreground=min_foreground)

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

    def _draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """One random aligned crop: (phase, z0, y0, x0)."""
        depth, height, width = self.patch
        phase = int(rng.integers(feasible_phases(shape[0], depth, self.ratio)))
        z0 = int(rng.choice(aligned_starts(shape[0], depth, self.ratio, phase)))
        y0 = int(rng.integers(shape[1] - height + 1))
        x0 = int(rng.integers(shape[2] - width + 1))
        return phase, z0, y0, x0

    def _crop(
        self, rng: np.random.Generator, target: np.ndarray, row: ManifestRow
    ) -> tuple[int, int, int, int]:
        """A crop with enough foreground when asked for (see the module docstring)."""
        crop = self._draw(rng, target.shape)
        if self.min_foreground <= 0:
            return crop
        if row not in self._thresholds:
            from skimage.filters import threshold_otsu

            self._thresholds[row] = float(threshold_otsu(target))
        depth, height, width = self.patch
        best, best_share = crop, -1.0
        for _ in range(FOREGROUND_TRIES):
            _, z0, y0, x0 = crop
            patch = target[z0 : z0 + depth, y0 : y0 + height, x0 : x0 + width]
            share = float(np.mean(patch >= self._thresholds[row]))
            if share >= self.min_foreground:
                return crop
            if share > best_share:
                best, best_share = crop, share
            crop = self._draw(rng, target.shape)
        return best

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
        phase, z0, y0, x0 = self._crop(rng, target, row)
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
