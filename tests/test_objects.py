"""Foreground and object metrics (Spotlight's protocol): Otsu foreground, Otsu + connected
components segmentations matched at IoU 0.5 and 0.75."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsessp_bmz.objects import foreground_metrics, is_blob, object_metrics, segment


def _boxes(shape: tuple[int, int, int], boxes: list[tuple[slice, slice, slice]]) -> np.ndarray:
    volume = np.zeros(shape, dtype=np.float32)
    for box in boxes:
        volume[box] = 1.0
    return volume


def test_objects_are_matched_at_each_iou_threshold() -> None:
    shape = (20, 40, 40)
    truth = _boxes(shape, [np.s_[2:8, 2:10, 2:10], np.s_[10:15, 20:30, 20:30]])
    prediction = _boxes(
        shape,
        [
            np.s_[2:8, 2:10, 2:9],  # IoU 7/8: a match at 0.5 and 0.75
            np.s_[10:15, 24:34, 20:30],  # shifted, IoU 6/14: no match
            np.s_[16:19, 30:35, 30:35],  # nothing there: a false positive
        ],
    )
    metrics = object_metrics(segment(prediction), segment(truth))
    # TP 1, FP 2, FN 1 at both thresholds
    assert metrics.f1_50 == metrics.f1_75 == pytest.approx(2 / 5)
    assert metrics.ap_50 == metrics.ap_75 == pytest.approx(1 / 4)


def test_an_iou_between_the_thresholds_counts_at_half_only() -> None:
    shape = (10, 30, 30)
    truth = segment(_boxes(shape, [np.s_[2:8, 5:15, 5:15]]))
    prediction = segment(_boxes(shape, [np.s_[2:8, 5:15, 7:15]]))  # IoU 8/10
    shifted = segment(_boxes(shape, [np.s_[2:8, 5:15, 8:18]]))  # IoU 7/13 = 0.54
    assert object_metrics(prediction, truth).f1_75 == 1.0
    half = object_metrics(shifted, truth)
    assert (half.f1_50, half.f1_75) == (1.0, 0.0)


def test_specks_are_not_objects_and_nothing_against_nothing_is_undefined() -> None:
    shape = (10, 30, 30)
    speck = _boxes(shape, [np.s_[4:5, 4:6, 4:6]])  # 4 voxels
    assert segment(speck).max() == 0
    empty = np.zeros(shape, dtype=np.int32)
    assert math.isnan(object_metrics(empty, empty).f1_50)


def test_foreground_metrics_ignore_the_background() -> None:
    rng = np.random.default_rng(0)
    target = _boxes((10, 30, 30), [np.s_[2:8, 5:15, 5:15]]) * 5 + rng.normal(
        scale=0.1, size=(10, 30, 30)
    )
    wrong_background = np.where(target > 2.5, target, 1.0)  # exact inside, off outside
    fg = foreground_metrics(wrong_background, target)
    assert fg.mse == pytest.approx(0.0) and fg.r2 == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("dna", True),
        ("DNA", True),
        ("nucleolus", True),
        ("Nucleolus-(Granular-Component)", True),
        ("nuclear_envelope", False),
        ("mitochondria", False),
        ("membrane", False),
    ],
)
def test_blob_like_structures_are_named_by_their_first_word(name: str, blob: bool) -> None:
    assert is_blob(name) is blob
