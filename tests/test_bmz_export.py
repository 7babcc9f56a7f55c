"""Exported packages: pass bioimageio.core, run at other sizes, re-export to identical bytes."""

from __future__ import annotations

import json
import subprocess
import sys
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
    exported_3d,
    exported_3to2d,
    synthetic_volume,
    tiny_trained,
)

from sparsessp_bmz.bmz import axes, package, weights
from sparsessp_bmz.bmz.netsource import write_network_source
from sparsessp_bmz.bmz.testdata import predict
from sparsessp_bmz.bmz.validate import FormatResult, PackageReport, validate_package

__all__ = ["exported_3d", "exported_3to2d"]  # fixtures

BIOIMAGEIO = Path(sys.executable).with_name("bioimageio")


def _bioimageio_test(zip_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIOIMAGEIO), "test", str(zip_path)], capture_output=True, text=True, check=False
    )


@pytest.mark.slow  # the default run has the stricter test_bmz_standalone (project unimportable)
def test_package_passes_the_bioimageio_test_cli_for_every_weight_format(exported_3to2d: Path):
    done = _bioimageio_test(exported_3to2d)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for fmt in ("onnx", "pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in done.stdout or (
            f"weights.{fmt}" in done.stdout
        )


@pytest.mark.slow
def test_variable_depth_package_passes_the_bioimageio_test_cli(exported_3d: Path):
    done = _bioimageio_test(exported_3d)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_export_places_folder_zip_report_and_index(exported_3to2d: Path):
    out = exported_3to2d.parent
    model_id = SPECS["3to2d"].model_id
    assert exported_3to2d.name == f"{model_id}.zip"
    assert (out / model_id / "rdf.yaml").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    index = json.loads((out / "index.json").read_text())["packages"]
    assert [(e["id"], e["ratio"], e["topology"], e["validation"]) for e in index] == [
        (model_id, 2, "3to2d", "passed")
    ]
    assert model_id in (out / "index.md").read_text()


def test_rdf_is_written_in_the_dialect_deepimagej_reads(exported_3to2d: Path):
    rdf = yaml.safe_load(zipfile.ZipFile(exported_3to2d).read("rdf.yaml"))
    assert rdf["format_version"] == "0.5.10"
    assert rdf["documentation"] == "README.md" and rdf["covers"] == ["cover.png"]
    assert rdf["id"] == rdf["config"]["bioimageio"]["nickname"] == SPECS["3to2d"].model_id
    assert rdf["config"]["deepimagej"] == {"allow_tiling": True, "pyramidal_model": False}
    assert "github_user" not in json.dumps(rdf)
    z_in = rdf["inputs"][0]["axes"][2]
    z_out = rdf["outputs"][0]["axes"][2]
    assert (z_in["scale"], z_out["scale"], z_out["size"]["offset"]) == (4.0, 2.0, 0)
    weights = rdf["weights"]
    assert weights["torchscript"]["parent"] == weights["onnx"]["parent"] == "pytorch_state_dict"
    architecture = weights["pytorch_state_dict"]["architecture"]
    assert architecture["source"] == "sparsessp_net.py" and "import_from" not in architecture
    assert architecture["kwargs"]["variant"] == "standard"
    for absent in ("maintainers", "links", "git_repo", "training_data"):  # no nulls
        assert absent not in rdf
    assert all(None not in entry.values() for entry in rdf["cite"])


def test_cover_is_a_small_png(exported_3to2d: Path):
    cover = zipfile.ZipFile(exported_3to2d).read("cover.png")
    assert cover.startswith(b"\x89PNG") and len(cover) < 500 * 1024


def test_model_card_has_a_validation_section_and_voxel_sizes(exported_3to2d: Path):
    card = zipfile.ZipFile(exported_3to2d).read("README.md").decode()
    assert "## Validation" in card and "0.58 x 0.29 x 0.29" in card
    # the consumer table comes from the checks: this 3D package is for neither ilastik nor QuPath
    assert "| QuPath | **no**" in card and "| ilastik | **no**" in card
    assert "| deepImageJ | yes" in card


def test_reexport_of_the_same_model_is_byte_identical(exported_3to2d: Path, tmp_path: Path):
    trained = tiny_trained("3to2d")
    tl, target = synthetic_volume()
    tensors = package.tensors_for(trained, tl[::2], target)
    folder = tmp_path / trained.spec.model_id
    folder.mkdir()
    package.build_folder(trained, "standard", folder, tensors)
    again = package.zip_folder(folder, tmp_path / "again.zip")
    first = zipfile.ZipFile(exported_3to2d)
    second = zipfile.ZipFile(again)
    assert first.namelist() == second.namelist()
    for name in first.namelist():
        assert first.read(name) == second.read(name), name
    assert exported_3to2d.read_bytes() == again.read_bytes()


def _weights_of(
    zip_path: Path, tmp_path: Path
) -> tuple[torch.jit.ScriptModule, onnxruntime.InferenceSession]:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path)
    traced = torch.jit.load(str(tmp_path / weights.TORCHSCRIPT_FILE))
    session = onnxruntime.InferenceSession(str(tmp_path / weights.ONNX_FILE))
    return traced, session


def _assert_agree(trained, traced, session, shape: tuple[int, int, int]) -> None:
    x = np.random.default_rng(1).normal(size=(1, 1, *shape)).astype(np.float32)
    with torch.no_grad():
        eager = trained.net(torch.from_numpy(x)).numpy()
        scripted = traced(torch.from_numpy(x)).numpy()
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert eager.shape == (1, 1, trained.spec.ratio * shape[0], *shape[1:])
    np.testing.assert_allclose(scripted, eager, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_out, eager, rtol=1e-4, atol=1e-5)


def test_fixed_depth_torchscript_and_onnx_agree_with_eager_at_other_yx(
    exported_3to2d: Path, tmp_path: Path
):
    traced, session = _weights_of(exported_3to2d, tmp_path)
    _assert_agree(tiny_trained("3to2d"), traced, session, (4, 48, 64))


def test_variable_depth_torchscript_and_onnx_agree_with_eager_at_other_sizes(tmp_path: Path):
    trained = tiny_trained("3d")
    example = np.random.default_rng(2).normal(size=(1, 1, 4, 32, 32)).astype(np.float32)
    state = weights.write_state_dict(trained.net, tmp_path)
    source = write_network_source(tmp_path)
    kwargs = {**trained.spec.model_dump(mode="json"), "variant": "standard"}
    traced_path = weights.write_torchscript(source, kwargs, state, example, tmp_path)
    dynamic = axes.dynamic_axes(trained.spec, "standard")
    onnx_path = weights.write_onnx(trained.net, example, tmp_path, dynamic_axes=dynamic)
    traced = torch.jit.load(str(traced_path))
    session = onnxruntime.InferenceSession(str(onnx_path))
    for shape in ((4, 64, 32), (8, 32, 48), (12, 48, 48)):
        _assert_agree(trained, traced, session, shape)


def test_test_output_is_the_eval_network_on_the_test_input(exported_3to2d: Path, tmp_path: Path):
    with zipfile.ZipFile(exported_3to2d) as archive:
        archive.extractall(tmp_path)
    test_input = np.load(tmp_path / "test_input.npy")
    expected = predict(tiny_trained("3to2d").net, test_input[0, 0])
    np.testing.assert_array_equal(np.load(tmp_path / "test_output.npy")[0, 0], expected)
    assert test_input.shape == (1, 1, 4, 32, 32)


def _failing_report(path: Path) -> PackageReport:
    return PackageReport(
        source=str(path),
        model_id=SPECS["3to2d"].model_id,
        formats=[FormatResult(weight_format="onnx", status="failed", errors=["boom"], seconds=0)],
    )


def _assert_nothing_placed(out: Path, model_id: str) -> None:
    """Neither the folder nor the zip of a failed package, and no leftover temporary folder."""
    assert not (out / model_id).exists() and not (out / f"{model_id}.zip").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def _export_failing_validation(out: Path, nothing_placed: bool = True) -> str:
    """Export a tiny 3to2d model that must fail validation; check nothing was placed."""
    trained = tiny_trained("3to2d")
    tl, target = synthetic_volume()
    with pytest.raises(package.ExportFailedError, match="failed validation"):
        package.export_trained(trained, out, test_input=tl[::2], test_target=target)
    if nothing_placed:
        _assert_nothing_placed(out, trained.spec.model_id)
    return trained.spec.model_id


def test_failed_validation_leaves_no_package_but_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(package, "validate_package", _failing_report)
    model_id = _export_failing_validation(tmp_path)
    assert "boom" in (tmp_path / "reports" / f"{model_id}.failed.md").read_text()
    assert json.loads((tmp_path / "index.json").read_text())["packages"] == []


def test_a_failed_reexport_keeps_the_placed_package_and_its_passed_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    archive = export_tiny("3to2d", tmp_path)
    placed = archive.read_bytes()
    monkeypatch.setattr(package, "validate_package", _failing_report)
    model_id = _export_failing_validation(tmp_path, nothing_placed=False)
    assert archive.read_bytes() == placed
    index = json.loads((tmp_path / "index.json").read_text())["packages"]
    assert [(e["id"], e["validation"]) for e in index] == [(model_id, "passed")]
    assert "boom" in (tmp_path / "reports" / f"{model_id}.failed.md").read_text()


@pytest.mark.slow
def test_package_whose_test_output_is_wrong_fails_real_validation_and_is_not_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_predict = package.testdata.predict
    monkeypatch.setattr(
        package.testdata, "predict", lambda net, sparse: real_predict(net, sparse) + 1.0
    )
    model_id = _export_failing_validation(tmp_path)
    report = (tmp_path / "reports" / f"{model_id}.failed.md").read_text()
    assert "FAILED" in report and "Reproduce test outputs" in report


def test_validate_package_reads_folders_yaml_files_and_zips(exported_3to2d: Path):
    folder = exported_3to2d.parent / SPECS["3to2d"].model_id
    report = validate_package(folder / "rdf.yaml")
    assert report.passed, report.summary_line()
    assert [f.weight_format for f in report.formats] == [
        "onnx",
        "pytorch_state_dict",
        "torchscript",
    ]
    assert report.summary_line().startswith(f"PASS {SPECS['3to2d'].model_id} ")
