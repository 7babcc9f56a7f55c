"""Whole-volume evaluation of a trained model on a manifest split, as the paper evaluates.

Each test volume is read whole and z-scored, its dense TL is subsampled on the global grid (phase
0, the model's ratio), predicted with the Gaussian sliding window and scored against the whole
fluorescence volume. Volumes are read one at a time, so memory does not grow with the split.
`evaluate_predictor` takes any sparse -> dense function so that the baselines (`baselines.py`:
mean predictor, ridge on TL features) are scored by exactly the same code as networks, on the same
volumes in the same pass; `evaluate_model` fits them on the training split and reports the
network beside them.

Every prediction is scored over the whole volume (the paper's metrics), inside the target's Otsu
foreground, and, for blob-like structures, by segmenting prediction and target alike and matching
objects (`objects.py`, Spotlight's protocol). On simulated data, whose true nuclei and nucleoli
the simulator saves beside each image (`data/simulate/writer.masks_path`), the segmented
prediction is also matched against those true objects (the "true" scope), and so is the target's
own segmentation: the ceiling, since the target is itself only an image of the truth.

Per-tile normalisation: we train on volumes z-scored as a whole, but QuPath (the consumer of plane
models) z-scores every tile it feeds a model on its own. For plane models `evaluate_model` also
scores each volume the way QuPath predicts it (abutting tiles of `tile` pixels, each z-scored on
its own, no blending: "per tile") and reports the change from the normal metrics (per tile minus
per image). QuPath's tiles also differ from our blended sliding window, so the same tiles are
scored with the volume z-scored once too ("tiled"): per tile minus tiled is the part of the
change that per-tile normalisation alone causes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from sparsessp_bmz.data.atomic import write_records_csv
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import ManifestRow
from sparsessp_bmz.data.simulate.writer import masks_path
from sparsessp_bmz.data.sparse import subsample
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.data.volumes import load_pair
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.metrics import (
    ALL,
    BASELINES,
    CEILING,
    HIGHER_IS_BETTER,
    METRIC_LABELS,
    METRIC_NAMES,
    PREDICTORS,
    HeldOutScores,
    ImageMetrics,
    ObjectMetrics,
    ScoreSet,
    StructureSummary,
    column,
    delta_imp,
    image_metrics,
    mean_metrics,
    metrics_from_mapping,
    summarize,
)
from sparsessp_bmz.objects import foreground_metrics, is_blob, object_metrics, segment
from sparsessp_bmz.predict import predict_volume, progress_bar
from sparsessp_bmz.reporting import SUMMARY_CSV, cell
from sparsessp_bmz.spec import XY_MULTIPLE, ModelSpec
from sparsessp_bmz.trained import TrainedModel

#: sparse (D/r, H, W) z-scored TL -> dense prediction (at least D slices; extra ones are cut).
Predictor = Callable[[np.ndarray], np.ndarray]

PER_IMAGE_CSV = "per_image.csv"

#: The y/x tile (input pixels) QuPath feeds a model. Its bioimage.io support asks for a preferred
#: 512 x 512 patch snapped to the model's declared sizes, min + k * step <= 512 (qupath/qupath,
#: qupath-core-processing/src/main/java/qupath/opencv/ml/BioimageIoTools.java,
#: buildPatchClassifierParams: `preferredTileWidth = 512`, `updateLength`; it takes the step from
#: the declared *min*, which for our packages' y/x min 32 still gives 512). The extension offers
#: that size as the default tile and lets the user change it (qupath-extension-bioimageio,
#: BioimageIoPane.configureTileSize). Every preprocessing op, per-sample zero_mean_unit_variance
#: included, runs on each tile ("ops are generally per tile whereas model zoo transforms sometimes
#: require global statistics", BioimageIoTools.transformToOp).
QUPATH_TILE = 512
#: QuPath's tiles abut (a halo is read around them and cropped, nothing is blended).
TILE_OVERLAP = 0.0


@dataclass(frozen=True)
class ImageResult:
    """Scores of one test volume.

    `foreground`: the metrics inside the target's Otsu foreground; `objects`: the object
    metrics of prediction and target segmented alike (blob-like structures only). When scored as
    QuPath predicts: `per_tile` (QuPath's tiles, each z-scored on its own) and `tiled` (the same
    tiles, the volume z-scored once as in training).
    """

    structure: str
    name: str
    metrics: ImageMetrics
    per_tile: ImageMetrics | None = None
    tiled: ImageMetrics | None = None
    foreground: ImageMetrics | None = None
    objects: ObjectMetrics | None = None
    true_objects: ObjectMetrics | None = None
    ceiling: ObjectMetrics | None = None


@dataclass(frozen=True)
class VolumeView:
    """One scored test volume with every prediction of it, for reports (`report.py`)."""

    structure: str
    name: str
    sparse: np.ndarray
    target: np.ndarray
    #: By predictor key (`metrics.PREDICTORS`: "" is the network), cut to the target's depth.
    predictions: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image and per-structure scores of one model on one split (plus Delta_Imp, if compared).

    `deltas` maps a structure (and `ALL`) to Delta_Imp in percent per metric against a baseline.
    `per_tile_summary` and `tiled_summary` hold the same rows scored as QuPath predicts (tiles of
    `tile` pixels, z-scored per tile or per volume), when that was measured. `foreground_summary`
    and `objects_summary` hold the foreground and object metrics (objects: blob-like structures
    only); `true_objects_summary` and `ceiling_summary` the prediction's and the target's objects
    against the simulator's true ones (simulated blob-like structures only). `baselines` holds the
    baselines' results on the same volumes, by predictor key.
    """

    model_id: str
    split: str
    images: tuple[ImageResult, ...]
    summary: tuple[StructureSummary, ...]
    deltas: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    per_tile_summary: tuple[StructureSummary, ...] = ()
    tiled_summary: tuple[StructureSummary, ...] = ()
    tile: int | None = None
    foreground_summary: tuple[StructureSummary, ...] = ()
    objects_summary: tuple[StructureSummary, ...] = ()
    baselines: Mapping[str, EvaluationResult] = field(default_factory=dict)
    true_objects_summary: tuple[StructureSummary, ...] = ()
    ceiling_summary: tuple[StructureSummary, ...] = ()

    def structures(self) -> list[str]:
        """The structures scored, in order (without `ALL`)."""
        return [row.structure for row in self.summary if row.structure != ALL]

    def foreground(self, structure: str) -> ImageMetrics | None:
        """Metrics inside the target's foreground of `structure` (or `ALL`)."""
        return _find(self.foreground_summary, structure)

    def objects(self, structure: str) -> ObjectMetrics | None:
        """Object metrics of `structure`, None for structures that are not blob-like."""
        return _find(self.objects_summary, structure)

    def true_objects(self, structure: str) -> ObjectMetrics | None:
        """Object metrics of `structure` against the simulator's true objects (None if none)."""
        return _find(self.true_objects_summary, structure)

    def ceiling(self, structure: str) -> ObjectMetrics | None:
        """The target's own objects against the simulator's true ones (None if none)."""
        return _find(self.ceiling_summary, structure)

    def scores(self, structure: str) -> ScoreSet:
        """Whole-volume, foreground and object metrics of `structure` (or `ALL`)."""
        return ScoreSet(
            _metrics(self, structure),
            self.foreground(structure),
            self.objects(structure),
            self.true_objects(structure),
        )

    def held_out(self, structure: str) -> HeldOutScores:
        """Everything scored of `structure` (or `ALL`), baselines and ceiling included, as one
        record."""
        baselines = {k: b.scores(structure) for k, b in self.baselines.items()}
        return HeldOutScores.of(self.scores(structure), baselines, self.ceiling(structure))

    def not_beating(self, baseline: str = "ridge", metric: str = "r2") -> list[str]:
        """Structures whose network `metric` is not better than `baseline`'s (none if unscored)."""
        if baseline not in self.baselines:
            return []
        other = self.baselines[baseline]
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        return [
            s
            for s in self.structures()
            if not sign * getattr(_metrics(self, s), metric)
            > sign * getattr(_metrics(other, s), metric)
        ]

    def overall(self) -> ImageMetrics:
        """The `ALL` row: mean over structures."""
        return next(row.metrics for row in self.summary if row.structure == ALL)

    def per_tile(self, structure: str) -> ImageMetrics | None:
        """The per-tile-normalised summary of `structure` (or `ALL`), None if not measured."""
        return _find(self.per_tile_summary, structure)

    def tiled(self, structure: str) -> ImageMetrics | None:
        """The summary of QuPath's tiles with the volume z-scored once, None if not measured."""
        return _find(self.tiled_summary, structure)

    def per_tile_change(self, structure: str) -> dict[str, float]:
        """Per tile minus per image, per metric, for `structure` (or `ALL`); {} if not measured:
        what running the model as QuPath does changes. Negative for R² and Pearson r, positive
        for MSE and MAE, when per tile is worse."""
        per_tile = self.per_tile(structure)
        return {} if per_tile is None else metric_change(_metrics(self, structure), per_tile)

    def normalisation_change(self, structure: str) -> dict[str, float]:
        """Per tile minus tiled (same tiles): the part of `per_tile_change` due to per-tile
        normalisation alone; {} if not measured."""
        per_tile, tiled = self.per_tile(structure), self.tiled(structure)
        if per_tile is None or tiled is None:
            return {}
        return metric_change(tiled, per_tile)


def _find(summary: Sequence[StructureSummary], structure: str):  # type: ignore[no-untyped-def]
    return next((row.metrics for row in summary if row.structure == structure), None)


def metric_change(reference: ImageMetrics, other: ImageMetrics) -> dict[str, float]:
    """`other` minus `reference`, per metric (plain differences, not Delta_Imp percentages)."""
    return {name: getattr(other, name) - getattr(reference, name) for name in METRIC_NAMES}


def check_tile(tile: int) -> int:
    """`tile` if a network accepts it as y/x size (a positive multiple of 16), else a user error."""
    if tile < XY_MULTIPLE or tile % XY_MULTIPLE:
        raise UserInputError(
            f"tile {tile} must be a positive multiple of {XY_MULTIPLE} (the network halves y and "
            f"x four times); QuPath's default is {QUPATH_TILE}"
        )
    return tile


def tile_window(spec: ModelSpec, sparse_shape: tuple[int, ...], tile: int) -> tuple[int, int, int]:
    """The window (target voxels) of a consumer tiling y/x at `tile` pixels: the patch depth, and
    `tile` clipped to the volume (down to a multiple of 16, so that no padding enters a tile's
    statistics; a volume thinner than 16 voxels is reflect-padded)."""
    check_tile(tile)

    def fit(size: int) -> int:
        return max(XY_MULTIPLE, min(tile, size - size % XY_MULTIPLE))

    return spec.patch[0], fit(sparse_shape[1]), fit(sparse_shape[2])


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
    per_tile: Predictor | None = None,
    tiled: Predictor | None = None,
    baselines: Mapping[str, Predictor] | None = None,
    on_volume: Callable[[VolumeView], None] | None = None,
) -> EvaluationResult:
    """Score `predictor` on every row: dense TL -> sparse (phase 0) -> prediction vs target.

    `per_tile` and `tiled`, the same model predicting as QuPath does (see `evaluate_model`), are
    scored on the same volumes into `ImageResult.per_tile` / `.tiled` and their summaries.
    `baselines` (by `metrics.PREDICTORS` key) are scored on the same volumes in the same pass into
    `EvaluationResult.baselines`. `on_volume` sees every volume with all its predictions (reports)
    before the next volume is read, so memory stays at one volume.
    """
    _require_rows(rows, settings, split)
    others = dict(baselines or {})
    images: list[ImageResult] = []
    baseline_images: dict[str, list[ImageResult]] = {key: [] for key in others}
    with progress_bar(progress, len(rows), f"evaluating {model_id}") as advance:
        for row in rows:
            pair = load_pair(row, settings)
            sparse = np.ascontiguousarray(subsample(pair.signal, ratio, 0))
            truth = _truths(row, pair.target)
            prediction = _predict(predictor, sparse, pair.target)
            extra = [
                None if f is None else image_metrics(_predict(f, sparse, pair.target), pair.target)
                for f in (per_tile, tiled)
            ]
            images.append(_scored(row, prediction, pair.target, truth, *extra))
            predictions = {"": prediction}
            for key, other in others.items():
                predictions[key] = _predict(other, sparse, pair.target)
                baseline_images[key].append(_scored(row, predictions[key], pair.target, truth))
            if on_volume is not None:
                on_volume(VolumeView(row.structure, row.name, sparse, pair.target, predictions))
            advance()
    return replace(
        _result(model_id, split, images),
        baselines={key: _result(key, split, found) for key, found in baseline_images.items()},
    )


@dataclass(frozen=True)
class Truths:
    """What a blob-like structure's segmented predictions are matched against: the target's
    objects, and the simulator's true objects (None on real data) with the target's own score
    against them (the ceiling)."""

    target: np.ndarray
    true: np.ndarray | None = None
    ceiling: ObjectMetrics | None = None


def _truths(row: ManifestRow, target: np.ndarray) -> Truths | None:
    """The objects of `row`'s target, and its true objects if the simulator saved them; None for
    structures that are not blob-like."""
    if not is_blob(row.structure):
        return None
    objects = segment(target)
    true = true_labels(row, target.shape)
    if true is None:
        return Truths(objects)
    return Truths(objects, true, object_metrics(objects, true))


def true_labels(row: ManifestRow, shape: tuple[int, ...]) -> np.ndarray | None:
    """The simulator's true objects of `row`'s structure on the target's grid (`shape`), or None
    when there are none (real data, or a structure the simulator has no objects of).

    The labels are brought to the evaluation grid by nearest-neighbour zoom, as the target is
    brought there by linear resampling (`data.normalise.resample`), so labels stay labels.
    """
    from bioio import BioImage
    from scipy.ndimage import zoom

    path = masks_path(row.target_path)
    if not path.is_file():
        return None
    try:
        image = BioImage(path)
        names = list(image.channel_names)
        if row.structure not in names:
            return None
        labels = image.get_image_data("ZYX", C=names.index(row.structure))
    except Exception as err:  # bioio raises reader-specific errors for a damaged file
        raise UserInputError(
            f"{path}: cannot read the simulator's true objects ({err}); simulate the data again "
            f"or delete {path.name} to evaluate without them"
        ) from err
    if labels.shape != shape:
        labels = zoom(labels, [t / s for t, s in zip(shape, labels.shape, strict=True)], order=0)
    return labels


def _predict(predictor: Predictor, sparse: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The prediction cut to the target's depth (the sparse grid may round it up)."""
    return predictor(sparse)[: target.shape[0]]


def _scored(
    row: ManifestRow,
    prediction: np.ndarray,
    target: np.ndarray,
    truth: Truths | None,
    per_tile: ImageMetrics | None = None,
    tiled: ImageMetrics | None = None,
) -> ImageResult:
    """Whole-volume, foreground and (given the objects to match, `truth`) object metrics."""
    scored = ImageResult(
        row.structure,
        row.name,
        image_metrics(prediction, target),
        per_tile,
        tiled,
        foreground=foreground_metrics(prediction, target),
    )
    if truth is None:
        return scored
    objects = segment(prediction)
    return replace(
        scored,
        objects=object_metrics(objects, truth.target),
        true_objects=None if truth.true is None else object_metrics(objects, truth.true),
        ceiling=truth.ceiling,
    )


def _summary_of(
    images: Sequence[ImageResult], attribute: str, *, partial: bool = False
) -> tuple[StructureSummary, ...]:
    """Summary of one optional metric set; () unless every image has it (or, `partial`, any:
    then the structures without it are left out, and `ALL` is the mean of those with it)."""
    pairs = [(image.structure, getattr(image, attribute)) for image in images]
    present = [(s, m) for s, m in pairs if m is not None]
    if not present or (len(present) < len(pairs) and not partial):
        return ()
    return tuple(summarize(present))


def _result(
    model_id: str, split: str, images: Sequence[ImageResult], tile: int | None = None
) -> EvaluationResult:
    """Summaries of `images`, with the per-tile ones when every image has them."""
    summary = summarize((image.structure, image.metrics) for image in images)
    per_tile_summary = _summary_of(images, "per_tile")
    return EvaluationResult(
        model_id,
        split,
        tuple(images),
        tuple(summary),
        per_tile_summary=per_tile_summary,
        tiled_summary=_summary_of(images, "tiled"),
        tile=tile if per_tile_summary else None,
        foreground_summary=_summary_of(images, "foreground"),
        objects_summary=_summary_of(images, "objects", partial=True),
        true_objects_summary=_summary_of(images, "true_objects", partial=True),
        ceiling_summary=_summary_of(images, "ceiling", partial=True),
    )


def evaluate_model(
    trained: TrainedModel,
    settings: DataSettings,
    split: str = "test",
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: str | None = None,
    progress: bool = False,
    per_tile: bool | None = None,
    tile: int = QUPATH_TILE,
    baselines: bool = True,
    on_volume: Callable[[VolumeView], None] | None = None,
) -> EvaluationResult:
    """Score a trained network on one split of `settings.manifest` with the sliding window.

    `baselines`: also fit the mean predictor and the ridge on TL features on each structure's
    training split (at the model's ratio) and score them on the same volumes
    (`EvaluationResult.baselines`). `on_volume`: see `evaluate_predictor`.

    `settings.structures` chooses the structures; None means the ones the model was trained on
    (its organelle when the checkpoint lists none). A multi-task network predicts each structure
    with that structure's task.

    `per_tile` (None: for plane models only) also scores every volume predicted as QuPath does:
    abutting windows of `tile` y/x pixels (see `tile_window`) without blending, each z-scored on
    its own; and, to separate the normalisation from the tiling, the same windows with the volume
    z-scored once (`tiled`).
    """
    if per_tile is None:
        per_tile = trained.spec.is_plane
    if per_tile:
        check_tile(tile)
    if settings.structures is None:
        settings = settings.model_copy(update={"structures": trained.structures})
    rows = rows_for(settings, split)
    _require_rows(rows, settings, split)
    images: list[ImageResult] = []
    baseline_images: dict[str, list[ImageResult]] = {}
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

        def qupath(
            sparse: np.ndarray, model: TrainedModel = model, normalise_windows: bool = True
        ) -> np.ndarray:
            return predict_volume(
                model.net,
                model.spec,
                sparse,
                overlap=TILE_OVERLAP,
                batch_size=batch_size,
                window=tile_window(model.spec, sparse.shape, tile),
                device=device,
                normalise_windows=normalise_windows,
            )

        result = evaluate_predictor(
            predictor,
            [row for row in rows if row.structure == structure],
            settings,
            trained.spec.ratio,
            model_id=trained.spec.model_id,
            split=split,
            progress=progress,
            per_tile=qupath if per_tile else None,
            tiled=partial(qupath, normalise_windows=False) if per_tile else None,
            baselines=_fitted(settings, trained.spec, structure) if baselines else None,
            on_volume=on_volume,
        )
        images.extend(result.images)
        for key, found in result.baselines.items():
            baseline_images.setdefault(key, []).extend(found.images)
    return replace(
        _result(trained.spec.model_id, split, images, tile),
        baselines={key: _result(key, split, found) for key, found in baseline_images.items()},
    )


def _fitted(settings: DataSettings, spec: ModelSpec, structure: str) -> dict[str, Predictor]:
    """The baselines of `structure` at the model's ratio, fitted on its training split (plane
    by plane for plane models; see `baselines.py`)."""
    from sparsessp_bmz.baselines import fit_baselines

    one = settings.model_copy(update={"structures": (structure,)})
    train = tuple(rows_for(one, "train"))
    return dict(fit_baselines(train, one, spec.ratio, structure, spec.is_plane).predictors())


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


def read_held_out(path: Path) -> dict[str, HeldOutScores]:
    """Per-structure `HeldOutScores` (baselines included) from a summary.csv `write_results`
    wrote; columns it lacks read as not measured."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        records = list(csv.DictReader(handle))
    return {
        r["structure"]: HeldOutScores.from_columns(
            {k: float(v) if v not in (None, "") else math.nan for k, v in r.items() if k in _KEYS}
        )
        for r in records
    }


#: The whole-volume metrics of a row that has none (the ceiling row of `baseline_table`).
_NOT_MEASURED = ImageMetrics(*[math.nan] * len(METRIC_NAMES))
#: Every metric column a summary may hold (`HeldOutScores.columns` of a fully scored row).
_KEYS = frozenset(
    HeldOutScores(
        0.0, 0.0, 0.0, 0.0, baselines={k: ScoreSet(ImageMetrics(0, 0, 0, 0)) for k in BASELINES}
    ).columns()
)


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
    return replace(result, deltas=deltas)


def _metrics(result: EvaluationResult, structure: str) -> ImageMetrics:
    return next(row.metrics for row in result.summary if row.structure == structure)


# ---- output --------------------------------------------------------------------------------


def _per_tile_columns(
    tile: int | None,
    metrics: ImageMetrics,
    per_tile: ImageMetrics | None,
    tiled: ImageMetrics | None,
) -> dict[str, float | int]:
    """The per-tile columns of one CSV row ({} when not measured); see `write_results`."""
    if per_tile is None:
        return {}
    record: dict[str, float | int] = {"per_tile_size": tile if tile is not None else math.nan}
    record |= {f"per_tile_{m}": getattr(per_tile, m) for m in METRIC_NAMES}
    record |= {f"per_tile_diff_{m}": d for m, d in metric_change(metrics, per_tile).items()}
    if tiled is not None:
        record |= {f"tiled_{m}": getattr(tiled, m) for m in METRIC_NAMES}
        record |= {f"per_tile_norm_diff_{m}": d for m, d in metric_change(tiled, per_tile).items()}
    return record


def _image_columns(result: EvaluationResult, index: int) -> dict[str, float]:
    """Every score of image `index`, the baselines' on the same volume included."""
    sets = {"": result.images[index]} | {k: b.images[index] for k, b in result.baselines.items()}
    found = {
        key: ScoreSet(image.metrics, image.foreground, image.objects, image.true_objects)
        for key, image in sets.items()
    }
    network = found.pop("")
    return HeldOutScores.of(network, found, result.images[index].ceiling).columns()


def write_results(result: EvaluationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write per_image.csv and summary.csv, atomically.

    Columns are keyed by `metrics.column`: the paper's metrics, fg_* (inside the target's Otsu
    foreground), the object metrics (f1_50, ..., NaN for structures that are not blob-like), the
    same against the simulator's true objects (true_f1_50, ...; NaN unless simulated), and the
    same again per baseline (mean_*, ridge_*; NaN when baselines were not scored), with the
    target's own objects against the true ones as the ceiling (target_true_f1_50, ...). With
    delta_* columns (Delta_Imp in %) when compared with a baseline. When scored as QuPath
    predicts: per_tile_size (tile in pixels), per_tile_* (QuPath's tiles each z-scored on its
    own), per_tile_diff_* (per tile minus the normal metrics), tiled_* (the same tiles, the volume
    z-scored once) and per_tile_norm_diff_* (per tile minus tiled: the normalisation alone).
    """
    out_dir = Path(out_dir)
    per_image = [
        {"model": result.model_id, "split": result.split, "structure": i.structure, "image": i.name}
        | _image_columns(result, index)
        | _per_tile_columns(result.tile, i.metrics, i.per_tile, i.tiled)
        for index, i in enumerate(result.images)
    ]
    summary = []
    for row in result.summary:
        record = {
            "model": result.model_id,
            "split": result.split,
            "structure": row.structure,
            "n_images": row.n_images,
        } | result.held_out(row.structure).columns()
        if result.deltas:
            delta = result.deltas.get(row.structure, {})
            record |= {f"delta_{m}": delta.get(m, math.nan) for m in METRIC_NAMES}
        record |= _per_tile_columns(
            result.tile,
            row.metrics,
            result.per_tile(row.structure),
            result.tiled(row.structure),
        )
        summary.append(record)
    paths = (out_dir / PER_IMAGE_CSV, out_dir / SUMMARY_CSV)
    for path, records in zip(paths, (per_image, summary), strict=True):
        write_records_csv(path, list(records[0]), records)
    return paths


def results_table(result: EvaluationResult):  # type: ignore[no-untyped-def]
    """A rich table of the per-structure summary (Delta_Imp columns when compared; R² per tile
    and its change when scored as QuPath predicts, with the caption saying how much of that
    change the per-tile normalisation alone causes)."""
    from rich.table import Table

    table = Table(
        title=f"{result.model_id} on the {result.split} split", caption=_per_tile_caption(result)
    )
    table.add_column("structure")
    table.add_column("images", justify="right")
    for name in METRIC_NAMES:
        table.add_column(METRIC_LABELS[name], justify="right")
    if result.deltas:
        for name in METRIC_NAMES:
            table.add_column(f"Δ {METRIC_LABELS[name]} %", justify="right")
    if result.per_tile_summary:
        for name in _PER_TILE_SHOWN:
            table.add_column(f"{METRIC_LABELS[name]} per tile (Δ)", justify="right", no_wrap=True)
    for index, row in enumerate(result.summary):
        cells = [row.structure, str(row.n_images)]
        cells += [f"{getattr(row.metrics, m):.4f}" for m in METRIC_NAMES]
        if result.deltas:
            delta = result.deltas.get(row.structure, {})
            cells += [f"{delta.get(m, math.nan):+.2f}" for m in METRIC_NAMES]
        if result.per_tile_summary:
            per_tile = result.per_tile(row.structure)
            change = result.per_tile_change(row.structure)
            for name in _PER_TILE_SHOWN:
                value = getattr(per_tile, name) if per_tile is not None else math.nan
                cells.append(f"{value:.4f} ({change.get(name, math.nan):+.4f})")
        table.add_row(*cells, end_section=index == len(result.summary) - 2)
    return table


def _per_tile_caption(result: EvaluationResult) -> str | None:
    if not result.per_tile_summary:
        return None
    caption = (
        f"R² per tile: predicted as QuPath does, in tiles of at most {result.tile}×{result.tile} "
        f"pixels, each z-scored on its own; Δ = per tile − per image (the volume z-scored once, "
        f"as in training, and the blended sliding window)."
    )
    tiled, norm = result.tiled(ALL), result.normalisation_change(ALL)
    if tiled is not None and norm:
        caption += (
            f" Of the Δ of All, {norm['r2']:+.4f} is the per-tile normalisation alone (the same "
            f"tiles with the volume z-scored: R² {tiled.r2:.4f}); the rest is the tiling."
        )
    return caption


#: Per-tile metrics the table shows (the CSVs have all of them; the table must fit 80 columns).
_PER_TILE_SHOWN = ("r2",)


#: What the baseline table shows per predictor: (metric, scope), labels from `metrics.column`.
#: (The CSVs have every metric; the table must fit 80 columns.)
BASELINE_SHOWN = (("r2", ""), ("r2", "fg"), ("mse", ""))
BASELINE_SHOWN_OBJECTS = (("f1_50", ""), ("f1_75", ""))
BASELINE_SHOWN_TRUE = (("f1_50", "true"),)


def baseline_table(result: EvaluationResult):  # type: ignore[no-untyped-def]
    """Per structure, the network beside each baseline (rows), foreground and object metrics
    included (object columns only when some structure is blob-like; on simulated data also
    F1 against the true objects, with the target's own as a last row: the ceiling)."""
    from rich.table import Table

    shown = list(BASELINE_SHOWN)
    if result.objects_summary:
        shown += BASELINE_SHOWN_OBJECTS
    if result.true_objects_summary:
        shown += BASELINE_SHOWN_TRUE
    table = Table(title=f"{result.model_id}: network and baselines on the {result.split} split")
    table.add_column("structure")
    table.add_column("predictor")
    for metric, scope in shown:
        table.add_column(column(metric, scope)[1], justify="right")
    for structure in [*result.structures(), ALL]:
        sets = {"": result.scores(structure)}
        sets |= {k: b.scores(structure) for k, b in result.baselines.items()}
        ceiling = result.ceiling(structure)
        if ceiling is not None:
            sets[CEILING] = ScoreSet(_NOT_MEASURED, true_objects=ceiling)
        for position, (key, scores) in enumerate(sets.items()):
            values = scores.columns()
            cells = [structure if position == 0 else "", PREDICTORS[key][0]]
            cells += [cell(values[column(m, scope)[0]]) for m, scope in shown]
            table.add_row(*cells, end_section=position == len(sets) - 1)
    return table


def baseline_verdict(result: EvaluationResult) -> str:
    """One line: the structures where the network does not beat the ridge baseline (R²)."""
    if "ridge" not in result.baselines:
        return "baselines not scored"
    losing = result.not_beating("ridge", "r2")
    ridge = result.baselines["ridge"]
    if not losing:
        return "the network beats the ridge baseline (R²) on every structure"
    pairs = ", ".join(
        f"{s} ({_metrics(result, s).r2:.3f} ≤ {_metrics(ridge, s).r2:.3f})" for s in losing
    )
    return f"WARNING: the network does not beat the ridge baseline (R²) on {pairs}"
