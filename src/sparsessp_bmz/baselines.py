"""Baselines every score is shown beside: the mean predictor and a ridge regression on TL.

A network's R² alone does not say whether it learned anything a trivial method would not (on a
small real TL/Hoechst pair, a demo-preset network scored test R² 0.04-0.06 where this ridge
scored 0.10). Both baselines are fitted on the *training* split only and predict from the same
sparse input as the network (phase 0 of the global grid), so `evaluation` scores them with the
network's own code on the same held-out volumes.

- mean predictor: the training split's mean z-scored target, about 0; its R² is about 0 by
  construction (R² compares with predicting the target's own mean), so it anchors the scale.
- ridge: closed-form ridge regression on `features.tl_features`, fitted on a seeded sample of at
  most `MAX_VOXELS` voxels from at most `MAX_VOLUMES` training volumes, so the fit is
  deterministic and takes seconds whatever the data set's size. Written with numpy rather than
  scikit-learn, which is not a dependency: the closed form is three lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.data.volumes import load_pair
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.features import N_FEATURES, tl_features, upsample

#: Voxels sampled for the fit, in all, and training volumes read for it (seeded choice).
MAX_VOXELS = 200_000
MAX_VOLUMES = 6
#: Ridge penalty per sampled voxel on standardised features: weak, it only guards collinear
#: scales (smoothed intensities at neighbouring sigmas are strongly correlated).
ALPHA_PER_VOXEL = 1e-3
SEED = 0


@dataclass(frozen=True)
class MeanPredictor:
    """Predicts the training split's mean target everywhere."""

    ratio: int
    mean: float

    def __call__(self, sparse: np.ndarray) -> np.ndarray:
        return np.full((sparse.shape[0] * self.ratio, *sparse.shape[1:]), self.mean, np.float32)


@dataclass(frozen=True)
class RidgePredictor:
    """target ≈ standardised features @ weights + intercept (see the module docstring)."""

    ratio: int
    planar: bool
    feature_mean: np.ndarray
    feature_std: np.ndarray
    weights: np.ndarray
    intercept: float

    def __call__(self, sparse: np.ndarray) -> np.ndarray:
        features = tl_features(upsample(sparse, self.ratio), self.planar)
        scaled = (self.weights / self.feature_std).astype(np.float32)
        offset = self.intercept - float(np.dot(scaled, self.feature_mean))
        return np.tensordot(scaled, features, axes=1) + np.float32(offset)


@dataclass(frozen=True)
class Baselines:
    """Both baselines of one structure at one sparsity ratio, fitted on the training split."""

    structure: str
    mean: MeanPredictor
    ridge: RidgePredictor
    n_voxels: int

    def predictors(self) -> dict[str, MeanPredictor | RidgePredictor]:
        """By the `metrics.PREDICTORS` key that names them."""
        return {"mean": self.mean, "ridge": self.ridge}


def _sample(
    rows: list[ManifestRow],
    settings: DataSettings,
    ratio: int,
    planar: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, N_FEATURES) and targets (n,) of a bounded voxel sample of `rows`."""
    per_volume = MAX_VOXELS // len(rows)
    xs, ys = [], []
    for row in rows:
        pair = load_pair(row, settings)
        depth = pair.target.shape[0]
        features = tl_features(upsample(subsample(pair.signal, ratio, 0), ratio, depth), planar)
        flat = features.reshape(N_FEATURES, -1)
        take = rng.choice(flat.shape[1], size=min(per_volume, flat.shape[1]), replace=False)
        xs.append(flat[:, take].T.astype(np.float64))
        ys.append(pair.target.reshape(-1)[take].astype(np.float64))
    return np.concatenate(xs), np.concatenate(ys)


#: The demo and the matrix score several models of one structure and ratio in one process: the
#: same fit is reused (the arguments are frozen, so the key is the data and the ratio).
@lru_cache(maxsize=16)
def fit_baselines(
    rows: tuple[ManifestRow, ...],
    settings: DataSettings,
    ratio: int,
    structure: str,
    planar: bool = False,
) -> Baselines:
    """Fit both baselines of `structure` on its training rows `rows` (see the module docstring);
    `planar`: plane-by-plane features, for plane models (`features.tl_features`)."""
    if not rows:
        raise UserInputError(
            f"{settings.manifest}: no training images of {structure} to fit the baselines on; "
            "give the structure training images in the manifest's split, or evaluate with "
            "--no-baselines"
        )
    rng = np.random.default_rng(SEED)
    chosen = sorted(rng.choice(len(rows), size=min(MAX_VOLUMES, len(rows)), replace=False))
    x, y = _sample([rows[i] for i in chosen], settings, ratio, planar, rng)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # a constant feature (a flat TL stack) gets weight 0, not a NaN
    z = (x - mean) / std
    target_mean = float(y.mean())
    gram = z.T @ z + ALPHA_PER_VOXEL * len(y) * np.eye(N_FEATURES)
    weights = np.linalg.solve(gram, z.T @ (y - target_mean))
    return Baselines(
        structure=structure,
        mean=MeanPredictor(ratio, target_mean),
        ridge=RidgePredictor(ratio, planar, mean, std, weights, target_mean),
        n_voxels=len(y),
    )
