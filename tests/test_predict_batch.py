"""`predict` over many inputs: folders, globs and manifests into an output folder, finished outputs
skipped, a failing file reported while the others go on; OME-Zarr outputs; safe outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bioio import BioImage
from predict_fixtures import SPEC, checkpoint
from typer.testing import CliRunner

from sparsessp_bmz import guards
from sparsessp_bmz.cli import app
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.imageio import write_ome_tiff
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import batch
from sparsessp_bmz.predict.batch import Job, PredictOptions, predict_file
from sparsessp_bmz.predict.models import PredictionModel
from sparsessp_bmz.trained import TrainedModel

__all__ = ["checkpoint"]  # fixtures

runner = CliRunner()
VOXEL = (0.58, 0.29, 0.29)


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def stacks(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / name for name in names]
    for path in paths:
        write_ome_tiff(path, rng.normal(size=(4, 32, 48)).astype(np.float32), VOXEL)
    return paths


def test_a_folder_is_predicted_into_mirrored_names_and_a_rerun_skips_them(
    tmp_path: Path, checkpoint: Path
) -> None:
    stacks(tmp_path / "plate", ["a.ome.tif", "b.ome.tif"])
    (tmp_path / "plate" / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    first = invoke("predict", checkpoint, tmp_path / "plate", out, "--engine", "eager")
    assert first.exit_code == 1, first.output
    assert sorted(p.name for p in out.iterdir()) == ["a.ome.tif", "b.ome.tif"]
    assert BioImage(out / "a.ome.tif").get_image_data("ZYX").shape == (8, 32, 48)
    assert "failed" in first.output and "broken.tif" in first.output
    assert "2 written, 0 skipped, 1 failed" in first.output
    second = invoke("predict", checkpoint, tmp_path / "plate", out, "--engine", "eager")
    assert "0 written, 2 skipped, 1 failed" in second.output
    assert second.exit_code == 1


def test_a_glob_and_a_manifest_write_ome_zarr_with_voxel_sizes(
    tmp_path: Path, checkpoint: Path
) -> None:
    stacks(tmp_path, ["c1.ome.tif", "c2.ome.tif"])
    out = tmp_path / "zarr"
    result = invoke(
        "predict", checkpoint, str(tmp_path / "c*.ome.tif"), out, "--format", "ome-zarr"
    )
    assert result.exit_code == 0, result.output
    image = BioImage(out / "c1.ome.zarr")
    assert image.get_image_data("ZYX").shape == (8, 32, 48)
    assert tuple(image.physical_pixel_sizes) == pytest.approx((0.29, 0.29, 0.29))
    (tmp_path / "cells.csv").write_text(
        "path_signal,path_target,structure\nc2.ome.tif,c1.ome.tif,dna\n"
    )
    listed = invoke("predict", checkpoint, tmp_path / "cells.csv", tmp_path / "m")
    assert listed.exit_code == 0, listed.output
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["c2.ome.tif"]
    # one file into a folder: OUTPUT ends with /
    alone = invoke("predict", checkpoint, tmp_path / "c1.ome.tif", f"{tmp_path / 'one'}/")
    assert alone.exit_code == 0, alone.output
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["c1.ome.tif"]


def test_one_input_to_an_ome_zarr_name_equals_the_ome_tiff(tmp_path: Path, checkpoint: Path):
    (tl,) = stacks(tmp_path, ["tl.ome.tif"])
    for name in ("p.ome.tif", "p.ome.zarr"):
        result = invoke("predict", checkpoint, tl, tmp_path / name, "--engine", "eager")
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        BioImage(tmp_path / "p.ome.zarr").get_image_data("ZYX"),
        BioImage(tmp_path / "p.ome.tif").get_image_data("ZYX"),
    )


def test_an_output_folder_holding_an_input_of_the_same_name_is_refused_before_work(
    tmp_path: Path, checkpoint: Path
) -> None:
    (source,) = stacks(tmp_path / "plate", ["a.ome.tif"])
    before = source.read_bytes()
    result = invoke("predict", checkpoint, tmp_path / "plate", tmp_path / "plate")
    assert result.exit_code != 0
    assert "would destroy it" in str(result.exception)
    assert source.read_bytes() == before


def test_an_output_folder_that_is_a_file_is_refused_before_work(
    tmp_path: Path, checkpoint: Path
) -> None:
    stacks(tmp_path / "plate", ["a.ome.tif"])
    (tmp_path / "out").write_text("notes")
    result = invoke("predict", checkpoint, tmp_path / "plate", tmp_path / "out")
    assert result.exit_code != 0
    assert "is a file, not a folder" in str(result.exception)


class Crash(RuntimeError):
    pass


def test_a_run_killed_while_writing_ome_zarr_leaves_nothing_under_the_name(
    tmp_path: Path,
) -> None:
    (tl,) = stacks(tmp_path, ["tl.ome.tif"])
    torch.manual_seed(0)
    model = PredictionModel(TrainedModel(spec=SPEC, net=build_net(SPEC).eval()), tmp_path)
    calls = []

    def dies_on_the_second_slab(input_window):  # type: ignore[no-untyped-def]
        def run(batch: np.ndarray) -> np.ndarray:
            calls.append(1)
            if len(calls) > 2:
                raise Crash("killed")
            return np.repeat(batch, SPEC.ratio, axis=2)

        return run

    job = Job(tl, 0, tmp_path / "p.ome.zarr")
    options = PredictOptions(window=(8, 32, 16), overlap=0.0, engine="eager")
    with pytest.raises(Crash):
        predict_file(model, job, options, dies_on_the_second_slab)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tl.ome.tif"]


def test_a_whole_read_input_too_large_for_memory_is_refused_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tl,) = stacks(tmp_path, ["tl.ome.tif"])
    model = PredictionModel(TrainedModel(spec=SPEC, net=build_net(SPEC).eval()), tmp_path)
    read = []
    monkeypatch.setattr(batch, "open_prediction_input", lambda *a, **k: read.append(a))
    job = Job(tl, 0, tmp_path / "p.ome.tif")
    with guards.memory_limit_option(0.0001), pytest.raises(UserInputError, match="4x32x48"):
        predict_file(model, job, PredictOptions(engine="eager"), lambda window: np.copy)
    assert read == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tl.ome.tif"]


def test_a_folder_of_simulated_fields_contributes_its_tl_images_not_their_true_masks(
    tmp_path: Path,
) -> None:
    """The simulator writes cell_XXXX.masks.ome.tif (true labels) beside each field: predicting
    the folder must not treat those as TL stacks."""
    from sparsessp_bmz.data.config import SimulationSettings
    from sparsessp_bmz.data.simulate.writer import simulate

    settings = SimulationSettings(cells=1, shape=(16, 48, 48), structures=("dna",), seed=0)
    folder = simulate(settings, tmp_path / "sim").parent / "images"
    on_disk = sorted(p.name for p in folder.iterdir())
    assert on_disk == ["cell_0000.masks.ome.tif", "cell_0000.ome.tif"]
    assert [p.name for p, _ in batch.expand_inputs([folder], 0)] == ["cell_0000.ome.tif"]
