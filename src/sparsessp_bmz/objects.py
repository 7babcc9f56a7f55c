"""Foreground and object metrics, as the Spotlight paper evaluates virtual stains.

Pixel metrics over a whole volume are dominated by background; the field cares about the
structures (Spotlight, ../papers/spotlight-virtual-staining.txt, section "Evaluation": image
metrics "both on the whole image and only the foreground", segmentations of prediction and target
compared by average precision at several IoU levels). Here:

- foreground: the target's voxels at or above its Otsu threshold (the mask Spotlight's loss uses);
- segmentation (blob-like structures only: nuclei, nucleoli): Otsu threshold of each volume on its
  own, then 26-connected components of at least `MIN_OBJECT_VOXELS`; prediction and target are
  segmented the same way (scikit-image). Touching nuclei are not split (no watershed): both sides
  are treated alike, so merges cost the network and the baselines equally;
- matching at IoU > t for t >= 0.5 is unique (two objects cannot both overlap one by more than
  half), so true positives are simply the pairs above t; F1 = 2TP / (2TP + FP + FN) and AP =
  TP / (TP + FP + FN) (the StarDist / Data Science Bowl average precision).
"""

from __future__ import annotations

import re

import numpy as np

from sparsessp_bmz.metrics import ImageMetrics, ObjectMetrics, image_metrics

#: Structures whose objects are compact blobs worth counting (the first word of the structure
#: name, lower case: the simulator's `dna`/`nucleolus`, AllenCell's `DNA`,
#: `Nucleolus-(Granular-Component)`...). Envelopes, membranes and networks are not objects.
BLOB_STRUCTURES = frozenset({"dna", "nucleus", "nuclei", "hoechst", "dapi", "nucleolus"})
#: Components smaller than this (about 0.2 um^3 at 0.29 um voxels) are noise specks, not objects.
MIN_OBJECT_VOXELS = 8
#: IoU thresholds of the object metrics (`metrics.OBJECT_NAMES` order: F1, then AP).
IOU_THRESHOLDS = (0.5, 0.75)


def is_blob(structure: str) -> bool:
    """Whether `structure` gets object metrics (see `BLOB_STRUCTURES`)."""
    words = re.split(r"[^a-z0-9]+", structure.lower())
    return next((w for w in words if w), "") in BLOB_STRUCTURES


def foreground_mask(target: np.ndarray) -> np.ndarray:
    """The target's voxels at or above its Otsu threshold (all voxels of a constant target)."""
    from skimage.filters import threshold_otsu

    if float(np.ptp(target)) == 0.0:
        return np.ones(target.shape, dtype=bool)
    return target >= threshold_otsu(target)


def foreground_metrics(prediction: np.ndarray, target: np.ndarray) -> ImageMetrics:
    """The paper's metrics over the target's foreground voxels only."""
    mask = foreground_mask(target)
    return image_metrics(prediction[mask], target[mask])


def segment(volume: np.ndarray) -> np.ndarray:
    """Labelled objects of one volume: Otsu threshold, connected components, specks removed."""
    from skimage.measure import label
    from skimage.morphology import remove_small_objects

    mask = foreground_mask(volume) if float(np.ptp(volume)) > 0 else np.zeros(volume.shape, bool)
    mask = remove_small_objects(mask, max_size=MIN_OBJECT_VOXELS - 1)
    return label(mask, connectivity=volume.ndim)


def matched_ious(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int, int]:
    """IoU of every overlapping (predicted, true) object pair, and both object counts."""
    n_pred, n_true = int(predicted.max()), int(truth.max())
    both = (predicted > 0) & (truth > 0)
    pairs = predicted[both].astype(np.int64) * (n_true + 1) + truth[both]
    codes, overlap = np.unique(pairs, return_counts=True)
    pred_size = np.bincount(predicted.ravel(), minlength=n_pred + 1)
    true_size = np.bincount(truth.ravel(), minlength=n_true + 1)
    p, t = codes // (n_true + 1), codes % (n_true + 1)
    union = pred_size[p] + true_size[t] - overlap
    return overlap / union, n_pred, n_true


def object_metrics(predicted: np.ndarray, truth: np.ndarray) -> ObjectMetrics:
    """F1 and AP at IoU 0.5 and 0.75 of two label volumes (0 = background).

    NaN when neither has an object (nothing to find, nothing found: undefined, not perfect).
    """
    ious, n_pred, n_true = matched_ious(predicted, truth)
    f1, ap = [], []
    for threshold in IOU_THRESHOLDS:
        tp = int(np.count_nonzero(ious > threshold))
        fp, fn = n_pred - tp, n_true - tp
        f1.append(2 * tp / (2 * tp + fp + fn) if n_pred + n_true else float("nan"))
        ap.append(tp / (tp + fp + fn) if n_pred + n_true else float("nan"))
    return ObjectMetrics(f1_50=f1[0], f1_75=f1[1], ap_50=ap[0], ap_75=ap[1])
