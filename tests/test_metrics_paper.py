"""Metrics against hand-computed values, numpy/scipy equivalents and the paper's Table 7."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sparsessp_bmz.metrics import (
    ALL,
    ImageMetrics,
    delta_imp,
    image_metrics,
    mean_metrics,
    metrics_from_mapping,
    summarize,
)


def test_hand_computed_values_for_a_four_voxel_volume() -> None:
    target = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2)
    prediction = np.array([1.0, 2.0, 2.0, 6.0]).reshape(1, 2, 2)
    m = image_metrics(prediction, target)
    # residuals 0, 0, -1, 2: SS_res = 5, SS_tot = 5 (target mean 2.5)
    assert m.mse == pytest.approx(5 / 4)
    assert m.mae == pytest.approx(3 / 4)
    assert m.r2 == pytest.approx(0.0)
    # prediction mean 2.75, centred (-1.75, -0.75, -0.75, 3.25); dot with target centred = 7.5
    assert m.pearson == pytest.approx(7.5 / math.sqrt(5 * 14.75))


def test_metrics_match_numpy_and_scipy_on_random_volumes() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(8, 20, 24)).astype(np.float32)
    prediction = (0.7 * target + rng.normal(scale=0.5, size=target.shape)).astype(np.float32)
    m = image_metrics(prediction, target)
    t, p = target.astype(np.float64).ravel(), prediction.astype(np.float64).ravel()
    assert m.mse == pytest.approx(np.mean((p - t) ** 2), rel=1e-12)
    assert m.mae == pytest.approx(np.mean(np.abs(p - t)), rel=1e-12)
    assert m.r2 == pytest.approx(1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-12)
    assert m.pearson == pytest.approx(stats.pearsonr(p, t).statistic, rel=1e-10)


def test_perfect_prediction_scores_r2_and_pearson_of_one() -> None:
    target = np.random.default_rng(1).normal(size=(4, 8, 8))
    m = image_metrics(target, target)
    assert (m.mse, m.mae) == (0.0, 0.0)
    assert m.r2 == pytest.approx(1.0)
    assert m.pearson == pytest.approx(1.0)


def test_r2_and_pearson_are_undefined_for_a_constant_target() -> None:
    m = image_metrics(np.arange(8.0).reshape(2, 2, 2), np.ones((2, 2, 2)))
    assert math.isnan(m.r2)
    assert math.isnan(m.pearson)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        image_metrics(np.zeros((2, 4, 4)), np.zeros((4, 4, 4)))


def test_summary_averages_per_structure_and_all_is_the_mean_over_structures() -> None:
    a1 = ImageMetrics(mse=1.0, mae=1.0, r2=0.2, pearson=0.5)
    a2 = ImageMetrics(mse=3.0, mae=2.0, r2=0.4, pearson=0.7)
    b1 = ImageMetrics(mse=0.5, mae=0.5, r2=0.9, pearson=0.95)
    rows = summarize([("dna", a1), ("membrane", b1), ("dna", a2)])
    assert [(r.structure, r.n_images) for r in rows] == [("dna", 2), ("membrane", 1), (ALL, 3)]
    assert rows[0].metrics.as_dict() == pytest.approx(ImageMetrics(2.0, 1.5, 0.3, 0.6).as_dict())
    # every structure counts once in ALL, not every image
    assert rows[2].metrics.mse == pytest.approx((2.0 + 0.5) / 2)
    assert rows[2].metrics.r2 == pytest.approx((0.3 + 0.9) / 2)


def test_mean_ignores_an_undefined_value_of_one_image() -> None:
    m = mean_metrics([ImageMetrics(1.0, 1.0, float("nan"), 0.5), ImageMetrics(3.0, 1.0, 0.5, 0.7)])
    assert m.r2 == pytest.approx(0.5)
    assert m.mse == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # SparseSSP Table 7, Tgnet-3-to-2D "All" row vs Multi-Net (.5341, .4269, .4337)
        ((0.4995, 0.4113, 0.4693), (6.4782, 3.6543, 8.2084)),  # r = 2
        ((0.5158, 0.4166, 0.4526), (3.4263, 2.4127, 4.3579)),  # r = 4
        ((0.5386, 0.4231, 0.4292), (-0.8425, 0.8901, -1.0376)),  # r = 8
    ],
)
def test_delta_imp_reproduces_the_papers_table_7(
    model: tuple[float, float, float], expected: tuple[float, float, float]
) -> None:
    baseline = metrics_from_mapping({"mse": 0.5341, "mae": 0.4269, "r2": 0.4337})
    ours = metrics_from_mapping(dict(zip(("mse", "mae", "r2"), model, strict=True)))
    delta = delta_imp(ours, baseline)
    assert (delta["mse"], delta["mae"], delta["r2"]) == pytest.approx(expected, abs=6e-4)
    assert math.isnan(delta["pearson"])  # the paper's baseline has no Pearson r


def test_delta_imp_is_positive_when_better_even_against_a_negative_r2_baseline() -> None:
    baseline = ImageMetrics(mse=1.0, mae=1.0, r2=-0.5, pearson=0.1)
    better = ImageMetrics(mse=0.5, mae=0.8, r2=0.25, pearson=0.2)
    delta = delta_imp(better, baseline)
    assert delta == pytest.approx({"mse": 50.0, "mae": 20.0, "r2": 150.0, "pearson": 100.0})
