"""deepImageJ checks and the validate/export commands on broken packages and checkpoints."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from bmz_fixtures import SPECS, exported_3to2d
from typer.testing import CliRunner

from sparsessp_bmz.bmz import deepimagej
from sparsessp_bmz.bmz.checks import CheckResult
from sparsessp_bmz.cli import app

__all__ = ["exported_3to2d"]  # fixtures


@pytest.fixture
def rdf(exported_3to2d: Path) -> dict:
    return yaml.safe_load(zipfile.ZipFile(exported_3to2d).read("rdf.yaml"))


def _reader(zip_path: Path):
    return lambda name: zipfile.ZipFile(zip_path).read(name)


def _failed(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.passed}


def test_our_package_passes_every_deepimagej_check(rdf: dict, exported_3to2d: Path):
    assert _failed(deepimagej.run_checks(rdf, _reader(exported_3to2d))) == set()


def test_mapping_documentation_and_covers_are_caught(rdf: dict):
    rdf["documentation"] = {"source": "README.md", "sha256": "0" * 64}
    rdf["covers"] = [{"source": "cover.png"}]
    result = deepimagej.check_plain_strings(rdf)
    assert not result.passed and "documentation" in result.message and "covers" in result.message


def test_missing_id_and_nickname_is_caught(rdf: dict):
    rdf.pop("id")
    del rdf["config"]["bioimageio"]["nickname"]
    assert not deepimagej.check_identity(rdf).passed
    rdf["config"]["bioimageio"]["nickname"] = "brave-cell"
    assert deepimagej.check_identity(rdf).passed


@pytest.mark.parametrize(
    ("input_scale", "output_scale", "offset"), [(2.0, 2.0, 0), (4.0, 2.0, 1), (1.0, 1.0, -2)]
)
def test_size_references_deepimagej_computes_differently_are_caught(
    rdf: dict, input_scale: float, output_scale: float, offset: int
):
    rdf["inputs"][0]["axes"][2]["scale"] = input_scale
    z_out = rdf["outputs"][0]["axes"][2]
    z_out["scale"] = output_scale
    z_out["size"]["offset"] = offset
    assert not deepimagej.check_size_references(rdf).passed


def test_preprocessing_deepimagej_lacks_is_caught(rdf: dict):
    rdf["inputs"][0]["preprocessing"].append({"id": "scale_mean_variance", "kwargs": {}})
    result = deepimagej.check_preprocessing(rdf)
    assert not result.passed and "scale_mean_variance" in result.message


def test_multi_letter_axis_ids_and_tiling_off_are_caught(rdf: dict):
    rdf["inputs"][0]["axes"][2]["id"] = "depth"
    rdf["config"]["deepimagej"]["allow_tiling"] = False
    assert not deepimagej.check_axis_ids(rdf).passed
    assert not deepimagej.check_deepimagej_config(rdf).passed


class _Branching(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 4:
            return torch.nn.functional.interpolate(x, scale_factor=2.0)
        return x


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_scripted_torchscript_is_caught_and_traced_passes(rdf: dict, tmp_path: Path):
    torch.jit.script(_Branching()).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(_Branching(), torch.zeros(1, 1, 8)).save(str(tmp_path / "traced.pt"))
    entry = rdf["weights"]["torchscript"]
    for name, passes in (("scripted.pt", False), ("traced.pt", True)):
        entry["source"] = name
        result = deepimagej.check_torchscript_traced(rdf, lambda n: (tmp_path / n).read_bytes())
        assert result.passed is passes, result.message


def test_onnx_ir_version_above_8_is_caught(rdf: dict, exported_3to2d: Path):
    model = onnx.load_model_from_string(zipfile.ZipFile(exported_3to2d).read("weights.onnx"))
    model.ir_version = 9
    result = deepimagej.check_onnx(rdf, lambda name: model.SerializeToString())
    assert not result.passed and "IR version 9" in result.message


def test_validate_command_fails_a_broken_package_with_reports(exported_3to2d: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(exported_3to2d.parent / SPECS["3to2d"].model_id, broken)
    content = yaml.safe_load((broken / "rdf.yaml").read_text())
    bad = copy.deepcopy(content)
    bad["documentation"] = {"source": "README.md"}
    del bad["config"]["bioimageio"]["nickname"]
    bad.pop("id")
    torchscript = bad["weights"]["torchscript"]
    torchscript.pop("parent", None)  # one format keeps it quick; its parent format is gone
    bad["weights"] = {"torchscript": torchscript}
    (broken / "rdf.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    result = CliRunner().invoke(
        app, ["validate", str(broken), "--report-dir", str(tmp_path / "reports")]
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("FAIL ")
    records = json.loads((tmp_path / "reports" / "validation.json").read_text())
    deepimagej = next(c for c in records[0]["consumers"] if c["name"] == "deepImageJ")
    failed = {c["name"] for c in deepimagej["checks"] if not c["passed"]}
    assert failed == {"id_or_nickname", "plain_documentation_and_covers"}
    assert deepimagej["accepted"] is False
    assert [f["status"] for f in records[0]["formats"]] == ["passed"]  # deepImageJ alone fails it
    assert records[0]["passed"] is False
    assert "  deepImageJ refuses: id_or_nickname:" in result.output
    assert "id_or_nickname" in (tmp_path / "reports" / "validation.md").read_text()


def _truncated_checkpoint(path: Path) -> Path:
    torch.save({"hyper_parameters": {"format": "x"}, "state_dict": {}}, path)
    path.write_bytes(path.read_bytes()[:100])
    return path


def _incomplete_checkpoint(path: Path) -> Path:
    from sparsessp_bmz.training.checkpoint import CHECKPOINT_FORMAT

    torch.save({"hyper_parameters": {"format": CHECKPOINT_FORMAT}, "state_dict": {}}, path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [(_truncated_checkpoint, "corrupt"), (_incomplete_checkpoint, "training config")],
)
def test_corrupt_or_incomplete_checkpoint_gives_one_clear_error_and_no_package(
    tmp_path: Path, make, message: str
):
    import subprocess
    import sys

    checkpoint = make(tmp_path / "model.ckpt")
    out = tmp_path / "packages"
    cli = Path(sys.executable).with_name("sparsessp-bmz")
    done = subprocess.run(
        [str(cli), "export", str(checkpoint), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.glob("*.zip"))
