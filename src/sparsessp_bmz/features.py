"""Local transmitted-light features: what a simple regression may see of the TL stack.

The ridge baseline (`baselines.py`) predicts fluorescence from these, so a network is compared
with the best a linear model of local TL texture does. The sparse stack is first upsampled to the
dense grid by nearest repetition along z, exactly as the prefix networks see it, then smoothed,
differentiated and Laplacian-filtered at a few scales (scipy.ndimage, which scikit-image builds
on; Gaussian scale-space features are the standard pixel features of ilastik and Weka). Gradient
and Laplacian are finite differences of the smoothed stack rather than scipy's
derivative-of-Gaussian filters: the same features up to discretisation, five times faster, which
keeps the baselines' fit within seconds.
"""

from __future__ import annotations

import numpy as np

#: Gaussian scales in voxels of the (isotropic) target grid: nucleolus to nucleus sized.
SIGMAS: tuple[float, ...] = (1.0, 2.0, 4.0)
#: Features per voxel: the raw intensity, then per scale smoothed, gradient magnitude, Laplacian.
N_FEATURES = 1 + 3 * len(SIGMAS)


def upsample(sparse: np.ndarray, ratio: int, depth: int | None = None) -> np.ndarray:
    """Nearest z upsampling of a sparse (D/r, H, W) stack to `depth` (default D/r * r) slices."""
    dense = np.repeat(np.asarray(sparse, dtype=np.float32), ratio, axis=0)
    return dense if depth is None else dense[:depth]


def tl_features(dense_tl: np.ndarray, planar: bool = False) -> np.ndarray:
    """(N_FEATURES, D, H, W) float32 features of a dense-grid TL stack.

    `planar`: every feature from its own plane only (no z smoothing or z derivatives), for plane
    models, which see one TL plane: a ridge with z context would not be a fair baseline for them.
    """
    from scipy import ndimage

    tl = np.asarray(dense_tl, dtype=np.float32)
    axes = (1, 2) if planar else (0, 1, 2)
    maps = [tl]
    for sigma in SIGMAS:
        smooth = ndimage.gaussian_filter(tl, (0.0 if planar else sigma, sigma, sigma))
        gradient = np.sqrt(sum(d * d for d in np.gradient(smooth, axis=axes)))
        laplacian = sum(ndimage.correlate1d(smooth, [1.0, -2.0, 1.0], axis=a) for a in axes)
        maps += [smooth, gradient.astype(np.float32), np.asarray(laplacian, dtype=np.float32)]
    return np.stack(maps)
