"""Whole-volume evaluation: grid alignment, per-structure results, CSVs and Delta_Imp."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fixtures import write_cells
from rich.console import Console

from sparsessp_bmz.data.config import DataSettings, SimulationSettings
from sparsessp_bmz.data.simulate.writer import MASKS_SUFFIX, simulate
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.evaluation import (
    EvaluationResult,
    baseline_table,
    compare,
    evaluate_model,
    evaluate_predictor,
    read_baseline,
    read_held_out,
    results_table,
    write_results,
)
from sparsessp_bmz.metrics import ALL
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel


def write_dataset(folder: Path, shape: tuple[int, int, int], cells: int = 4) -> Path:
    """Cells whose fluorescence is their TL with every slice pair equal (r = 2 recoverable)."""
    return write_cells(folder, shape, cells, lambda tl: 3 * tl + 1)


def nearest(sparse: np.ndarray) -> np.ndarray:
    return np.repeat(sparse, 2, axis=0)


@pytest.mark.parametrize("depth", [10, 11], ids=["multiple-of-r", "odd-depth"])
def test_a_predictor_that_recovers_the_grid_scores_perfectly(tmp_path: Path, depth: int) -> None:
    settings = DataSettings(manifest=write_dataset(tmp_path, (depth, 16, 20)), structures=("dna",))
    rows = rows_for(settings, None)
    result = evaluate_predictor(nearest, rows, settings, 2, model_id="nearest", split="all")
    assert len(result.images) == 4
    for image in result.images:
        assert image.metrics.mse == pytest.approx(0.0, abs=1e-10)
        assert image.metrics.r2 == pytest.approx(1.0)


def test_summary_has_one_row_per_structure_and_an_all_row(tmp_path: Path) -> None:
    settings = DataSettings(manifest=write_dataset(tmp_path, (8, 16, 16)))
    result = evaluate_predictor(
        nearest, rows_for(settings, None), settings, 2, model_id="nearest", split="all"
    )
    assert [(r.structure, r.n_images) for r in result.summary] == [
        ("dna", 4),
        ("membrane", 4),
        (ALL, 8),
    ]
    dna, membrane, overall = (r.metrics for r in result.summary)
    assert membrane.r2 < dna.r2
    assert overall.mse == pytest.approx((dna.mse + membrane.mse) / 2)


def test_evaluate_model_scores_the_test_split_of_the_models_structure(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, (9, 40, 36), cells=4)
    spec = ModelSpec(
        organelle="dna", ratio=2, topology="3to2d", width=0.125, units=16, patch=(8, 32, 32)
    )
    torch.manual_seed(0)
    trained = TrainedModel(spec=spec, net=build_net(spec).eval())
    result = evaluate_model(trained, DataSettings(manifest=manifest), "test", batch_size=2)
    assert result.model_id == "sparsessp-dna-r2-3to2d"
    assert {image.structure for image in result.images} == {"dna"}
    assert len(result.images) == 1  # 25 % of 4 cells
    assert all(np.isfinite(image.metrics.mse) for image in result.images)


def test_results_round_trip_as_a_baseline_with_zero_delta_imp(tmp_path: Path) -> None:
    settings = DataSettings(manifest=write_dataset(tmp_path, (8, 16, 16)))
    result = evaluate_predictor(
        nearest, rows_for(settings, None), settings, 2, model_id="nearest", split="all"
    )
    per_image, summary = write_results(result, tmp_path / "eval")
    for baseline in (read_baseline(summary), read_baseline(per_image)):
        compared = compare(result, baseline)
        assert set(compared.deltas) == {"dna", "membrane", ALL}
        for delta in compared.deltas.values():
            assert all(value == pytest.approx(0.0, abs=1e-9) for value in delta.values())


def test_delta_imp_columns_are_written_and_positive_when_better(tmp_path: Path) -> None:
    settings = DataSettings(manifest=write_dataset(tmp_path, (8, 16, 16)), structures=("dna",))
    rows = rows_for(settings, None)
    good = evaluate_predictor(nearest, rows, settings, 2, model_id="nearest", split="all")
    worse = evaluate_predictor(
        lambda s: 0.5 * nearest(s), rows, settings, 2, model_id="half", split="all"
    )
    _, worse_summary = write_results(worse, tmp_path / "worse")
    compared = compare(good, read_baseline(worse_summary))
    _, summary = write_results(compared, tmp_path / "good")
    with summary.open() as handle:
        records = {r["structure"]: r for r in csv.DictReader(handle)}
    assert float(records["dna"]["delta_mse"]) > 0
    assert float(records["dna"]["delta_r2"]) > 0
    assert float(records[ALL]["delta_mae"]) == pytest.approx(100.0)  # MAE went to zero
    assert "Δ MSE %" in [c.header for c in results_table(compared).columns]


def _nearest_on_dna(tmp_path: Path) -> EvaluationResult:
    """The nearest-upsampling predictor scored on a small DNA data set."""
    settings = DataSettings(manifest=write_dataset(tmp_path, (8, 16, 16)), structures=("dna",))
    return evaluate_predictor(
        nearest, rows_for(settings, None), settings, 2, model_id="nearest", split="all"
    )


def test_baseline_without_the_evaluated_structures_is_refused(tmp_path: Path) -> None:
    result = _nearest_on_dna(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("structure,mse,mae,r2\ntubulin,0.5,0.4,0.3\n")
    with pytest.raises(UserInputError, match="none of the structures"):
        compare(result, read_baseline(other))


def test_baseline_with_missing_columns_names_them(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("structure,mse\ndna,0.5\n")
    with pytest.raises(UserInputError, match=r"lack \['mae', 'r2'\]"):
        read_baseline(bad)


def test_paper_style_baseline_without_pearson_gives_nan_pearson_delta(tmp_path: Path) -> None:
    result = _nearest_on_dna(tmp_path)
    paper = tmp_path / "paper.csv"
    paper.write_text("structure,mse,mae,r2\ndna,0.5806,0.5033,0.3822\n")
    delta = compare(result, read_baseline(paper)).deltas["dna"]
    assert delta["mse"] == pytest.approx(100.0)
    assert math.isnan(delta["pearson"])


@pytest.fixture(scope="module")
def simulated_nuclei(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated fields with nuclei, nucleoli and a structure without objects (the manifest);
    the simulator saves their true objects beside the images."""
    settings = SimulationSettings(
        cells=2, structures=("dna", "nucleolus", "mitochondria"), seed=4, shape=(24, 48, 48)
    )
    return simulate(settings, tmp_path_factory.mktemp("simulated"))


def _simulated_result(manifest: Path) -> EvaluationResult:
    settings = DataSettings(manifest=manifest, voxel_size_um=(0.29, 0.29, 0.29))
    rows = rows_for(settings, None, save=False)
    return evaluate_predictor(
        nearest,
        rows,
        settings,
        2,
        model_id="nearest",
        split="all",
        baselines={"mean": lambda sparse: np.zeros_like(nearest(sparse))},
    )


def test_simulated_blobs_are_also_scored_against_the_true_masks_with_the_target_as_ceiling(
    simulated_nuclei: Path, tmp_path: Path
) -> None:
    result = _simulated_result(simulated_nuclei)
    assert [row.structure for row in result.true_objects_summary] == ["dna", "nucleolus", ALL]
    # the target images the true nuclei closely; TL repeated is far from them
    assert result.ceiling("dna").f1_50 > 0.5
    assert result.true_objects("dna").f1_50 < result.ceiling("dna").f1_50
    _, summary = write_results(result, tmp_path)
    rows = {r["structure"]: r for r in csv.DictReader(summary.open())}
    assert float(rows["dna"]["target_true_f1_50"]) == pytest.approx(result.ceiling("dna").f1_50)
    assert float(rows["dna"]["true_ap_75"]) == pytest.approx(result.true_objects("dna").ap_75)
    assert math.isnan(float(rows["mitochondria"]["true_f1_50"]))
    assert read_held_out(summary)["dna"].ceiling == result.ceiling("dna")
    printed = Console(width=200, record=True)
    printed.print(baseline_table(result))
    text = printed.export_text()
    assert "F1@0.5 true" in text and "target" in text


def test_without_true_masks_the_true_columns_are_empty_and_nothing_fails(
    simulated_nuclei: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(simulated_nuclei.parent, copy)
    for masks in (copy / "images").glob(f"*{MASKS_SUFFIX}"):
        masks.unlink()
    result = _simulated_result(copy / simulated_nuclei.name)
    assert result.objects("dna") is not None
    assert result.true_objects_summary == () and result.ceiling_summary == ()
    _, summary = write_results(result, tmp_path / "out")
    assert all(math.isnan(float(r["true_f1_50"])) for r in csv.DictReader(summary.open()))
