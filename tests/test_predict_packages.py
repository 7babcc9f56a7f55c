"""`predict` from a bioimage.io package: the package's own TorchScript or ONNX weights give what
its checkpoint gives, and a package this project did not write is one clear error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from bioio import BioImage
from bmz_fixtures import exported_3to2d, exported_dense_3to2d, tiny_trained
from typer.testing import CliRunner

from sparsessp_bmz.bmz.facts import Tolerance
from sparsessp_bmz.cli import app
from sparsessp_bmz.imageio import read_prediction_input, write_ome_tiff
from sparsessp_bmz.predict import predict_volume
from sparsessp_bmz.predict.defaults import DEFAULT_OVERLAP, default_window

__all__ = ["exported_3to2d", "exported_dense_3to2d"]  # fixtures

runner = CliRunner()


def checkpoint_prediction(tl: Path) -> np.ndarray:
    """What the packaged model's checkpoint predicts for `tl` with the default plan."""
    trained = tiny_trained("3to2d")
    field = read_prediction_input(tl, ratio=2, model_voxel_size_um=trained.voxel_size_um)
    window = default_window(trained.spec, field.sparse.shape)  # type: ignore[arg-type]
    return predict_volume(
        trained.net, trained.spec, field.sparse, overlap=DEFAULT_OVERLAP, window=window
    )


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tl") / "field.ome.tif"
    stack = np.random.default_rng(0).normal(size=(6, 40, 72)) * 50 + 500
    write_ome_tiff(path, stack.astype(np.float32), (0.58, 0.29, 0.29))
    return path


@pytest.mark.parametrize("weights", ["torchscript", "onnx"])
@pytest.mark.parametrize("variant", ["standard", "dense"])
def test_package_predicts_what_its_checkpoint_predicts(
    request: pytest.FixtureRequest, tl: Path, tmp_path: Path, weights: str, variant: str
) -> None:
    package = request.getfixturevalue(
        "exported_3to2d" if variant == "standard" else "exported_dense_3to2d"
    )
    out = tmp_path / "prediction.ome.tif"
    result = runner.invoke(app, ["predict", str(package), str(tl), str(out), "--weights", weights])
    assert result.exit_code == 0, result.output
    got = BioImage(out).get_image_data("ZYX")
    expected = checkpoint_prediction(tl)
    with zipfile.ZipFile(package) as archive:
        scale = yaml.safe_load(archive.read("rdf.yaml"))["config"]["sparsessp"]["display_scale"]
    if scale:  # the dense-grid package maps its output onto 0..1 for display (nets/variants.py)
        expected = (expected - scale["low"]) / (scale["high"] - scale["low"])
    tolerance = Tolerance()
    np.testing.assert_allclose(got, expected, rtol=tolerance.relative, atol=tolerance.absolute)


def test_a_foreign_package_is_one_clear_error(
    exported_3to2d: Path, tl: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "foreign"
    with zipfile.ZipFile(exported_3to2d) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    del rdf["config"]["sparsessp"]
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    out = tmp_path / "prediction.ome.tif"
    result = runner.invoke(app, ["predict", str(folder), str(tl), str(out)])
    assert result.exit_code != 0
    assert "not a sparsessp-bmz package" in str(result.exception)
    assert not out.exists()


def test_output_equal_to_the_package_is_refused_before_work(exported_3to2d: Path, tl: Path) -> None:
    result = runner.invoke(app, ["predict", str(exported_3to2d), str(tl), str(exported_3to2d)])
    assert result.exit_code != 0
    assert "is the package" in str(result.exception)
