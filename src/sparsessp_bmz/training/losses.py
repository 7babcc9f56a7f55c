"""Training losses: the paper's MSE and the foreground-aware Spotlight loss.

Spotlight (papers/spotlight-virtual-staining.txt): the target's Otsu threshold T gives a
foreground mask M; the loss is lambda * masked MSE + (1 - lambda) * Dice(sigma_k(Y_hat), M), with
sigma_k the normalised tunable sigmoid. The paper shifts its normalisation so that T sits at zero
before soft-thresholding; we keep the project's z-score normalisation (export and prediction
depend on it) and apply sigma_k to (Y_hat - T) instead, which is the same thing per patch.
sigma_k is odd, so voxels below T would get negative "membership"; they are clamped to 0 so the
Dice term stays a proper soft overlap in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

LossFn = Callable[[Tensor, Tensor], Tensor]

#: Histogram resolution of the Otsu threshold (skimage's default).
OTSU_BINS = 256
_EPS = 1e-6


def otsu_threshold(volume: Tensor, bins: int = OTSU_BINS) -> Tensor:
    """Otsu's threshold of each sample of a (B, ...) batch: maximal between-class variance."""
    flat = volume.detach().flatten(1).float()
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    span = (high - low).clamp_min(_EPS)
    index = ((flat - low) / span * bins).long().clamp_(0, bins - 1)
    counts = torch.zeros(flat.shape[0], bins, device=flat.device)
    counts.scatter_add_(1, index, torch.ones_like(flat))
    centres = low + span * (torch.arange(bins, device=flat.device) + 0.5) / bins
    weight_low = counts.cumsum(1)
    weight_high = counts.sum(1, keepdim=True) - weight_low
    mass_low = (counts * centres).cumsum(1)
    mass_high = (counts * centres).sum(1, keepdim=True) - mass_low
    mean_low = mass_low / weight_low.clamp_min(_EPS)
    mean_high = mass_high / weight_high.clamp_min(_EPS)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    best = between[:, :-1].argmax(dim=1, keepdim=True)
    threshold = low + span * (best + 1).float() / bins
    return threshold.view(-1, *([1] * (volume.dim() - 1)))


def tunable_sigmoid(x: Tensor, k: float) -> Tensor:
    """Normalised tunable sigmoid (x - kx) / (k - 2k|x| + 1): sigma(0) = 0, sigma(1) = 1."""
    return (x - k * x) / (k - 2 * k * x.abs() + 1)


def spotlight_loss(
    prediction: Tensor, target: Tensor, *, weight: float = 0.5, k: float = -0.95
) -> Tensor:
    """lambda * masked MSE + (1 - lambda) * soft Dice against the target's Otsu foreground."""
    threshold = otsu_threshold(target)
    mask = (target >= threshold).to(prediction.dtype)
    dims = tuple(range(1, prediction.dim()))
    squared = (prediction - target) ** 2
    masked_mse = (squared * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)
    soft = tunable_sigmoid(prediction - threshold, k).clamp_min(0.0)
    overlap = (soft * mask).sum(dims)
    dice = 1 - 2 * overlap / (soft.sum(dims) + mask.sum(dims) + _EPS)
    return (weight * masked_mse + (1 - weight) * dice).mean()


def make_loss(name: str, *, spotlight_lambda: float = 0.5, spotlight_k: float = -0.95) -> LossFn:
    """The training loss called `name` ('mse' or 'spotlight')."""
    if name == "mse":
        return F.mse_loss
    if name == "spotlight":
        return lambda p, t: spotlight_loss(p, t, weight=spotlight_lambda, k=spotlight_k)
    raise ValueError(f"unknown loss {name!r}; choose mse or spotlight")
