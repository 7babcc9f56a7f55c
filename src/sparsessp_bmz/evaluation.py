"""Whole-volume evaluation of a trained model on a manifest split, as the paper evaluates.

Each test volume is read whole and z-scored, its dense TL is subsampled on the global grid (phase
0, the model's ratio), predicted with the Gaussian sliding window and scored against the whole
fluorescence volume. Volumes are read one at a time, so memory does not grow with the split.
`evaluate_predictor` takes any sparse -> dense function so that simple baselines (mean predictor,
linear fit) are scored by exactly the same code as networks.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.atomic import write_records_csv
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.data.volumes import load_pair
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.metrics import (
    ALL,
    METRIC_NAMES,
    ImageMetrics,
    StructureSummary,
    delta_imp,
    image_metrics,
    mean_metrics,
    metrics_from_mapping,
    summarize,
)
from sparsessp_bmz.predict import predict_volume, progress_bar
from sparsessp_bmz.trained import TrainedModel

#: sparse (D/r, H, W) z-scored TL -> dense prediction (at least D slices; extra ones are cut).
Predictor = Callable[[np.ndarray], np.ndarray]

PER_IMAGE_CSV = "per_image.csv"
SUMMARY_CSV = "summary.csv"


@dataclass(frozen=True)
class ImageResult:
    """Scores of one test volume."""

    structure: str
    name: str
    metrics: ImageMetrics


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image and per-structure scores of one model on one split (plus Delta_Imp, if compared).

    `deltas` maps a structure (and `ALL`) to Delta_Imp in percent per metric against a baseline.
    """

    model_id: str
    split: str
    images: tuple[ImageResult, ...]
    summary: tuple[StructureSummary, ...]
    deltas: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def overall(self) -> ImageMetrics:
        """The `ALL` row: mean over structures."""
        return next(row.metrics for row in self.summary if row.structure == ALL)


def _require_rows(rows: Sequence[ManifestRow], settings: DataSettings, split: str) -> None:
    if not rows:
        raise UserInputError(
            f"{settings.manifest}: no {split} images for the requested structures; check the "
            f"manifest's structure names and its splits file {settings.splits_path}"
        )


def evaluate_predictor(
    predictor: Predictor,
    rows: Sequence[ManifestRow],
    settings: DataSettings,
    ratio: int,
    *,
    model_id: str,
    split: str,
    progress: bool = False,
) -> EvaluationResult:
    """Score `predictor` on every row: dense TL -> sparse (phase 0) -> prediction vs target."""
    _require_rows(rows, settings, split)
    images = []
    with progress_bar(progress, len(rows), f"evaluating {model_id}") as advance:
        for row in rows:
            pair = load_pair(row, settings)
            sparse = np.ascontiguousarray(subsample(pair.signal, ratio, 0))
            prediction = predictor(sparse)[: pair.target.shape[0]]
            images.append(
                ImageResult(row.structure, row.name, image_metrics(prediction, pair.target))
            )
            advance()
    summary = summarize((image.structure, image.metrics) for image in images)
    return EvaluationResult(model_id, split, tuple(images), tuple(summary))


def evaluate_model(
    trained: TrainedModel,
    settings: DataSettings,
    split: str = "test",
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: str | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Score a trained network on one split of `settings.manifest` with the sliding window.

    `settings.structures` chooses the structures; None means the ones the model was trained on
    (its organelle when the checkpoint lists none). A multi-task network predicts each structure
    with that structure's task.
    """
    if settings.structures is None:
        structures = trained.structures or (trained.spec.organelle,)
        settings = settings.model_copy(update={"structures": tuple(structures)})
    rows = rows_for(settings, split)
    _require_rows(rows, settings, split)
    images: list[ImageResult] = []
    for structure in dict.fromkeys(row.structure for row in rows):
        model = trained.for_task(structure) if structure in trained.spec.tasks else trained

        def predictor(sparse: np.ndarray, model: TrainedModel = model) -> np.ndarray:
            return predict_volume(
                model.net,
                model.spec,
                sparse,
                overlap=overlap,
                batch_size=batch_size,
                device=device,
            )

        result = evaluate_predictor(
            predictor,
            [row for row in rows if row.structure == structure],
            settings,
            trained.spec.ratio,
            model_id=trained.spec.model_id,
            split=split,
            progress=progress,
        )
        images.extend(result.images)
    summary = summarize((image.structure, image.metrics) for image in images)
    return EvaluationResult(trained.spec.model_id, split, tuple(images), tuple(summary))


# ---- baselines and Delta_Imp ---------------------------------------------------------------


def read_baseline(path: Path) -> dict[str, ImageMetrics]:
    """Per-structure metrics from a results CSV: a summary (one row per structure, optionally
    `All`) or a per-image file (aggregated here). Columns: structure, mse, mae, r2[, pearson].
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"baseline {path} does not exist; give a results CSV (summary.csv)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        needed = {"structure", "mse", "mae", "r2"}
        if not needed <= set(columns):
            raise UserInputError(
                f"baseline {path}: columns {columns} lack {sorted(needed - set(columns))}; it "
                f"needs structure, mse, mae, r2 (and optionally pearson), as evaluate writes them"
            )
        records = list(reader)
    try:
        pairs = [(r["structure"], metrics_from_mapping(_floats(r))) for r in records]
    except ValueError as err:
        raise UserInputError(f"baseline {path}: a metric is not a number ({err})") from err
    if not pairs:
        raise UserInputError(f"baseline {path} has no rows")
    if "image" in columns:
        return {row.structure: row.metrics for row in summarize(pairs)}
    return dict(pairs)


def _floats(record: Mapping[str, str]) -> dict[str, float]:
    return {
        name: float(record[name]) for name in METRIC_NAMES if record.get(name) not in (None, "")
    }


def compare(result: EvaluationResult, baseline: Mapping[str, ImageMetrics]) -> EvaluationResult:
    """The result with Delta_Imp per structure the baseline knows, and for `ALL`.

    `ALL` is compared like with like: the baseline's mean over the structures evaluated here when
    it has them all, its own `All` row otherwise.
    """
    structures = [row.structure for row in result.summary if row.structure != ALL]
    deltas = {s: delta_imp(_metrics(result, s), baseline[s]) for s in structures if s in baseline}
    if all(s in baseline for s in structures):
        deltas[ALL] = delta_imp(result.overall(), mean_metrics(baseline[s] for s in structures))
    elif ALL in baseline:
        deltas[ALL] = delta_imp(result.overall(), baseline[ALL])
    if not deltas:
        raise UserInputError(
            f"the baseline has none of the structures {structures} (nor an All row); "
            "compare against results of the same structures"
        )
    return EvaluationResult(result.model_id, result.split, result.images, result.summary, deltas)


def _metrics(result: EvaluationResult, structure: str) -> ImageMetrics:
    return next(row.metrics for row in result.summary if row.structure == structure)


# ---- output --------------------------------------------------------------------------------


def write_results(result: EvaluationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write per_image.csv and summary.csv (with delta_* columns when compared), atomically."""
    out_dir = Path(out_dir)
    per_image = [
        {"model": result.model_id, "split": result.split, "structure": i.structure, "image": i.name}
        | i.metrics.as_dict()
        for i in result.images
    ]
    summary = []
    for row in result.summary:
        record = {
            "model": result.model_id,
            "split": result.split,
            "structure": row.structure,
            "n_images": row.n_images,
        } | row.metrics.as_dict()
        if result.deltas:
            delta = result.deltas.get(row.structure, {})
            record |= {f"delta_{m}": delta.get(m, math.nan) for m in METRIC_NAMES}
        summary.append(record)
    paths = (out_dir / PER_IMAGE_CSV, out_dir / SUMMARY_CSV)
    for path, records in zip(paths, (per_image, summary), strict=True):
        write_records_csv(path, list(records[0]), records)
    return paths


def results_table(result: EvaluationResult):  # type: ignore[no-untyped-def]
    """A rich table of the per-structure summary (Delta_Imp columns when compared)."""
    from rich.table import Table

    table = Table(title=f"{result.model_id} on the {result.split} split")
    table.add_column("structure")
    table.add_column("images", justify="right")
    for name in METRIC_NAMES:
        table.add_column(_LABELS[name], justify="right")
    if result.deltas:
        for name in METRIC_NAMES:
            table.add_column(f"Δ {_LABELS[name]} %", justify="right")
    for index, row in enumerate(result.summary):
        cells = [row.structure, str(row.n_images)]
        cells += [f"{getattr(row.metrics, m):.4f}" for m in METRIC_NAMES]
        if result.deltas:
            delta = result.deltas.get(row.structure, {})
            cells += [f"{delta.get(m, math.nan):+.2f}" for m in METRIC_NAMES]
        table.add_row(*cells, end_section=index == len(result.summary) - 2)
    return table


_LABELS = {"mse": "MSE", "mae": "MAE", "r2": "R²", "pearson": "Pearson r"}
