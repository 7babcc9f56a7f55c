"""The paper's image-quality metrics and its relative-improvement score Delta_Imp.

Following RepMode and SparseSSP: MSE, MAE and R^2 per whole test volume (Pearson r added because
the FNet literature reports it), averaged per structure; the overall score is the mean over
structures, so every structure counts equally however many test images it has. Delta_Imp is the
relative improvement in percent over a baseline, signed so that positive is always better; it
reproduces the Delta_Imp column of SparseSSP Table 7 from its "All" row.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

#: Metric names in table order, and whether a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {"mse": False, "mae": False, "r2": True, "pearson": True}
METRIC_NAMES: tuple[str, ...] = tuple(HIGHER_IS_BETTER)
#: How tables, reports and model cards name each metric.
METRIC_LABELS: dict[str, str] = {"mse": "MSE", "mae": "MAE", "r2": "R²", "pearson": "Pearson r"}
#: The structure label of the mean over structures.
ALL = "All"


@dataclass(frozen=True)
class ImageMetrics:
    """Quality of one prediction (or a mean of several)."""

    mse: float
    mae: float
    r2: float
    pearson: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def image_metrics(prediction: np.ndarray, target: np.ndarray) -> ImageMetrics:
    """MSE, MAE, R^2 = 1 - SS_res / SS_tot and Pearson r over all voxels of one volume.

    Computed in float64: a 5-million-voxel sum in float32 loses the digits the paper reports.
    R^2 and r are NaN when the target (or prediction, for r) is constant: they are undefined.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ")
    p = np.asarray(prediction, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    residual = p - t
    mse = float(np.mean(residual**2))
    mae = float(np.mean(np.abs(residual)))
    t_centred = t - t.mean()
    p_centred = p - p.mean()
    ss_tot = float(np.dot(t_centred, t_centred))
    ss_pred = float(np.dot(p_centred, p_centred))
    r2 = 1.0 - float(np.dot(residual, residual)) / ss_tot if ss_tot > 0 else float("nan")
    if ss_tot > 0 and ss_pred > 0:
        pearson = float(np.dot(p_centred, t_centred)) / np.sqrt(ss_tot * ss_pred)
    else:
        pearson = float("nan")
    return ImageMetrics(mse=mse, mae=mae, r2=r2, pearson=float(pearson))


def mean_metrics(items: Iterable[ImageMetrics]) -> ImageMetrics:
    """Metric-wise mean (NaN-aware: an undefined R^2 of one image does not erase the rest)."""
    rows = np.array([[getattr(m, name) for name in METRIC_NAMES] for m in items], dtype=float)
    if rows.size == 0:
        raise ValueError("cannot average an empty set of metrics")
    with warnings.catch_warnings():  # an all-NaN column stays NaN on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(rows, axis=0)
    return ImageMetrics(**{name: float(v) for name, v in zip(METRIC_NAMES, means, strict=True)})


@dataclass(frozen=True)
class StructureSummary:
    """Mean metrics of one structure's test images (or of all structures, for `ALL`)."""

    structure: str
    n_images: int
    metrics: ImageMetrics


def summarize(per_image: Iterable[tuple[str, ImageMetrics]]) -> list[StructureSummary]:
    """Per-structure means in first-seen order, then the `ALL` row: the mean over structures."""
    groups: dict[str, list[ImageMetrics]] = {}
    for structure, metrics in per_image:
        groups.setdefault(structure, []).append(metrics)
    rows = [StructureSummary(s, len(ms), mean_metrics(ms)) for s, ms in groups.items()]
    if not rows:
        raise ValueError("no images to summarise")
    overall = mean_metrics(row.metrics for row in rows)
    return [*rows, StructureSummary(ALL, sum(row.n_images for row in rows), overall)]


def delta_imp(model: ImageMetrics, baseline: ImageMetrics) -> dict[str, float]:
    """Relative improvement over `baseline` in percent per metric; positive means better.

    Lower-is-better metrics: (baseline - model) / |baseline|; higher-is-better: (model -
    baseline) / |baseline|. The absolute value keeps the sign meaningful for a negative R^2
    baseline. NaN where the baseline is 0 or undefined.
    """
    result = {}
    for name, higher_better in HIGHER_IS_BETTER.items():
        m, b = getattr(model, name), getattr(baseline, name)
        if not np.isfinite(b) or b == 0:
            result[name] = float("nan")
            continue
        gain = (m - b) if higher_better else (b - m)
        result[name] = 100.0 * gain / abs(b)
    return result


def metrics_from_mapping(values: Mapping[str, float]) -> ImageMetrics:
    """Build metrics from a CSV row; a missing Pearson column (papers omit it) becomes NaN."""
    return ImageMetrics(
        **{name: float(values.get(name, float("nan"))) for name in METRIC_NAMES}  # type: ignore[arg-type]
    )
