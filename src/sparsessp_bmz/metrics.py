"""The metric vocabulary, the paper's image-quality metrics and its Delta_Imp score.

Following RepMode and SparseSSP: MSE, MAE and R^2 per whole test volume (Pearson r added because
the FNet literature reports it), averaged per structure; the overall score is the mean over
structures, so every structure counts equally however many test images it has. Delta_Imp is the
relative improvement in percent over a baseline, signed so that positive is always better; it
reproduces the Delta_Imp column of SparseSSP Table 7 from its "All" row.

Pixel metrics of a network alone cannot say whether it learned anything a trivial method would
not, so every score also names its *scope* (whole volume or the target's Otsu foreground, as the
Spotlight paper evaluates) and its *predictor* (the network, or a baseline). `VOCABULARY`,
`SCOPES` and `PREDICTORS` are the one place these names, labels and descriptions live: evaluate,
the matrix summary and the model card all take their column keys and headers from `column`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Generic, TypeVar

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric: its key (CSV column, dataclass field), label, meaning and direction."""

    name: str
    label: str
    description: str
    higher_is_better: bool


#: Every metric, paper's first (table order), then the object metrics of segmentations.
VOCABULARY: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mse", "MSE", "mean squared error of the z-scored prediction", False),
        Metric("mae", "MAE", "mean absolute error of the z-scored prediction", False),
        Metric(
            "r2",
            "R²",
            "1 − SS_res / SS_tot: 0 is predicting the target's own mean, 1 perfect",
            True,
        ),
        Metric("pearson", "Pearson r", "linear correlation of prediction and target", True),
        Metric(
            "f1_50",
            "F1@0.5",
            "object F1 at IoU > 0.5: prediction and target segmented alike (Otsu threshold, "
            "connected components), objects matched one to one",
            True,
        ),
        Metric("f1_75", "F1@0.75", "object F1 at IoU > 0.75 (tighter outlines)", True),
        Metric(
            "ap_50",
            "AP@0.5",
            "average precision TP / (TP + FP + FN) at IoU > 0.5 (the StarDist / Data Science "
            "Bowl definition that Spotlight reports)",
            True,
        ),
        Metric("ap_75", "AP@0.75", "average precision at IoU > 0.75", True),
    )
}
#: The paper's metrics in table order, and whether a larger value is better.
METRIC_NAMES: tuple[str, ...] = ("mse", "mae", "r2", "pearson")
HIGHER_IS_BETTER: dict[str, bool] = {n: VOCABULARY[n].higher_is_better for n in METRIC_NAMES}
#: How tables, reports and model cards name each of the paper's metrics.
METRIC_LABELS: dict[str, str] = {n: VOCABULARY[n].label for n in METRIC_NAMES}
#: The object metrics (blob-like structures only), in table order.
OBJECT_NAMES: tuple[str, ...] = ("f1_50", "f1_75", "ap_50", "ap_75")
#: Where a metric is computed: key prefix -> (label suffix, description).
SCOPES: dict[str, tuple[str, str]] = {
    "": ("", "over the whole volume"),
    "fg": ("fg", "inside the target's foreground (voxels at or above its Otsu threshold)"),
    "true": (
        "true",
        "objects segmented alike (Otsu threshold, connected components) matched against the "
        "simulator's true nuclei and nucleoli instead of the target's segmentation (simulated "
        "data only)",
    ),
}
#: Who predicted: key prefix -> (label, description). The network has no prefix.
PREDICTORS: dict[str, tuple[str, str]] = {
    "": ("network", "the trained network"),
    "mean": (
        "mean",
        "mean predictor: every voxel is the training split's mean z-scored target (about 0), "
        "so its R² is about 0 by construction",
    ),
    "ridge": (
        "ridge",
        "ridge regression on local TL features (Gaussian-smoothed intensity, gradient "
        "magnitude and Laplacian at 1, 2 and 4 voxels of the nearest-upsampled sparse TL), "
        "fitted on a seeded sample of training-split voxels",
    ),
    "target": (
        "target",
        "the target itself, segmented like the predictions: against the simulator's true masks "
        "it is the ceiling of what a prediction of the target can reach",
    ),
}
BASELINES: tuple[str, ...] = ("mean", "ridge")
#: The predictor key of the target's own segmentation (the ceiling of the "true" scope).
CEILING = "target"
#: The structure label of the mean over structures.
ALL = "All"


def column(metric: str, scope: str = "", predictor: str = "") -> tuple[str, str]:
    """(key, label) of one metric of one scope and predictor, e.g. ("ridge_fg_r2", "ridge R² fg").

    The keys are CSV columns (evaluate's summary.csv, the matrix summary); the labels are the
    headers of every table that shows them.
    """
    key = "_".join(part for part in (predictor, scope, metric) if part)
    words = [PREDICTORS[predictor][0] if predictor else "", VOCABULARY[metric].label]
    words.append(SCOPES[scope][0])
    return key, " ".join(word for word in words if word)


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


@dataclass(frozen=True)
class ObjectMetrics:
    """Agreement of two segmentations, object by object (see `objects.object_metrics`)."""

    f1_50: float
    f1_75: float
    ap_50: float
    ap_75: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: A flat record of float metrics (`ImageMetrics`, `ObjectMetrics`).
M = TypeVar("M", ImageMetrics, ObjectMetrics)


def mean_metrics(items: Iterable[M]) -> M:
    """Metric-wise mean (NaN-aware: an undefined R^2 of one image does not erase the rest)."""
    items = list(items)
    if not items:
        raise ValueError("cannot average an empty set of metrics")
    # a HeldOutScores averages as the paper's metrics it is
    kind = ImageMetrics if isinstance(items[0], ImageMetrics) else ObjectMetrics
    names = [f.name for f in fields(kind)]
    rows = np.array([[getattr(m, name) for name in names] for m in items], dtype=float)
    with warnings.catch_warnings():  # an all-NaN column stays NaN on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(rows, axis=0)
    return kind(**{name: float(v) for name, v in zip(names, means, strict=True)})


@dataclass(frozen=True)
class StructureSummary(Generic[M]):
    """Mean metrics of one structure's test images (or of all structures, for `ALL`)."""

    structure: str
    n_images: int
    metrics: M


def summarize(per_image: Iterable[tuple[str, M]]) -> list[StructureSummary[M]]:
    """Per-structure means in first-seen order, then the `ALL` row: the mean over structures."""
    groups: dict[str, list[M]] = {}
    for structure, metrics in per_image:
        groups.setdefault(structure, []).append(metrics)
    rows = [StructureSummary(s, len(ms), mean_metrics(ms)) for s, ms in groups.items()]
    if not rows:
        raise ValueError("no images to summarise")
    overall = mean_metrics(row.metrics for row in rows)
    return [*rows, StructureSummary(ALL, sum(row.n_images for row in rows), overall)]


@dataclass(frozen=True)
class ScoreSet:
    """Every score of one predictor on one structure (or one volume)."""

    whole: ImageMetrics
    foreground: ImageMetrics | None = None
    objects: ObjectMetrics | None = None
    #: The segmented prediction against the simulator's true objects (the "true" scope).
    true_objects: ObjectMetrics | None = None

    def columns(self, predictor: str = "") -> dict[str, float]:
        """Flat columns keyed by `column` (NaN for what was not measured)."""
        nan = float("nan")
        record = {column(n, "", predictor)[0]: getattr(self.whole, n) for n in METRIC_NAMES}
        fg = self.foreground
        record |= {column(n, "fg", predictor)[0]: getattr(fg, n, nan) for n in METRIC_NAMES}
        objects = self.objects
        record |= {column(n, "", predictor)[0]: getattr(objects, n, nan) for n in OBJECT_NAMES}
        return record | true_columns(self.true_objects, predictor)

    @classmethod
    def from_columns(cls, values: Mapping[str, float], predictor: str = "") -> ScoreSet | None:
        """The inverse of `columns` (None when the whole-volume columns are missing); a set of
        columns that is all NaN reads back as None."""

        def read(kind: type[M], names: tuple[str, ...], scope: str) -> M | None:
            keys = [column(n, scope, predictor)[0] for n in names]
            if not all(k in values for k in keys):
                return None
            found = [float(values[k]) for k in keys]
            return None if all(np.isnan(found)) else kind(*found)

        whole = read(ImageMetrics, METRIC_NAMES, "")
        if whole is None:
            return None
        return cls(
            whole,
            read(ImageMetrics, METRIC_NAMES, "fg"),
            read(ObjectMetrics, OBJECT_NAMES, ""),
            read_true(values, predictor),
        )


def true_columns(objects: ObjectMetrics | None, predictor: str = "") -> dict[str, float]:
    """The "true"-scope object columns of `predictor` (NaN when not measured)."""
    return {column(n, "true", predictor)[0]: getattr(objects, n, np.nan) for n in OBJECT_NAMES}


def read_true(values: Mapping[str, float], predictor: str = "") -> ObjectMetrics | None:
    """The inverse of `true_columns`: None when the columns are missing or all NaN."""
    keys = [column(n, "true", predictor)[0] for n in OBJECT_NAMES]
    found = [float(values.get(k, np.nan)) for k in keys]
    return None if all(np.isnan(found)) else ObjectMetrics(*found)


@dataclass(frozen=True)
class HeldOutScores(ImageMetrics):
    """The paper's metrics of one structure plus what says whether they mean anything.

    It *is* the paper's `ImageMetrics` (the RDF, the package index and every reader of
    `TrainedModel.test_metrics` see exactly those four, `as_dict` included), carrying the
    foreground and object metrics and the baselines' scores on the same volumes, for the model
    card and the matrix summary. On simulated data, `true_objects` scores the network's
    segmentation against the simulator's true objects and `ceiling` the target's own.
    """

    foreground: ImageMetrics | None = None
    objects: ObjectMetrics | None = None
    baselines: Mapping[str, ScoreSet] = field(default_factory=dict)
    true_objects: ObjectMetrics | None = None
    ceiling: ObjectMetrics | None = None

    def as_dict(self) -> dict[str, float]:
        """The paper's four metrics only (what the RDF's `test_metrics` states)."""
        return {name: getattr(self, name) for name in METRIC_NAMES}

    @classmethod
    def of(
        cls,
        network: ScoreSet,
        baselines: Mapping[str, ScoreSet],
        ceiling: ObjectMetrics | None = None,
    ) -> HeldOutScores:
        """The network's scores with the baselines' (and the target's `ceiling`) beside them."""
        return cls(
            **network.whole.as_dict(),
            foreground=network.foreground,
            objects=network.objects,
            baselines=dict(baselines),
            true_objects=network.true_objects,
            ceiling=ceiling,
        )

    def network(self) -> ScoreSet:
        """The network's own scores as a `ScoreSet`, like the baselines'."""
        return ScoreSet(
            ImageMetrics(**self.as_dict()), self.foreground, self.objects, self.true_objects
        )

    def columns(self) -> dict[str, float]:
        """Flat columns of the network, of every baseline (`BASELINES`; NaN if not run) and the
        target's "true"-scope ceiling (NaN unless simulated)."""
        record = self.network().columns()
        nan_set = ScoreSet(ImageMetrics(*[float("nan")] * len(METRIC_NAMES)))
        for key in BASELINES:
            record |= self.baselines.get(key, nan_set).columns(key)
        return record | true_columns(self.ceiling, CEILING)

    @classmethod
    def from_columns(cls, values: Mapping[str, float]) -> HeldOutScores:
        """The inverse of `columns`."""
        network = ScoreSet.from_columns(values)
        if network is None:
            raise ValueError(f"no network metrics among {sorted(values)}")
        baselines = {k: b for k in BASELINES if (b := ScoreSet.from_columns(values, k))}
        return cls.of(network, baselines, read_true(values, CEILING))


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
