"""`predict` refuses what would harm the user's files or give a silently wrong result, before any
work: an output holding an input, package weights that differ from their rdf.yaml, an engine that
would skip a package's output scaling or run ONNX on the CPU when CUDA is asked; and it keeps
only the network of the latest window shape compiled."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from bmz_fixtures import exported_3to2d, exported_dense_3to2d
from predict_fixtures import SPEC, checkpoint
from typer.testing import CliRunner

from sparsessp_bmz import guards
from sparsessp_bmz.cli import app
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.imageio import (
    check_outputs_spare_inputs,
    remove_stale_work_folders,
    write_ome_tiff,
    write_ome_zarr,
)
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import predict_volume
from sparsessp_bmz.predict.batch import PredictOptions, Runners
from sparsessp_bmz.predict.models import PredictionModel
from sparsessp_bmz.predict.runners import WindowFn, check_engine_device
from sparsessp_bmz.trained import TrainedModel

__all__ = ["checkpoint", "exported_3to2d", "exported_dense_3to2d"]  # fixtures

runner = CliRunner()
VOXEL = (0.58, 0.29, 0.29)


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def stack(path: Path) -> Path:
    data = np.random.default_rng(0).normal(size=(4, 32, 48)).astype(np.float32)
    (write_ome_zarr if path.name.endswith(".zarr") else write_ome_tiff)(path, data, VOXEL)
    return path


def test_an_ome_zarr_output_holding_the_input_is_refused_and_the_input_kept(
    tmp_path: Path, checkpoint: Path
) -> None:
    container = tmp_path / "cont.ome.zarr"
    inner = stack(container / "inner.ome.zarr")
    result = invoke("predict", checkpoint, inner, container)
    assert result.exit_code != 0
    assert "holds the INPUT" in str(result.exception)
    assert (inner / ".zattrs").is_file()


def test_an_output_inside_the_package_folder_is_refused(
    tmp_path: Path, exported_3to2d: Path
) -> None:
    folder = tmp_path / "package"
    with zipfile.ZipFile(exported_3to2d) as archive:
        archive.extractall(folder)
    tl = stack(tmp_path / "tl.ome.tif")
    result = invoke("predict", folder, tl, folder / "prediction.ome.tif")
    assert result.exit_code != 0
    assert "lies inside the package" in str(result.exception)


@pytest.fixture
def package_folder(tmp_path: Path, exported_3to2d: Path) -> Path:
    folder = tmp_path / "package"
    with zipfile.ZipFile(exported_3to2d) as archive:
        archive.extractall(folder)
    return folder


@pytest.mark.parametrize(
    ("weights", "damage"),
    [
        ("weights_torchscript.pt", "tamper"),
        ("weights.onnx", "truncate"),
        ("weights.pt", "delete"),
    ],
)
def test_package_weights_that_differ_from_their_sha256_stop_the_call_once(
    tmp_path: Path, package_folder: Path, weights: str, damage: str
) -> None:
    path = package_folder / weights
    data = path.read_bytes()
    if damage == "tamper":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    tl = stack(tmp_path / "plate" / "a.ome.tif")
    stack(tmp_path / "plate" / "b.ome.tif")
    engine = "onnx" if weights.endswith(".onnx") else "torchscript"
    result = invoke("predict", package_folder, tl.parent, tmp_path / "out", "--engine", engine)
    assert isinstance(result.exception, UserInputError), result.output
    assert weights in str(result.exception)
    assert "again" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_an_eager_engine_on_a_dense_grid_package_is_refused(
    tmp_path: Path, exported_dense_3to2d: Path
) -> None:
    tl = stack(tmp_path / "tl.ome.tif")
    out = tmp_path / "p.ome.tif"
    for engine in ("eager", "bf16"):
        result = invoke("predict", exported_dense_3to2d, tl, out, "--engine", engine)
        assert isinstance(result.exception, UserInputError), result.output
        assert "output scaling" in str(result.exception)
    assert not out.exists()


def test_onnx_on_cuda_without_a_cuda_provider_is_refused() -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime runs on CUDA")
    with pytest.raises(UserInputError, match="onnxruntime-gpu"):
        check_engine_device("onnx", torch.device("cuda"))
    check_engine_device("torchscript", torch.device("cuda"))


class CountingModel(PredictionModel):
    """A checkpoint model that counts its open runners (real eager runners underneath)."""

    open_runners: list[tuple[int, int, int]]

    @contextlib.contextmanager
    def runner(self, input_window, **kwargs) -> Iterator[WindowFn]:  # type: ignore[no-untyped-def,override]
        self.open_runners.append(input_window)
        with super().runner(input_window, **kwargs) as run:
            yield run
        self.open_runners.remove(input_window)


def test_runners_keep_only_the_network_of_the_latest_window_shape() -> None:
    torch.manual_seed(0)
    model = CountingModel(TrainedModel(spec=SPEC, net=build_net(SPEC).eval()), Path("x"))
    object.__setattr__(model, "open_runners", [])
    runners = Runners(model, PredictOptions(engine="eager"))
    with runners.stack:
        first = runners((2, 16, 16))
        assert runners((2, 16, 16)) is first
        runners((2, 16, 32))
        runners((2, 32, 16))
        assert model.open_runners == [(2, 32, 16)]
    assert model.open_runners == []


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_killed_runs_work_folders_are_removed_and_a_moved_aside_image_put_back(
    tmp_path: Path,
) -> None:
    import os
    import socket

    image = tmp_path / "p.ome.zarr"
    host = socket.gethostname()

    def leftover(owner: str, kind: str) -> Path:
        return stack(tmp_path / "made.ome.zarr").rename(tmp_path / f".p.ome.zarr.{owner}.{kind}")

    earlier = leftover(f"{dead_pid()}@{host}", "old")
    killed = leftover(f"{dead_pid()}@{host}", "partial")
    live = leftover(f"{os.getppid()}@{host}", "partial")
    elsewhere = leftover(f"{dead_pid()}@another-host", "partial")
    remove_stale_work_folders(image)
    assert (image / ".zattrs").is_file() and not earlier.exists()
    assert not killed.exists()
    assert live.exists() and elsewhere.exists()


def test_a_manifest_row_with_a_missing_image_fails_alone_and_targets_are_not_needed(
    tmp_path: Path, checkpoint: Path
) -> None:
    stack(tmp_path / "in" / "a.ome.tif")
    stack(tmp_path / "in" / "c.ome.tif")
    manifest = tmp_path / "plate.csv"
    manifest.write_text(
        "path_signal,path_target\n"
        "in/a.ome.tif,in/a.ome.tif\n"
        "in/gone.ome.tif,in/gone_target.ome.tif\n"
        "in/c.ome.tif,in/no_target.ome.tif\n"
    )
    result = invoke("predict", checkpoint, manifest, tmp_path / "out", "--engine", "eager")
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.ome.tif", "c.ome.tif"]
    assert "does not exist" in " ".join(result.output.split())
    assert "2 written, 0 skipped, 1 failed" in result.output


def test_many_outputs_are_checked_against_many_inputs_in_one_pass(tmp_path: Path) -> None:
    inputs = [tmp_path / "plate" / f"f{i}.ome.tif" for i in range(2000)]
    outputs = [tmp_path / "out" / f"f{i}.ome.tif" for i in range(2000)]
    check_outputs_spare_inputs(outputs, inputs)
    with pytest.raises(UserInputError, match="holds the INPUT"):
        check_outputs_spare_inputs([*outputs, tmp_path / "plate"], inputs)
    with pytest.raises(UserInputError, match="is the INPUT"):
        check_outputs_spare_inputs([*outputs, inputs[-1]], inputs)


def test_the_memory_guard_counts_what_prediction_holds_not_the_old_output_sized_arrays() -> None:
    torch.manual_seed(0)
    net = build_net(SPEC).eval()
    volume = np.random.default_rng(0).normal(size=(4, 256, 512)).astype(np.float32)
    # input 2 MiB + output 4 MiB + activations of one 8x32x32 window (about 5 MB) fit in 14 MB;
    # the old estimate (two input-sized and three output-sized arrays) asked for 16.8 MB
    with guards.memory_limit_option(0.014):
        out = predict_volume(net, SPEC, volume, overlap=0.0, batch_size=1, window=(8, 32, 32))
    assert out.shape == (8, 256, 512)
    with (
        guards.memory_limit_option(0.014),
        pytest.raises(UserInputError, match="needs about"),
    ):  # a batch of 8 windows holds 8 times the activations
        predict_volume(net, SPEC, volume, overlap=0.0, batch_size=8, window=(8, 32, 32))
