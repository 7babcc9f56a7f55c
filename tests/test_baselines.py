"""Baselines beside every score: the mean predictor, the ridge on TL features, the verdict line,
and the stored held-out scores (cache format and version)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bmz_fixtures import tiny_trained
from eval_fixtures import RATIO, exact, nearest, smoothed_tl_dataset

from sparsessp_bmz.baselines import fit_baselines
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.evaluation import (
    EvaluationResult,
    baseline_verdict,
    evaluate_predictor,
    read_held_out,
    write_results,
)
from sparsessp_bmz.metrics import ALL
from sparsessp_bmz.scores import SCORES_VERSION, STAMP_FILE, evaluation_dir, scores_of
from sparsessp_bmz.trained import TrainingFacts


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    manifest = smoothed_tl_dataset(tmp_path_factory.mktemp("cells"))
    return DataSettings(manifest=manifest, structures=("dna",))


def _scored(settings: DataSettings, predictor) -> EvaluationResult:  # type: ignore[no-untyped-def]
    train = tuple(rows_for(settings, "train"))
    baselines = fit_baselines(train, settings, RATIO, "dna").predictors()
    rows = rows_for(settings, "test")
    return evaluate_predictor(
        predictor, rows, settings, RATIO, model_id="net", split="test", baselines=baselines
    )


@pytest.fixture(scope="module")
def poor(settings: DataSettings) -> EvaluationResult:
    return _scored(settings, nearest)


def test_ridge_recovers_a_smoothed_tl_and_the_mean_predictor_scores_zero(
    poor: EvaluationResult,
) -> None:
    ridge, mean = poor.baselines["ridge"].overall(), poor.baselines["mean"].overall()
    assert ridge.r2 > 0.95
    assert abs(mean.r2) < 0.05  # the training mean, not the test volumes' own: about 0
    assert poor.overall().r2 < ridge.r2


def test_the_fit_is_deterministic(settings: DataSettings) -> None:
    train = tuple(rows_for(settings, "train"))
    first = fit_baselines(train, settings, RATIO, "dna")
    fit_baselines.cache_clear()
    again = fit_baselines(train, settings, RATIO, "dna")
    assert again is not first
    np.testing.assert_array_equal(first.ridge.weights, again.ridge.weights)
    assert first.n_voxels == again.n_voxels <= 200_000


def test_the_verdict_names_structures_where_the_network_does_not_beat_ridge(
    settings: DataSettings, poor: EvaluationResult
) -> None:
    assert poor.not_beating("ridge") == ["dna"]
    assert "does not beat the ridge baseline (R²) on dna" in baseline_verdict(poor)
    good = _scored(settings, exact)
    assert good.not_beating("ridge") == []
    assert "beats the ridge baseline (R²) on every structure" in baseline_verdict(good)


def test_blob_structures_get_object_metrics_beside_the_baselines(poor: EvaluationResult) -> None:
    scores = poor.held_out("dna")
    assert scores.foreground is not None and scores.objects is not None
    assert set(scores.baselines) == {"mean", "ridge"}
    assert scores.baselines["ridge"].objects is not None


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k]) for k in a
    )


def test_stored_summaries_read_back_with_their_baselines(
    poor: EvaluationResult, tmp_path: Path
) -> None:
    _, summary = write_results(poor, tmp_path)
    stored = read_held_out(summary)
    for structure in ("dna", ALL):
        assert _same(stored[structure].columns(), poor.held_out(structure).columns())


def test_scores_stored_by_an_older_version_are_evaluated_again(
    settings: DataSettings, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    trained = replace(
        tiny_trained("3to2d"), data=settings, facts=TrainingFacts(checkpoint=checkpoint)
    )
    first = scores_of(trained)
    assert set(first["dna"].baselines) == {"mean", "ridge"}
    stamp = evaluation_dir(tmp_path / "run") / STAMP_FILE
    old = json.loads(stamp.read_text())
    old.pop("version")  # as version 1 wrote it: no baselines, foreground or objects
    stamp.write_text(json.dumps(old))
    summary = stamp.parent / "summary.csv"
    summary.write_text("structure,mse,mae,r2,pearson\ndna,9,9,-9,0\n")
    again = scores_of(trained)
    assert again["dna"].r2 == pytest.approx(first["dna"].r2)
    assert json.loads(stamp.read_text())["version"] == SCORES_VERSION


def test_the_model_card_shows_the_network_beside_its_baselines() -> None:
    from sparsessp_bmz.bmz.card import metrics_text
    from sparsessp_bmz.bmz.facts import package_facts, read_template
    from sparsessp_bmz.bmz.package import TEMPLATES_DIR
    from sparsessp_bmz.metrics import HeldOutScores, ImageMetrics, ObjectMetrics, ScoreSet

    ridge = ScoreSet(ImageMetrics(0.5, 0.4, 0.5, 0.7), ImageMetrics(2, 1, -1, 0.3))
    scores = HeldOutScores(
        0.6,
        0.45,
        0.4,
        0.65,
        foreground=ImageMetrics(3, 1.5, -2, 0.3),
        objects=ObjectMetrics(0.8, 0.5, 0.6, 0.3),
        baselines={"mean": ScoreSet(ImageMetrics(1, 0.6, 0, math.nan)), "ridge": ridge},
    )
    trained = replace(tiny_trained("3to2d"), test_metrics={"dna": scores})
    facts = package_facts(
        trained,
        "standard",
        template=read_template(TEMPLATES_DIR),
        metadata=None,
        test_source="a volume",
        display=None,
    )
    text = metrics_text(facts)
    assert "| metric | network | mean | ridge |" in text
    assert "| R² (fg) | -2 | nan | -1 |" in text and "| F1@0.5 | 0.8 |" in text
    assert "does not beat a ridge regression" in text  # R² 0.4 against 0.5
    # the RDF states the paper's metrics; the card's table has the rest
    assert facts.test_metrics == ImageMetrics(0.6, 0.45, 0.4, 0.65)
    assert facts.held_out == scores


def test_plane_features_see_their_own_plane_only() -> None:
    from sparsessp_bmz.features import tl_features

    rng = np.random.default_rng(0)
    tl = rng.normal(size=(5, 24, 24)).astype(np.float32)
    changed = tl.copy()
    changed[2] += 10.0
    planar, other = tl_features(tl, planar=True), tl_features(changed, planar=True)
    np.testing.assert_array_equal(planar[:, [0, 1, 3, 4]], other[:, [0, 1, 3, 4]])
    volumetric = tl_features(tl) - tl_features(changed)
    assert np.abs(volumetric[:, 1]).max() > 0  # 3D features do look across planes
