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
    plan_windows,
    predict_slabs,
    predict_volume,
    resolve_window,
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
    """ArrayRows that remembers every band of rows asked for."""

    def __init__(self, volume: np.ndarray) -> None:
        super().__init__(volume)
        object.__setattr__(self, "asked", [])

    def rows(self, start: int, stop: int) -> np.ndarray:
        self.asked.append((start, stop))  # type: ignore[attr-defined]
        return super().rows(start, stop)


def test_slabs_read_one_window_height_at_a_time_and_cover_the_field_in_order() -> None:
    volume = np.random.default_rng(1).normal(size=(4, 200, 40)).astype(np.float32)
    source = RecordingRows(volume)
    plan = plan_windows(volume.shape, WINDOW, 0.25)  # type: ignore[arg-type]

    def identity(batch: np.ndarray) -> np.ndarray:
        return np.repeat(batch, SPEC.ratio, axis=2)

    # a slab is a view into the blending state: copied as a writer would write it
    slabs = [(s.y0, s.data.copy()) for s in predict_slabs(identity, source, plan, SPEC.ratio)]
    assert max(stop - start for start, stop in source.asked) == WINDOW[1]  # type: ignore[attr-defined]
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
    np.testing.assert_allclose(lazy.sparse.rows(0, 70), whole.sparse, rtol=1e-5, atol=1e-5)  # type: ignore[attr-defined]
    plan = plan_windows(whole.sparse.shape, WINDOW, 0.5)  # type: ignore[arg-type]
    run = eager_runner(net, torch.device("cpu"))
    slabs = [s.data.copy() for s in predict_slabs(run, lazy.sparse, plan, SPEC.ratio)]  # type: ignore[arg-type]
    np.testing.assert_allclose(
        np.concatenate(slabs, axis=1),
        predict_volume(net, SPEC, whole.sparse, overlap=0.5),
        rtol=1e-4,
        atol=1e-4,
    )
