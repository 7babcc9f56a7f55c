"""Slab-bounded blending: the same prediction as a whole-array blend, read and handed on one band
of rows at a time, from memory or lazily from OME-Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sparsessp_bmz.imageio import (
    open_prediction_input,
    read_prediction_input,
    write_ome_tiff,
    write_ome_zarr,
)
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import (
    ArrayRows,
    gaussian_weight,
    place,
    plan_windows,
    predict_slabs,
    predict_volume,
    prediction_bytes,
    resolve_window,
    window_runs,
    x_bands,
)
from sparsessp_bmz.predict.runners import eager_runner
from sparsessp_bmz.spec import ModelSpec

SPEC = ModelSpec(
    organelle="dna", ratio=2, topology="3to2d", width=0.125, units=16, patch=(8, 32, 32)
)
WINDOW = resolve_window(SPEC, None)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_net(SPEC).eval()


def whole_array_blend(net: torch.nn.Module, volume: np.ndarray, overlap: float) -> np.ndarray:
    """The blend as it was before slabs: output-sized sum and weight arrays, every window added,
    one division at the end (the reference the slabs must reproduce)."""
    plan = plan_windows(volume.shape, WINDOW, overlap)  # type: ignore[arg-type]
    pads = [(0, p - s) for p, s in zip(plan.padded_shape, volume.shape, strict=True)]
    padded = np.pad(volume, pads, mode="reflect")
    r, (dz, dy, dx) = SPEC.ratio, WINDOW
    weight = gaussian_weight((r * dz, dy, dx))
    total = np.zeros((r * plan.padded_shape[0], *plan.padded_shape[1:]), np.float32)
    norm = np.zeros_like(total)
    for z, y, x in plan:
        with torch.no_grad():
            tile = torch.from_numpy(padded[None, None, z : z + dz, y : y + dy, x : x + dx])
            out = net(tile)[0, 0].numpy()
        total[r * z : r * (z + dz), y : y + dy, x : x + dx] += out * weight
        norm[r * z : r * (z + dz), y : y + dy, x : x + dx] += weight
    depth, height, width = volume.shape
    return (total / norm)[: r * depth, :height, :width]


@pytest.mark.parametrize("shape", [(6, 75, 50), (3, 20, 40)], ids=["many-slabs", "padded"])
def test_slab_blend_equals_the_whole_array_blend(net: torch.nn.Module, shape) -> None:
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = whole_array_blend(net, volume, overlap=0.5)
    got = predict_volume(net, SPEC, volume, overlap=0.5, batch_size=3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class RecordingRows(ArrayRows):
    """ArrayRows that remembers every block of rows and columns asked for."""

    def __init__(self, volume: np.ndarray) -> None:
        super().__init__(volume)
        object.__setattr__(self, "asked", [])

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        self.asked.append((top, bottom, left, right))  # type: ignore[attr-defined]
        return super().region(top, bottom, left, right)


def repeat_z(batch: np.ndarray) -> np.ndarray:
    """A stand-in network: each input slice repeated r times (its blend is the input itself)."""
    return np.repeat(batch, SPEC.ratio, axis=2)


def test_slabs_read_one_window_height_at_a_time_and_cover_the_field_in_order() -> None:
    volume = np.random.default_rng(1).normal(size=(4, 200, 40)).astype(np.float32)
    source = RecordingRows(volume)
    plan = plan_windows(volume.shape, WINDOW, 0.25)  # type: ignore[arg-type]

    # a slab is a view into the blending state: copied as a writer would write it
    slabs = [(s.y0, s.data.copy()) for s in predict_slabs(repeat_z, source, plan, SPEC.ratio)]
    assert max(bottom - top for top, bottom, _, _ in source.asked) == WINDOW[1]  # type: ignore[attr-defined]
    assert len(slabs) == len(plan.starts[1])
    assert [y0 for y0, _ in slabs] == sorted(y0 for y0, _ in slabs)
    assert max(data.shape[1] for _, data in slabs) <= WINDOW[1]
    joined = np.concatenate([data for _, data in slabs], axis=1)
    np.testing.assert_allclose(joined, np.repeat(volume, SPEC.ratio, axis=0), rtol=1e-6)


@pytest.mark.parametrize("dense_phase", [None, 1], ids=["sparse", "dense"])
def test_ome_zarr_input_is_read_lazily_and_predicts_like_the_whole_file(
    tmp_path: Path, net: torch.nn.Module, dense_phase: int | None
) -> None:
    rng = np.random.default_rng(2)
    stack = (rng.normal(size=(9, 70, 48)) * 40 + 300).astype(np.float32)
    z_um = 0.29 if dense_phase is not None else 0.58
    write_ome_zarr(tmp_path / "tl.ome.zarr", stack, (z_um, 0.29, 0.29))
    write_ome_tiff(tmp_path / "tl.ome.tif", stack, (z_um, 0.29, 0.29))
    kwargs = {"ratio": 2, "model_voxel_size_um": (0.29,) * 3, "dense_phase": dense_phase}
    lazy = open_prediction_input(tmp_path / "tl.ome.zarr", **kwargs)  # type: ignore[arg-type]
    whole = read_prediction_input(tmp_path / "tl.ome.tif", **kwargs)  # type: ignore[arg-type]
    assert not lazy.in_memory
    assert lazy.sparse.shape == whole.sparse.shape  # type: ignore[attr-defined]
    np.testing.assert_allclose(lazy.sparse.region(0, 70, 0, 48), whole.sparse, rtol=1e-5, atol=1e-5)  # type: ignore[attr-defined]
    plan = plan_windows(whole.sparse.shape, WINDOW, 0.5)  # type: ignore[arg-type]
    run = eager_runner(net, torch.device("cpu"))
    depth, height, width = whole.sparse.shape  # type: ignore[attr-defined]
    got = np.empty((SPEC.ratio * depth, height, width), np.float32)
    for slab in predict_slabs(run, lazy.sparse, plan, SPEC.ratio, band_width=32):  # type: ignore[arg-type]
        place(got, slab)
    np.testing.assert_allclose(
        got,
        predict_volume(net, SPEC, whole.sparse, overlap=0.5),
        rtol=1e-4,
        atol=1e-4,
    )


def test_a_wide_field_is_blended_in_bands_like_the_whole_array(net: torch.nn.Module) -> None:
    volume = np.random.default_rng(3).normal(size=(4, 40, 150)).astype(np.float32)
    plan = plan_windows(volume.shape, WINDOW, 0.5)  # type: ignore[arg-type]
    bands = x_bands(plan, band_width=64)
    assert len(bands) >= 3
    assert max(band.width for band in bands) <= 64
    run = eager_runner(net, torch.device("cpu"))
    got = np.full((SPEC.ratio * 4, 40, 150), np.nan, np.float32)
    runs = []
    for slab in predict_slabs(
        run, ArrayRows(volume), plan, SPEC.ratio, batch_size=3, advance=runs.append, band_width=64
    ):
        place(got, slab)
    assert sum(runs) == window_runs(plan, band_width=64) > plan.count
    np.testing.assert_allclose(got, whole_array_blend(net, volume, 0.5), rtol=1e-5, atol=1e-5)


def test_bands_read_only_their_columns_and_finish_each_column_once() -> None:
    volume = np.random.default_rng(4).normal(size=(4, 70, 300)).astype(np.float32)
    source = RecordingRows(volume)
    plan = plan_windows(volume.shape, WINDOW, 0.25)  # type: ignore[arg-type]
    finished = np.zeros(volume.shape[1:], int)
    got = np.empty((SPEC.ratio * 4, 70, 300), np.float32)
    for slab in predict_slabs(repeat_z, source, plan, SPEC.ratio, band_width=100):
        place(got, slab)
        finished[
            slab.y0 : slab.y0 + slab.data.shape[1], slab.x0 : slab.x0 + slab.data.shape[2]
        ] += 1
    assert (finished == 1).all()
    assert max(right - left for _, _, left, right in source.asked) <= 100  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, np.repeat(volume, SPEC.ratio, axis=0), rtol=1e-6)


def test_the_memory_estimate_of_a_band_does_not_grow_with_the_field() -> None:
    def slab_bytes(shape: tuple[int, int, int]) -> int:
        plan = plan_windows(shape, (8, 256, 256), 0.25)
        return prediction_bytes(
            plan, 4, 4, width=1.0, input_in_memory=False, output_in_memory=False
        )

    assert slab_bytes((8, 2048, 32768)) == slab_bytes((8, 8192, 65536))
    # the blending state of a 4096-wide band, beside that of a one-window field
    assert slab_bytes((8, 2048, 32768)) - slab_bytes((8, 256, 256)) < 256 * 2**20
