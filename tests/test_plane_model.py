"""Plane models (one TL plane in, one fluorescence plane out) and per-tile normalisation."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import SMALL_FIELD, ome_tiff, random_stack, write_csv

from sparsessp_bmz.cli.evaluate import evaluate as evaluate_command
from sparsessp_bmz.data.config import DataSettings, SimulationSettings
from sparsessp_bmz.data.dataset import SparsePatchDataset
from sparsessp_bmz.data.manifest import read_manifest
from sparsessp_bmz.data.simulate.writer import simulate
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.evaluation import (
    QUPATH_TILE,
    evaluate_model,
    results_table,
    tile_window,
    write_results,
)
from sparsessp_bmz.metrics import ALL
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import predict_volume, zscore_window
from sparsessp_bmz.spec import ModelSpec
from sparsessp_bmz.trained import TrainedModel
from sparsessp_bmz.training.checkpoint import load_trained
from sparsessp_bmz.training.config import load_config
from sparsessp_bmz.training.run import train

PRESETS = Path(__file__).resolve().parents[1] / "training"
PLANE = ModelSpec(organelle="dna", ratio=1, topology="2d", width=0.125, patch=(1, 32, 32))


def plane_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_net(PLANE).eval()


def zscored(volume: np.ndarray) -> np.ndarray:
    """What evaluation hands the predictor: the volume z-scored once, as a whole."""
    return ((volume - volume.mean()) / volume.std()).astype(np.float32)


def test_plane_preset_validates_as_a_single_plane_2d_model_on_the_demo_data() -> None:
    plane, demo = load_config(PRESETS / "plane.yaml"), load_config(PRESETS / "demo.yaml")
    assert plane.model.patch == (1, 64, 64)
    assert (plane.model.ratio, plane.model.topology) == (1, "2d")
    assert plane.model.is_plane and plane.model.model_id.endswith("-plane")
    assert plane.model.input_patch == (1, 64, 64)
    assert plane.data.manifest == demo.data.manifest
    assert plane.optim.batch_size > demo.optim.batch_size
    assert not demo.model.is_plane


def test_depth_one_patches_are_single_aligned_planes_under_every_flip(tmp_path: Path) -> None:
    ome_tiff(tmp_path / "v.ome.tif", random_stack((1, 9, 20, 20)))
    manifest = write_csv(tmp_path / "m.csv", "path_signal,path_target", "v.ome.tif,v.ome.tif")
    settings = DataSettings(manifest=manifest, samples_per_epoch=32)
    dataset = SparsePatchDataset(read_manifest(manifest), settings, patch=(1, 16, 16), ratio=1)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["input"].shape == sample["target"].shape == (1, 1, 16, 16)
        assert torch.equal(sample["input"], sample["target"])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small simulated fields with DNA (train 2, val 1, test 1)."""
    settings = SimulationSettings(cells=4, structures=("dna",), seed=3, shape=SMALL_FIELD)
    return simulate(settings, tmp_path_factory.mktemp("plane-cells"))


def test_tiny_plane_model_trains_and_evaluates_with_both_normalisations(
    manifest: Path, tmp_path: Path
) -> None:
    config = load_config(
        PRESETS / "plane.yaml",
        [
            f"data.manifest={manifest}",
            "data.samples_per_epoch=4",
            "data.patches_per_volume=2",
            "optim.batch_size=2",
            "optim.max_steps=3",
            "optim.val_every_n_epochs=1",
            "optim.val_samples=2",
            "optim.bn_recalibration_batches=1",
            "model.width=0.125",
            "model.patch=[1, 32, 32]",
            f"trainer.run_dir={tmp_path / 'run'}",
            "trainer.progress_bar=false",
            "trainer.log_every_n_steps=1",
        ],
    )
    run = train(config)
    trained = load_trained(run.best_checkpoint)
    assert trained.spec == config.model

    result = evaluate_model(trained, config.data_settings, "test", tile=32)
    assert result.tile == 32
    image = result.images[0]
    assert image.per_tile is not None and image.tiled is not None
    for metrics in (result.overall(), result.per_tile(ALL), result.tiled(ALL)):
        assert metrics is not None and np.isfinite(metrics.r2)
    change = result.per_tile_change(ALL)
    assert change["r2"] == pytest.approx(result.per_tile(ALL).r2 - result.overall().r2)
    norm = result.normalisation_change(ALL)
    assert norm["r2"] == pytest.approx(result.per_tile(ALL).r2 - result.tiled(ALL).r2)

    per_image, summary = write_results(result, tmp_path / "eval")
    for path in (per_image, summary):
        record = next(csv.DictReader(path.open()))
        assert float(record["per_tile_r2"]) == pytest.approx(image.per_tile.r2)
        assert float(record["per_tile_diff_r2"]) == pytest.approx(
            image.per_tile.r2 - image.metrics.r2
        )
        assert float(record["per_tile_norm_diff_r2"]) == pytest.approx(
            image.per_tile.r2 - image.tiled.r2
        )
        assert record["per_tile_size"] == "32"
    assert "R² per tile (Δ)" in [column.header for column in results_table(result).columns]


def test_evaluate_scores_per_tile_only_for_plane_models_unless_asked(manifest: Path) -> None:
    settings = DataSettings(manifest=manifest)
    spec = ModelSpec(organelle="dna", ratio=2, topology="2d", width=0.125, patch=(2, 32, 32))
    torch.manual_seed(0)
    volume_model = TrainedModel(spec=spec, net=build_net(spec).eval())
    assert not evaluate_model(volume_model, settings).per_tile_summary
    forced = evaluate_model(volume_model, settings, per_tile=True, tile=32)
    assert forced.per_tile(ALL) is not None
    plane = TrainedModel(spec=PLANE, net=plane_net())
    assert not evaluate_model(plane, settings, per_tile=False).per_tile_summary


def test_a_window_z_scored_on_its_own_has_zero_mean_and_unit_std() -> None:
    window = np.random.default_rng(0).normal(5.0, 3.0, size=(1, 32, 32)).astype(np.float32)
    normalised = zscore_window(window)
    assert normalised.dtype == np.float32
    assert normalised.mean() == pytest.approx(0.0, abs=1e-6)
    assert normalised.std() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (PLANE, (1, 32, 48)),
        (ModelSpec(organelle="dna", ratio=2, topology="2d", width=0.125, patch=(4, 32, 32)), None),
    ],
    ids=["plane", "stack"],
)
def test_per_tile_equals_per_image_normalisation_when_the_tile_covers_the_image(
    spec: ModelSpec, shape: tuple[int, int, int] | None
) -> None:
    shape = shape or spec.input_patch
    volume = zscored(np.random.default_rng(1).gamma(2.0, 50.0, size=shape))
    torch.manual_seed(0)
    net = build_net(spec).eval()
    window = (spec.patch[0], shape[1], shape[2])
    whole = predict_volume(net, spec, volume, window=window)
    per_tile = predict_volume(net, spec, volume, window=window, normalise_windows=True)
    np.testing.assert_allclose(per_tile, whole, rtol=1e-4, atol=1e-4)


def test_per_tile_normalisation_differs_when_tiles_cover_part_of_the_image() -> None:
    rng = np.random.default_rng(2)
    brighter_right = rng.normal(size=(2, 32, 64)) + np.linspace(0, 6, 64)
    volume = zscored(brighter_right)
    net = plane_net()
    window = tile_window(PLANE, volume.shape, 32)
    assert window == (1, 32, 32)
    whole = predict_volume(net, PLANE, volume, window=window, overlap=0.0)
    per_tile = predict_volume(
        net, PLANE, volume, window=window, overlap=0.0, normalise_windows=True
    )
    assert np.abs(per_tile - whole).max() > 0.1


def test_per_tile_prediction_ignores_brightness_and_contrast_of_each_tile() -> None:
    """What per-tile normalisation buys: a tile's offset and gain do not reach the network."""
    volume = zscored(np.random.default_rng(3).normal(size=(1, 32, 64)))
    changed = volume.copy()
    changed[:, :, 32:] = 4.0 * changed[:, :, 32:] + 3.0  # the right tile only
    net = plane_net()
    kwargs = {"window": (1, 32, 32), "overlap": 0.0, "normalise_windows": True}
    np.testing.assert_allclose(
        predict_volume(net, PLANE, changed, **kwargs),
        predict_volume(net, PLANE, volume, **kwargs),
        rtol=1e-4,
        atol=1e-4,
    )


def test_tile_window_is_qupaths_tile_clipped_to_the_volume_in_steps_of_16() -> None:
    assert tile_window(PLANE, (40, 160, 160), QUPATH_TILE) == (1, 160, 160)
    assert tile_window(PLANE, (40, 1024, 700), QUPATH_TILE) == (1, 512, 512)
    assert tile_window(PLANE, (40, 170, 41), 128) == (1, 128, 32)
    assert tile_window(PLANE, (3, 10, 10), 64) == (1, 16, 16)  # thinner than 16: padded
    with pytest.raises(UserInputError, match="multiple of 16"):
        tile_window(PLANE, (1, 64, 64), 500)


def test_evaluate_command_defaults_to_qupaths_tile() -> None:
    assert inspect.signature(evaluate_command).parameters["tile"].default == QUPATH_TILE
