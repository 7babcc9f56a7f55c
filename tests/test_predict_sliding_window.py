"""The Gaussian sliding window: exact reassembly, alignment to the sparse grid, any volume size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.nets import build_net
from sparsessp_bmz.predict import gaussian_weight, plan_windows, predict_volume
from sparsessp_bmz.spec import ModelSpec


class NearestUpsampler(nn.Module):
    """The ideal one-to-many mapping: repeat each sparse slice r times, nothing learned."""

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(self.ratio, 1, 1), mode="nearest")


class Constant(nn.Module):
    def __init__(self, ratio: int, value: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        return torch.full((b, c, d * self.ratio, h, w), self.value)


def fixed_spec(ratio: int, patch: tuple[int, int, int]) -> ModelSpec:
    """A fixed-depth spec (2d topology), the strictest window geometry."""
    return ModelSpec(organelle="dna", ratio=ratio, topology="2d", patch=patch)


def test_identity_upsampler_is_reproduced_without_seams_on_odd_sizes() -> None:
    rng = np.random.default_rng(0)
    sparse = rng.normal(size=(11, 45, 37)).astype(np.float32)
    spec = fixed_spec(2, (8, 16, 32))
    out = predict_volume(NearestUpsampler(2), spec, sparse, overlap=0.5, batch_size=3)
    np.testing.assert_allclose(out, np.repeat(sparse, 2, axis=0), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    ratio=st.sampled_from([1, 2, 4, 8]),
    window_depth=st.integers(1, 4),
    window_yx=st.sampled_from([(16, 16), (16, 32), (32, 16)]),
    depth=st.integers(1, 13),
    height=st.integers(1, 50),
    width=st.integers(1, 50),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    batch_size=st.integers(1, 5),
)
def test_output_is_r_times_deeper_and_exact_for_any_volume_size(
    ratio: int,
    window_depth: int,
    window_yx: tuple[int, int],
    depth: int,
    height: int,
    width: int,
    overlap: float,
    batch_size: int,
) -> None:
    spec = fixed_spec(ratio, (ratio * window_depth, *window_yx))
    sparse = np.random.default_rng(depth * 1000 + height * 50 + width).normal(
        size=(depth, height, width)
    )
    out = predict_volume(
        NearestUpsampler(ratio), spec, sparse, overlap=overlap, batch_size=batch_size
    )
    assert out.shape == (ratio * depth, height, width)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.repeat(sparse, ratio, axis=0), rtol=1e-5, atol=1e-5)


def test_constant_network_gives_a_constant_volume() -> None:
    spec = fixed_spec(4, (8, 16, 16))
    out = predict_volume(Constant(4, 2.5), spec, np.zeros((7, 40, 23)), overlap=0.5)
    assert out.shape == (28, 40, 23)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)


def test_batch_size_does_not_change_the_prediction() -> None:
    spec = ModelSpec(
        organelle="dna", ratio=2, topology="3to2d", width=0.125, units=16, patch=(8, 32, 32)
    )
    torch.manual_seed(0)
    net = build_net(spec)
    sparse = np.random.default_rng(1).normal(size=(6, 40, 48)).astype(np.float32)
    one = predict_volume(net, spec, sparse, batch_size=1)
    many = predict_volume(net, spec, sparse, batch_size=5)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("topology", ["3to2d", "3d"])
@pytest.mark.parametrize("sparse_shape", [(9, 45, 70), (2, 20, 17)], ids=["larger", "smaller"])
def test_real_network_predicts_volumes_larger_and_smaller_than_its_patch(
    topology: str, sparse_shape: tuple[int, int, int]
) -> None:
    spec = ModelSpec(
        organelle="dna", ratio=2, topology=topology, width=0.125, units=16, patch=(8, 32, 32)
    )
    torch.manual_seed(0)
    net = build_net(spec).train()
    sparse = np.random.default_rng(2).normal(size=sparse_shape).astype(np.float32)
    out = predict_volume(net, spec, sparse, overlap=0.5, batch_size=2)
    assert out.shape == (2 * sparse_shape[0], *sparse_shape[1:])
    assert np.isfinite(out).all()
    assert net.training, "predict_volume must restore the caller's train/eval mode"


def test_fixed_depth_network_rejects_a_window_of_another_depth() -> None:
    spec = fixed_spec(2, (8, 16, 16))
    with pytest.raises(UserInputError, match="exactly 4 input slices"):
        predict_volume(NearestUpsampler(2), spec, np.zeros((8, 16, 16)), window=(16, 16, 16))


def test_3d_network_accepts_a_deeper_window_than_its_patch() -> None:
    spec = ModelSpec(
        organelle="dna", ratio=2, topology="3d", width=0.125, units=16, patch=(8, 32, 32)
    )
    net = build_net(spec)
    sparse = np.random.default_rng(3).normal(size=(10, 32, 32)).astype(np.float32)
    out = predict_volume(net, spec, sparse, window=(16, 32, 32))
    assert out.shape == (20, 32, 32)


def test_windows_overlap_by_half_and_the_last_is_flush_with_the_end() -> None:
    plan = plan_windows((11, 45, 16), (4, 16, 16), overlap=0.5)
    assert plan.starts == ((0, 2, 4, 6, 7), (0, 8, 16, 24, 29), (0,))
    assert plan.count == 25
    assert plan.padded_shape == (11, 45, 16)


def test_volumes_smaller_than_the_window_are_padded_to_one_window() -> None:
    plan = plan_windows((2, 10, 40), (4, 16, 16), overlap=0.5)
    assert plan.padded_shape == (4, 16, 40)
    assert plan.starts[:2] == ((0,), (0,))


def test_gaussian_weight_has_sigma_of_one_eighth_of_the_window_per_axis() -> None:
    weight = gaussian_weight((16, 32, 64)).astype(np.float64)
    centre = weight[7:9, 15:17, 31:33].mean()
    assert weight.max() == pytest.approx(1.0)
    # one sigma away from the (between-voxel) centre the profile has fallen to exp(-1/2)
    profile_x = weight[7, 15, :]
    coords = np.arange(64) - 31.5
    expected = np.exp(-0.5 * (coords / 8.0) ** 2)
    np.testing.assert_allclose(profile_x / profile_x.max(), expected / expected.max(), rtol=1e-5)
    assert centre > weight[0, 0, 0] > 0


def test_overlap_outside_zero_to_one_is_rejected() -> None:
    with pytest.raises(UserInputError, match="overlap"):
        plan_windows((4, 16, 16), (4, 16, 16), overlap=1.0)
