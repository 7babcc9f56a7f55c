"""Package variants: dense grid for ilastik, planes for QuPath, and model cards that say so."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from bmz_fixtures import (
    SPECS,
    export_tiny,
    exported_3to2d,
    exported_dense_3to2d,
    exported_plane,
    tiny_trained,
)

from sparsessp_bmz.bmz import weights
from sparsessp_bmz.bmz.consumers import static_verdicts
from sparsessp_bmz.bmz.export import load_package, plan_packages
from sparsessp_bmz.bmz.variants import parse_variants
from sparsessp_bmz.errors import UserInputError

__all__ = ["exported_3to2d", "exported_dense_3to2d", "exported_plane"]  # fixtures


def _unpack(archive: Path, folder: Path) -> tuple[dict, Path]:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)
    return yaml.safe_load((folder / "rdf.yaml").read_text()), folder


def _run_all_formats(folder: Path, rdf: dict, x: np.ndarray) -> list[np.ndarray]:
    """The package's three weight formats on `x`, each as a consumer would run it."""
    traced = torch.jit.load(str(folder / weights.TORCHSCRIPT_FILE))
    session = onnxruntime.InferenceSession(str(folder / weights.ONNX_FILE))
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    net = weights.load_architecture(folder / architecture["source"], architecture["kwargs"])
    net.load_state_dict(torch.load(folder / weights.STATE_DICT_FILE, weights_only=True))
    with torch.no_grad():
        outputs = [traced(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)).numpy()]
    outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    return outputs


def test_dense_grid_package_output_has_the_input_shape_at_two_sizes(
    exported_dense_3to2d: Path, tmp_path: Path
):
    rdf, folder = _unpack(exported_dense_3to2d, tmp_path)
    depth = SPECS["3to2d"].patch[0]  # the target-grid depth this topology folds into channels
    assert rdf["inputs"][0]["axes"][2]["size"] == depth
    for shape in ((depth, 32, 32), (depth, 48, 64)):
        x = np.random.default_rng(0).normal(size=(1, 1, *shape)).astype(np.float32)
        for output in _run_all_formats(folder, rdf, x):
            assert output.shape == x.shape


def test_variable_depth_dense_grid_package_keeps_the_shape_at_two_depths(tmp_path: Path):
    archive = export_tiny("3d", tmp_path / "packages", "dense")
    rdf, folder = _unpack(archive, tmp_path / "unpacked")
    step = rdf["inputs"][0]["axes"][2]["size"]["step"]
    for shape in ((2 * step, 32, 32), (3 * step, 48, 32)):
        x = np.random.default_rng(1).normal(size=(1, 1, *shape)).astype(np.float32)
        for output in _run_all_formats(folder, rdf, x):
            assert output.shape == x.shape


def test_dense_grid_package_predicts_from_every_rth_slice_only(
    exported_dense_3to2d: Path, tmp_path: Path
):
    """Slices between the kept ones do not matter: a repeated sparse stack gives the same."""
    rdf, folder = _unpack(exported_dense_3to2d, tmp_path)
    r = SPECS["3to2d"].ratio
    dense = np.random.default_rng(2).normal(size=(1, 1, 8, 32, 32)).astype(np.float32)
    repeated = np.repeat(dense[:, :, ::r], r, axis=2)
    first = _run_all_formats(folder, rdf, dense)[0]
    second = _run_all_formats(folder, rdf, repeated)[0]
    np.testing.assert_array_equal(first, second)
    raw = tiny_trained("3to2d").net(torch.from_numpy(dense[:, :, ::r])).detach().numpy()
    gain, offset = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["display"]
    np.testing.assert_allclose(first, raw * gain + offset, rtol=1e-4, atol=1e-5)


def test_dense_grid_output_is_scaled_for_display_and_invertible(
    exported_dense_3to2d: Path, tmp_path: Path
):
    rdf, folder = _unpack(exported_dense_3to2d, tmp_path)
    output = rdf["outputs"][0]
    assert "postprocessing" not in output  # the map is inside the network: no op to misread
    display = rdf["config"]["sparsessp"]["display_scale"]
    low, high = display["low"], display["high"]
    gain, offset = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["display"]
    assert gain == pytest.approx(1 / (high - low)) and offset == pytest.approx(-low / (high - low))
    # the RDF says how values convert back: physical (z-score) = value * scale + offset
    assert output["data"]["scale"] == pytest.approx(high - low)
    assert output["data"]["offset"] == pytest.approx(low)
    test_output = np.load(folder / "test_output.npy")
    inside = np.mean((test_output >= 0) & (test_output <= 1))
    assert inside == pytest.approx(display["inside_0_1"]) and inside > 0.99
    # undoing the map gives the network's own z-scored prediction back
    test_input = np.load(folder / "test_input.npy")
    r = SPECS["3to2d"].ratio
    raw = tiny_trained("3to2d").net(torch.from_numpy(test_input[:, :, ::r])).detach().numpy()
    np.testing.assert_allclose(test_output * (high - low) + low, raw, rtol=1e-4, atol=1e-4)


def test_plane_package_has_2d_axes_and_runs_at_two_sizes(exported_plane: Path, tmp_path: Path):
    rdf, folder = _unpack(exported_plane, tmp_path)
    for tensor in rdf["inputs"] + rdf["outputs"]:
        assert [a.get("id", a["type"]) for a in tensor["axes"]] == ["batch", "channel", "y", "x"]
    assert rdf["id"] == "sparsessp-dna-r1-2d-plane"
    for shape in ((32, 32), (64, 48)):
        x = np.random.default_rng(3).normal(size=(1, 1, *shape)).astype(np.float32)
        for output in _run_all_formats(folder, rdf, x):
            assert output.shape == x.shape


def _card_table(archive: Path) -> dict[str, bool]:
    card = zipfile.ZipFile(archive).read("README.md").decode()
    rows = re.findall(r"^\| (deepImageJ|ilastik|QuPath) \| (yes|\*\*no\*\*)", card, re.MULTILINE)
    return {name: answer == "yes" for name, answer in rows}


@pytest.mark.parametrize(
    ("fixture", "ilastik", "qupath"),
    [
        ("exported_3to2d", False, False),
        ("exported_dense_3to2d", True, False),
        ("exported_plane", True, True),
    ],
)
def test_model_card_consumer_table_matches_the_checks(
    fixture: str, ilastik: bool, qupath: bool, request: pytest.FixtureRequest
):
    archive: Path = request.getfixturevalue(fixture)
    with zipfile.ZipFile(archive) as opened:
        rdf = yaml.safe_load(opened.read("rdf.yaml"))
        verdicts = static_verdicts(rdf, opened.read)
    table = _card_table(archive)
    assert table == {v.name: v.accepted for v in verdicts}
    assert table == {"deepImageJ": True, "ilastik": ilastik, "QuPath": qupath}


def test_a_variant_that_does_not_fit_the_model_is_refused_before_any_work():
    with pytest.raises(UserInputError, match="volume model and cannot be exported as plane"):
        plan_packages(tiny_trained("3to2d"), ("plane",))
    with pytest.raises(UserInputError, match="plane model and cannot be exported as dense"):
        plan_packages(tiny_trained("plane"), ("dense",))
    with pytest.raises(UserInputError, match="unknown variant"):
        parse_variants("standard,banana")
    planned = plan_packages(tiny_trained("3to2d"), parse_variants("standard, dense"))
    assert [p.package_id for p in planned] == [
        "sparsessp-dna-r2-3to2d",
        "sparsessp-dna-r2-3to2d-dense",
    ]


@pytest.mark.parametrize(
    ("fixture", "model"),
    [
        ("exported_3to2d", "3to2d"),
        ("exported_dense_3to2d", "3to2d"),
        ("exported_plane", "plane"),
    ],
)
def test_load_package_gives_back_the_exported_network(
    fixture: str, model: str, request: pytest.FixtureRequest
):
    loaded = load_package(request.getfixturevalue(fixture))
    original = tiny_trained(model)
    assert loaded.spec == original.spec and loaded.voxel_size_um == original.voxel_size_um
    ours, theirs = loaded.net.state_dict(), original.net.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    assert loaded.facts.epoch == original.facts.epoch
