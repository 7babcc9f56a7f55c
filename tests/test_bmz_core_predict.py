"""Whole-field prediction of exported packages with bioimageio.core, as the model cards advise.

Every model card tells bioimageio.core users to predict blockwise. These tests run the exported
packages (shared session fixtures, so the exports cost nothing extra in a full run) on a whole
simulated field larger than the training window and compare with the project's own whole-field
prediction, `predict_volume` (Gaussian-blended sliding window) on the same z-scored field.

What bioimageio.core 0.11 does (read from its source and measured here):

- `predict(..., blocksize_parameter=n)` z-scores the *whole* sample first (the package's
  `zero_mean_unit_variance` is a sample-wise op), then cuts blocks of `min + n * step` voxels per
  parameterized axis (y/x: 32 + 16 n; the fixed z of a fixed-depth net: its training depth),
  pads each by the output halo (8 in y/x), predicts and crops the halo: no blending. Blocks tile
  z as well, so a fixed-depth package predicts a field of any depth >= the training depth.
- `blocksize_parameter=None` feeds the whole field: fine where the field fits the network (a
  fixed-depth net at exactly its training depth; the 3d net at any multiple of its depth step),
  a torch error for a fixed-depth net at another depth.
- `blocksize_parameter=0` means the default 10 (`ns or default`), not the smallest block.
- A bare numpy array is matched to the input axes with their size rules, so a y/x size that is
  not 32 + 16 k is refused even with blocking; a `Tensor` with named dims is not checked and
  blocks fine (edge blocks are padded).
- The `bioimageio predict` CLI parses `--blockwise 1` as `True`, i.e. block size parameter 10
  (192 x 192 y/x blocks), which refuses fields smaller than that; `--blockwise 2` is n = 2.

The networks are the seeded tiny ones of bmz_fixtures (untrained weights, trained-like
BatchNorm statistics). Window-to-window agreement is a property of the weights, so z seams of an
untrained fixed-depth net are checked by placement (each block where it belongs), not against
the blended prediction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bmz_fixtures import (
    exported_3d,
    exported_3to2d,
    exported_dense_3to2d,
    synthetic_volume,
    tiny_trained,
)

from sparsessp_bmz.metrics import image_metrics
from sparsessp_bmz.predict import ZMUV_EPS, predict_volume, zscore_window
from sparsessp_bmz.trained import TrainedModel

__all__ = ["exported_3d", "exported_3to2d", "exported_dense_3to2d"]  # fixtures

#: The package's input axes, in the order the arrays below have them.
DIMS = ("batch", "channel", "z", "y", "x")
#: bioimageio.core crops a halo and does not blend, predict_volume blends Gaussian windows of the
#: training size: they differ near tile seams only. Measured on these fields: R^2 0.996-0.998.
MIN_R2 = 0.99
#: A field wider than the training window (32 x 32) in y and x, valid for a bare numpy input.
HEIGHT, WIDTH = 96, 128


def _raw_tl(dense_depth: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 1):
    """A dense TL stack in camera-like units (offset and gain), so z-scoring matters."""
    tl, _ = synthetic_volume(depth=dense_depth, size=max(height, width), seed=seed)
    return (tl[:, :height, :width] * 300.0 + 1000.0).astype(np.float32)


def _r2(prediction: np.ndarray, reference: np.ndarray) -> float:
    return image_metrics(prediction, reference).r2


def _core(model, image: np.ndarray, n: int | None, *, as_tensor: bool = True):
    """bioimageio.core's prediction of a (z, y, x) `image`: (b, c, z, y, x) array, seconds."""
    from bioimageio.core import Tensor, predict

    inputs = image[None, None]
    if as_tensor:
        inputs = Tensor(inputs, dims=DIMS)
    start = time.perf_counter()
    sample = predict(model=model, inputs=inputs, blocksize_parameter=n)
    seconds = time.perf_counter() - start
    (output,) = sample.members.values()
    return output.data.to_numpy(), seconds


def _report(name: str, r2: float, seconds: float) -> None:
    print(f"{name}: R2 {r2:.5f}, {seconds:.2f} s")


@pytest.fixture(scope="module")
def model_3to2d(exported_3to2d: Path):
    from bioimageio.core import load_model_description

    return load_model_description(exported_3to2d)


@pytest.fixture(scope="module")
def model_3d(exported_3d: Path):
    from bioimageio.core import load_model_description

    return load_model_description(exported_3d)


@pytest.fixture(scope="module")
def model_dense(exported_dense_3to2d: Path):
    from bioimageio.core import load_model_description

    return load_model_description(exported_dense_3to2d)


def _ours(trained: TrainedModel, sparse_raw: np.ndarray) -> np.ndarray:
    """predict_volume on the field z-scored as a whole, as the package's preprocessing does."""
    return predict_volume(trained.net, trained.spec, zscore_window(sparse_raw))


# --- fixed depth (3to2d): the card's blocking advice -------------------------------------------


@pytest.fixture(scope="module")
def field_3to2d() -> tuple[np.ndarray, np.ndarray]:
    """A sparse field at the training depth (4 x 96 x 128) and predict_volume's prediction."""
    trained = tiny_trained("3to2d")
    sparse = _raw_tl(2 * trained.spec.input_patch[0])[:: trained.spec.ratio]
    return sparse, _ours(trained, sparse)


@pytest.mark.parametrize("n", [1, 2, None])
def test_fixed_depth_package_predicts_a_whole_field_like_predict_volume(
    model_3to2d, field_3to2d, n: int | None
):
    """Blocked (n = 1, 2) and, at exactly the training depth, also unblocked: same prediction."""
    sparse, ours = field_3to2d
    out, seconds = _core(model_3to2d, sparse, n, as_tensor=False)  # a bare array, as the card says
    assert out.shape == (1, 1, 2 * sparse.shape[0], HEIGHT, WIDTH)
    assert np.isfinite(out).all()
    r2 = _r2(out[0, 0], ours)
    _report(f"3to2d {sparse.shape} blocksize_parameter={n} vs predict_volume", r2, seconds)
    assert r2 > MIN_R2


def test_fixed_depth_package_needs_blocking_for_a_field_of_another_depth(model_3to2d):
    """6 sparse slices (training depth 4): the whole-field call fails inside torch; blocked, z is
    tiled too ([0, 4) and [2, 6), the later block overwriting) and each block's r-times-deeper
    output lands at r times its input position."""
    trained = tiny_trained("3to2d")
    r, depth = trained.spec.ratio, trained.spec.input_patch[0]
    sparse = _raw_tl(2 * 6)[::r]
    with pytest.raises(RuntimeError, match="channels"):
        _core(model_3to2d, sparse, None)

    out, seconds = _core(model_3to2d, sparse, 1)
    assert out.shape == (1, 1, r * 6, HEIGHT, WIDTH)
    field = zscore_window(sparse)
    first = predict_volume(trained.net, trained.spec, field[:depth])
    last = predict_volume(trained.net, trained.spec, field[6 - depth :])
    r2_first = _r2(out[0, 0, : r * (6 - depth)], first[: r * (6 - depth)])
    r2_last = _r2(out[0, 0, r * (6 - depth) :], last)
    blended = _r2(out[0, 0], predict_volume(trained.net, trained.spec, field))
    _report("3to2d depth 6, n=1, first z block vs its window", r2_first, seconds)
    _report("3to2d depth 6, n=1, last z block vs its window", r2_last, seconds)
    _report("3to2d depth 6, n=1 vs blended predict_volume (untrained z seams)", blended, seconds)
    assert r2_first > MIN_R2
    assert r2_last > MIN_R2


def test_blocking_needs_a_tensor_for_a_field_whose_yx_is_not_32_plus_16k(model_3to2d):
    """100 x 130 fits no input size: a bare array is refused even blockwise; a Tensor with named
    dims blocks fine (edge blocks padded)."""
    trained = tiny_trained("3to2d")
    sparse = _raw_tl(2 * trained.spec.input_patch[0], 100, 130)[:: trained.spec.ratio]
    with pytest.raises(ValueError, match="does not map to axes"):
        _core(model_3to2d, sparse, 1, as_tensor=False)

    out, seconds = _core(model_3to2d, sparse, 1)
    assert out.shape == (1, 1, 2 * sparse.shape[0], 100, 130)
    r2 = _r2(out[0, 0], _ours(trained, sparse))
    _report("3to2d (4, 100, 130) Tensor, n=1 vs predict_volume", r2, seconds)
    assert r2 > MIN_R2


def test_blocksize_parameter_zero_is_the_default_ten_not_the_smallest_block(model_3to2d):
    sparse = _raw_tl(8)[::2]
    with pytest.raises(ValueError, match=r"smaller than block shape .*'y': 192"):
        _core(model_3to2d, sparse, 0)


# --- variable depth (3d) -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [None, 1, 2])
def test_variable_depth_package_predicts_a_whole_field_like_predict_volume(model_3d, n):
    """12 sparse slices (depth step 4, training depth 4): whole field and blocks of 8 (n = 1,
    z blocks [0, 8) and [4, 12)) or 12 (n = 2) slices."""
    trained = tiny_trained("3d")
    sparse = _raw_tl(24)[:: trained.spec.ratio]
    out, seconds = _core(model_3d, sparse, n)
    assert out.shape == (1, 1, 24, HEIGHT, WIDTH)
    r2 = _r2(out[0, 0], _ours(trained, sparse))
    _report(f"3d {sparse.shape} blocksize_parameter={n} vs predict_volume", r2, seconds)
    assert r2 > MIN_R2


def test_variable_depth_blocks_must_fit_in_the_field(model_3d):
    """A block is min + n * step deep (n = 2: 12 slices): a shallower field is refused."""
    sparse = _raw_tl(16)[::2]
    with pytest.raises(ValueError, match="smaller than block shape"):
        _core(model_3d, sparse, 2)


# --- dense grid (ilastik variant) --------------------------------------------------------------


def _display_scale(model) -> tuple[float, float]:
    """(gain, offset) of the 0..1 map inside the dense-grid network, checked against what the
    RDF states (config.sparsessp and the output's data.scale/offset, the inverse map)."""
    kwargs = model.weights.pytorch_state_dict.architecture.kwargs
    gain, offset = kwargs["display"]
    stated = model.config.sparsessp["display_scale"]  # type: ignore[union-attr]
    low, high = stated["low"], stated["high"]
    assert gain == pytest.approx(1 / (high - low), rel=1e-6)
    assert offset == pytest.approx(-low / (high - low), rel=1e-6, abs=1e-9)
    data = model.outputs[0].data
    assert data.scale == pytest.approx(high - low) and data.offset == pytest.approx(low)
    return gain, offset


@pytest.mark.parametrize("n", [None, 1, 2])
def test_dense_grid_package_predicts_a_whole_field_like_predict_volume(model_dense, n):
    """Input on the target z grid (8 x 96 x 128), output the same shape; undoing the display
    scaling gives predict_volume on slices 0, r, ... z-scored with the *dense* stack's
    statistics (the package normalises what it is given, then keeps every r-th slice)."""
    trained = tiny_trained("3to2d")
    r = trained.spec.ratio
    dense = _raw_tl(r * trained.spec.input_patch[0])
    mean, std = dense.mean(dtype=np.float64), dense.std(dtype=np.float64)
    sparse = ((dense[::r] - mean) / (std + ZMUV_EPS)).astype(np.float32)
    ours = predict_volume(trained.net, trained.spec, sparse)

    out, seconds = _core(model_dense, dense, n)
    assert out.shape == (1, 1, *dense.shape)
    gain, offset = _display_scale(model_dense)
    r2 = _r2((out[0, 0] - offset) / gain, ours)
    _report(f"dense {dense.shape} blocksize_parameter={n} vs predict_volume", r2, seconds)
    assert r2 > MIN_R2


# --- the CLI the card quotes -------------------------------------------------------------------


def _cli(archive: Path, image: Path, out: Path, blockwise: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bioimageio.core", "predict", str(archive)]
    command += ["--inputs", str(image), "--blockwise", blockwise]
    command += ["--outputs", str(out / "{sample_id}.tif")]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_cli_blockwise_1_is_true_so_blocks_of_192_and_blockwise_2_works(
    exported_3to2d: Path, model_3to2d, tmp_path: Path
):
    """`--blockwise 1` is parsed as `True` (block size parameter 10: 192 x 192 in y/x), which
    refuses a 96 x 128 field; `--blockwise 2` blocks it and matches the Python call."""
    import tifffile

    sparse = _raw_tl(8)[::2]
    image = tmp_path / "stack.tif"
    tifffile.imwrite(image, sparse)

    one = _cli(exported_3to2d, image, tmp_path / "one", "1")
    assert one.returncode != 0
    assert "smaller than block shape" in one.stderr
    assert "'y': 192" in one.stderr

    two = _cli(exported_3to2d, image, tmp_path / "two", "2")
    assert two.returncode == 0, two.stderr[-2000:]
    (written,) = (tmp_path / "two").glob("*.tif")
    cli_out = np.squeeze(tifffile.imread(written))
    python_out, _ = _core(model_3to2d, sparse, 2)
    assert cli_out.shape == (8, HEIGHT, WIDTH)
    np.testing.assert_allclose(cli_out, python_out[0, 0], rtol=1e-5, atol=1e-5)
